"""``torch.distributed`` helpers for data-parallel runs launched by ``torchrun``.

One process (no ``torchrun`` environment, no process group) is the default and every helper then
degrades to a no-op: :func:`rank` is 0, :func:`world_size` is 1, :func:`is_main` is true,
:func:`barrier` returns at once and the reductions return their input. Code written against these
helpers therefore runs unchanged in one process and under
``torchrun --nproc_per_node=N -m advlab ...``.

:func:`process_group` (or :func:`init_from_env` / :func:`cleanup`) starts the default process group
from the variables ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``): backend ``nccl`` when the run's device is CUDA, ``gloo`` otherwise, and each
process on CUDA uses ``cuda:LOCAL_RANK`` (:func:`rank_device`).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist

from advlab.utils.device import resolve_device

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (``RANK`` and ``WORLD_SIZE`` are set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_initialized() -> bool:
    """Whether a default process group exists in this process."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the default group (0 without one)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes in the default group (1 without one)."""
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    """This process's index on its machine (``LOCAL_RANK``; 0 when not launched by torchrun)."""
    return _env_int("LOCAL_RANK", 0) if launched() else 0


def is_main() -> bool:
    """True on rank 0, the one process that logs, shows progress and writes files."""
    return rank() == 0


def is_distributed() -> bool:
    """True when more than one process takes part (a group with ``world_size() > 1``)."""
    return world_size() > 1


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ValueError(f"environment variable {name} is not set (expected from torchrun)")
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer; got {value!r}") from None


def _wants_cuda(device: str | torch.device | None) -> bool:
    if device is None or device == "auto":
        return torch.cuda.is_available()
    try:
        return torch.device(device).type == "cuda"
    except (RuntimeError, TypeError):
        return False  # resolve_device reports the bad name later


def rank_device(device: str | torch.device | None = "auto") -> torch.device:
    """The device this process trains on: ``resolve_device(device)``, except that under a
    multi-process group an unnumbered CUDA device (``"auto"`` on a CUDA machine, ``"cuda"``)
    becomes ``cuda:LOCAL_RANK``, one GPU per process. An explicit ``"cuda:N"`` is kept."""
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None and is_distributed():
        return torch.device("cuda", local_rank())
    return dev


def init_from_env(
    device: str | torch.device | None = "auto",
    *,
    timeout: datetime.timedelta = DEFAULT_TIMEOUT,
) -> bool:
    """Start the default process group from the ``torchrun`` environment.

    Returns ``True`` when this call created the group; ``False`` when the process was not
    launched by torchrun (nothing to do) or a group already exists. The backend is ``nccl`` when
    ``device`` means CUDA (and NCCL is built in), else ``gloo``; on CUDA the current device is
    set to ``cuda:LOCAL_RANK`` first.
    """
    if not launched() or is_initialized():
        return False
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed support")
    rank_, world = _env_int("RANK"), _env_int("WORLD_SIZE")
    if world < 1 or not 0 <= rank_ < world:
        raise ValueError(f"bad torchrun environment: RANK={rank_}, WORLD_SIZE={world}")
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if missing:
        raise ValueError(
            f"environment variable(s) {', '.join(missing)} not set; launch with torchrun "
            "(or set MASTER_ADDR=127.0.0.1 and a free MASTER_PORT by hand)"
        )
    backend = "gloo"
    if _wants_cuda(device) and dist.is_nccl_available():
        backend = "nccl"
        torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
    dist.init_process_group(
        backend=backend, init_method="env://", rank=rank_, world_size=world, timeout=timeout
    )
    return True


def cleanup() -> None:
    """Destroy the default process group, if any."""
    if is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group(
    device: str | torch.device | None = "auto",
    *,
    timeout: datetime.timedelta = DEFAULT_TIMEOUT,
) -> Iterator[bool]:
    """``with process_group(device) as started:`` runs the body inside the group started by
    :func:`init_from_env` (``started`` is its return value) and destroys that group afterwards;
    a group that already existed, or none at all, is left as it was."""
    started = init_from_env(device, timeout=timeout)
    finished = False
    try:
        yield started
        finished = True
    finally:
        if started:
            if finished:  # leave together: a peer tearing down gloo while this rank still works
                barrier()  # (rank 0's evaluation, say) can abort the process at exit
            cleanup()


def _comm_device() -> torch.device:
    """Where collective buffers live: the current CUDA device for NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every process gets here (no-op in one process)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Run the body on rank 0 first and on the other ranks after it (e.g. a download that the
    others then find in the cache)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def all_reduce_sums(values: Mapping[str, float]) -> dict[str, float]:
    """Sum each named number over all processes (float64); every process gets the totals.

    All processes must pass the same keys. In one process the values come back unchanged.
    """
    if not is_distributed():
        return {k: float(v) for k, v in values.items()}
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return dict(zip(keys, t.tolist(), strict=True))


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects); ``[obj]`` in one process."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process (picklable objects); ``obj`` in one process."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def average_buffers(module: torch.nn.Module) -> None:
    """Make ``module``'s buffers equal on all processes: floating buffers (e.g. BatchNorm running
    statistics) become their mean over processes, the others (counters) rank 0's value."""
    if not is_distributed():
        return
    n = world_size()
    comm = _comm_device()
    with torch.no_grad():
        for buf in module.buffers():
            t = buf.detach().to(comm, copy=True)
            if t.is_floating_point():
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
                t /= n
            else:
                dist.broadcast(t, src=0)
            buf.copy_(t)


def check_in_sync(module: torch.nn.Module, what: str = "parameters") -> None:
    """Raise ``RuntimeError`` unless ``module``'s parameters agree on all processes (checked on
    a float64 checksum, relative tolerance 1e-6)."""
    if not is_distributed():
        return
    with torch.no_grad():
        total = torch.zeros(2, dtype=torch.float64)
        for p in module.parameters():
            q = p.detach().double()
            total += torch.stack([q.sum(), q.square().sum()]).cpu()
    sums = all_gather_objects(total.tolist())
    ref = sums[0]
    for r, s in enumerate(sums[1:], start=1):
        for a, b in zip(ref, s, strict=True):
            if abs(a - b) > 1e-6 * max(abs(a), abs(b), 1.0):
                raise RuntimeError(
                    f"{what} differ between rank 0 and rank {r}: a forward pass bypassed "
                    "DistributedDataParallel (recipes must call the model they are given, "
                    "e.g. model.logits(x), not a network they kept a reference to)"
                )
