"""Data parallelism for :func:`~advlab.defenses.training.train` (DESIGN §7).

When a ``torch.distributed`` process group with more than one process exists
(``torchrun --nproc_per_node=N -m advlab train ...``; see :mod:`advlab.utils.dist`), the
training loop trains with ``DistributedDataParallel`` through the helpers here; without one each
helper is a no-op or gives the single-process answer, so the loop runs exactly as in a single
process. Generic collectives (sums, broadcasts, barriers) are :mod:`advlab.utils.dist`'s.

- ``config.batch_size`` is the *global* batch: each of the N processes takes
  ``batch_size // N`` samples (an error unless divisible) from its own disjoint shard of the
  epoch's permutation, which every process draws from the same seed (data order is not offset
  per rank). The union of the N local batches of step t is the single-process batch t, and since
  every process has the same number of equally sized batches, DDP's gradient average of per-rank
  mean losses is the mean over the global batch: N processes follow the single-process run up
  to float rounding. When the training set size is not a multiple of N, the last batch is padded
  with up to N - 1 samples from the start of the permutation (as ``DistributedSampler``).
- The recipe still gets the :class:`Classifier` (attacks need one): for the training epoch the
  loop swaps ``model.net`` for ``DistributedDataParallel(model.net)`` and restores it afterwards
  (also on errors), so every forward through ``model.logits`` goes through DDP and the backward of
  the returned loss averages gradients across processes. Validation and checkpoints use the
  unwrapped net, so saved state-dict keys never carry DDP's ``module.`` prefix.
- Crafting adversarial examples inside a recipe is a forward through DDP too; that needs no
  ``find_unused_parameters`` because input gradients taken with ``torch.autograd.grad`` (as
  ``advlab.attacks`` do) never fire DDP's parameter hooks. A recipe whose crafting calls
  ``.backward()`` into the parameters makes DDP all-reduce those (discarded) gradients too, which
  is correct but costs a reduction, and must happen the same number of times on every process.
  Every parameter of the net must take part in the loss (DDP's default
  ``find_unused_parameters=False``).
- Buffers are not broadcast at every forward (``broadcast_buffers=False``, in newer PyTorch
  ``forward_sync_buffers=False``, so a recipe may run a data-dependent number of forwards);
  after each epoch floating buffers such as BatchNorm running statistics are averaged over
  processes. BatchNorm batch statistics stay per process (no SyncBatchNorm), so nets with
  BatchNorm match single-process training only approximately.
- Dropout and other randomness use a seed offset per rank (rank 0 keeps the single-process
  seed); training/validation metrics are summed over processes, so the history is global;
  validation shards the validation set without padding. Only rank 0 logs, shows progress bars
  and writes checkpoints, followed by a barrier; every process reads the resume state. After
  each epoch the loop checks that parameters agree across processes.
- Mixed precision works unchanged: DDP reduces the scaled gradients, and since they are equal
  on every process the ``GradScaler`` takes the same skip/step decision everywhere.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec

import torch
from torch.nn.parallel import DistributedDataParallel

from advlab.data import TensorData, TensorLoader
from advlab.models.classifier import Classifier
from advlab.utils import dist as dist_utils

P = ParamSpec("P")

# no buffer broadcast at every forward (newer torch renamed broadcast_buffers)
_NO_FORWARD_BUFFER_SYNC: dict[str, Any] = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


def local_batch_size(batch_size: int) -> int:
    """This process's share of the global ``batch_size``; ``ValueError`` unless it divides."""
    world = dist_utils.world_size()
    if batch_size % world:
        raise ValueError(
            f"batch_size {batch_size} is the global batch and must be divisible by the "
            f"number of processes ({world})"
        )
    return batch_size // world


def train_loader(
    data: TensorData, batch_size: int, seed: int, device: torch.device
) -> TensorLoader:
    """This process's shuffled training batches of ``batch_size // N`` samples: its shard of the
    epoch's permutation, which every process draws from the same ``seed``."""
    return TensorLoader(
        data,
        local_batch_size(batch_size),
        shuffle=True,
        seed=seed,
        device=device,
        rank=dist_utils.rank(),
        world_size=dist_utils.world_size(),
    )


def val_loader(va: TensorData | None, device: torch.device) -> TensorLoader | None:
    """Validation batches of this process: the whole set in one process, else every
    ``world_size``-th sample from ``rank`` on (disjoint, no padding, so the sums are exact)."""
    if va is None:
        return None
    rank, world = dist_utils.rank(), dist_utils.world_size()
    if world == 1:
        return TensorLoader(va, 1024, device=device)
    index = torch.arange(rank, len(va), world)
    return TensorLoader((va.x[index], va.y[index]), 1024, device=device)


def rank_seed(seed: int) -> int:
    """``seed`` offset for this process's rank; rank 0 (and a single process) keeps it."""
    return (seed + dist_utils.rank() * 1_000_000_007) % (2**63 - 1)


def sum_metrics(sums: dict[str, float], n: int) -> tuple[dict[str, float], int]:
    """Metric sums over ``n`` samples of this process, summed over all processes. A shard may
    be too small to have produced every metric: the union of the names is reduced (0 where a
    process has none)."""
    if not dist_utils.is_distributed():
        return sums, n
    names = [k for ks in dist_utils.all_gather_objects(list(sums)) for k in ks]
    keys = list(dict.fromkeys(names))
    totals = dist_utils.all_reduce_sums({**{k: sums.get(k, 0.0) for k in keys}, " n": n})
    n = round(totals.pop(" n"))
    return {k: totals[k] for k in keys}, n


def check_same_start(start: int, folder: Path | None) -> None:
    """``RuntimeError`` unless every process resumes after the same epoch ``start``."""
    starts = dist_utils.all_gather_objects(start)
    if len(set(starts)) > 1:
        raise RuntimeError(
            f"the processes found different runs to resume in {folder} (epochs {starts}); "
            "the output folder must be one that every process sees"
        )


def wrap(model: Classifier, device: torch.device) -> DistributedDataParallel | None:
    """``DistributedDataParallel(model.net)`` under a multi-process group, else ``None``.
    Construction broadcasts rank 0's parameters, so all processes start from the same weights."""
    if not dist_utils.is_distributed():
        return None
    return DistributedDataParallel(
        model.net,
        device_ids=[device.index] if device.type == "cuda" and device.index is not None else None,
        **_NO_FORWARD_BUFFER_SYNC,
    )


@contextmanager
def ddp_forward(model: Classifier, ddp: DistributedDataParallel | None) -> Iterator[None]:
    """Route ``model``'s forwards through ``ddp`` inside the block; restore the plain net after."""
    if ddp is None:
        yield
        return
    model.net = ddp
    try:
        yield
    finally:
        model.net = ddp.module


def sync_replicas(model: Classifier) -> None:
    """After an epoch: average floating buffers over processes and check that parameters
    agree (:func:`advlab.utils.dist.average_buffers`, :func:`~advlab.utils.dist.check_in_sync`)."""
    dist_utils.average_buffers(model.net)
    dist_utils.check_in_sync(model.net)


def on_main(write: Callable[P, None], *args: P.args, **kwargs: P.kwargs) -> None:
    """``write(*args, **kwargs)`` (e.g. save a checkpoint) on rank 0 only, then wait until
    every process gets here, so that what it wrote exists for all of them afterwards."""
    if dist_utils.is_main():
        write(*args, **kwargs)
    dist_utils.barrier()
