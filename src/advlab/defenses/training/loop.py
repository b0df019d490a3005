"""The training loop: one function, ``train``, that every recipe and the CLI use.

It owns batching (in-memory, seeded), the optimizer and per-step LR schedule, mixed precision on
CUDA, validation each epoch, progress bars, checkpoints every epoch, best-epoch tracking, early
stopping and exact resume. The batch loss comes from a :class:`Recipe`.

Data parallelism (DESIGN §7). When a ``torch.distributed`` process group with more than one
process exists (``torchrun --nproc_per_node=N -m advlab train ...``; see
:mod:`advlab.utils.dist`), the same code trains with ``DistributedDataParallel``; without one it
runs exactly as in a single process.

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
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from advlab.data import TensorData, TensorLoader
from advlab.defenses.training.config import TrainConfig
from advlab.defenses.training.optim import make_optimizer, make_scheduler
from advlab.defenses.training.recipe import Recipe, Standard
from advlab.models.checkpoint import save
from advlab.models.classifier import Classifier
from advlab.utils import dist as dist_utils
from advlab.utils.progress import progress

logger = logging.getLogger(__name__)
STATE = "train_state.pt"
# no buffer broadcast at every forward (newer torch renamed broadcast_buffers)
_NO_FORWARD_BUFFER_SYNC: dict[str, Any] = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


@dataclass
class TrainResult:
    """What :func:`train` returns: one metrics row per epoch, and the best epoch's row."""

    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False
    out: Path | None = None

    @property
    def last(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def _as_data(data: TensorData | tuple[Tensor, Tensor], what: str) -> TensorData:
    if isinstance(data, TensorData):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
        if not isinstance(y, Tensor) or y.ndim != 1:
            raise ValueError(f"{what} labels must be a 1-D tensor")
        k = int(y.max()) + 1 if y.numel() else 2
        return TensorData(x=x, y=y.long(), num_classes=max(k, 2), name=what)
    raise TypeError(f"{what} must be a TensorData or an (x, y) tuple; got {type(data).__name__}")


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)


def _rank_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of the global RNG (dropout, recipe randomness) for ``epoch`` on process ``rank``;
    rank 0 (and a single process) keeps :func:`_epoch_seed`."""
    return (_epoch_seed(seed, epoch) + rank * 1_000_000_007) % (2**63 - 1)


def _better(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


def _check_compatible(saved: dict[str, Any], cfg: TrainConfig, recipe: Recipe) -> None:
    free = {"epochs", "device", "patience", "keep_best"}  # may change between runs
    now = cfg.to_dict()
    diffs = [
        f"{k}: saved {saved['config'].get(k)!r}, now {now[k]!r}"
        for k in now
        if k not in free and saved["config"].get(k) != now[k]
    ]
    if saved.get("recipe") != recipe.config():
        diffs.append(f"recipe: saved {saved.get('recipe')!r}, now {recipe.config()!r}")
    if diffs:
        raise ValueError(
            "cannot resume: the run was started with other settings (" + "; ".join(diffs) + ")"
        )


@torch.no_grad()
def _validate(model: Classifier, loader: TensorLoader, recipe: Recipe) -> dict[str, float]:
    """Mean validation metrics over this process's shard, summed over all processes."""
    model.eval()
    sums: dict[str, Tensor | float] = {"val_loss": 0.0, "val_acc": 0.0}
    n = 0
    for x, y in loader:
        logits = model.logits(x, check=False)
        sums["val_loss"] = sums["val_loss"] + F.cross_entropy(logits.float(), y, reduction="sum")
        sums["val_acc"] = sums["val_acc"] + (logits.argmax(1) == y).sum()
        with torch.enable_grad():
            extra = recipe.validate(model, x, y)
        for k, v in extra.items():
            sums[f"val_{k}"] = sums.get(f"val_{k}", 0.0) + float(v) * len(y)
        n += len(y)
    local = {k: float(v) for k, v in sums.items()}
    if dist_utils.is_distributed():
        # a shard may be too small to have produced every recipe metric: reduce the union
        names = [k for ks in dist_utils.all_gather_objects(list(local)) for k in ks]
        keys = list(dict.fromkeys(names))
        totals = dist_utils.all_reduce_sums({**{k: local.get(k, 0.0) for k in keys}, " n": n})
        n = round(totals.pop(" n"))
        local = {k: totals[k] for k in keys}
    return {k: v / max(n, 1) for k, v in local.items()}


def _val_loader(va: TensorData | None, device: torch.device) -> TensorLoader | None:
    """Validation batches of this process: the whole set in one process, else every
    ``world_size``-th sample from ``rank`` on (disjoint, no padding, so the sums are exact)."""
    if va is None:
        return None
    rank, world = dist_utils.rank(), dist_utils.world_size()
    if world == 1:
        return TensorLoader(va, 1024, device=device)
    index = torch.arange(rank, len(va), world)
    return TensorLoader((va.x[index], va.y[index]), 1024, device=device)


def _wrap_ddp(model: Classifier, device: torch.device) -> DistributedDataParallel | None:
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
def _ddp_forward(model: Classifier, ddp: DistributedDataParallel | None) -> Iterator[None]:
    """Route ``model``'s forwards through ``ddp`` inside the block; restore the plain net after."""
    if ddp is None:
        yield
        return
    model.net = ddp
    try:
        yield
    finally:
        model.net = ddp.module


def train(
    model: Classifier,
    train_data: TensorData | tuple[Tensor, Tensor],
    val_data: TensorData | tuple[Tensor, Tensor] | None = None,
    config: TrainConfig | None = None,
    *,
    recipe: Recipe | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    dataset: str | None = None,
) -> TrainResult:
    """Train ``model`` in place and return the per-epoch history.

    Args:
        model: a :class:`Classifier`; it ends in eval mode on the training device.
        train_data, val_data: :class:`TensorData` or ``(x, y)`` tensors in pixel units.
        config: :class:`TrainConfig` (defaults if ``None``).
        recipe: batch loss (default :class:`Standard` cross-entropy).
        out: folder for the run. After every epoch it holds the model checkpoint
            (``weights.safetensors`` + ``model.json``, loadable with ``advlab.models.load``),
            ``train_state.pt`` (weights, optimizer, scheduler and scaler state, history), and
            ``best/`` (best epoch by ``config.monitor``) when ``keep_best``. A folder that already
            holds a run is refused unless ``resume=True``.
        resume: continue the run in ``out`` from its last finished epoch; on CPU the final weights
            equal those of an uninterrupted run. With nothing to resume, starts fresh.
        dataset: dataset name recorded in the checkpoint sidecar.

    Randomness (data order, dropout) is derived from ``config.seed`` and the epoch number inside
    ``torch.random.fork_rng``, so the caller's global RNG state is left untouched.

    Under a ``torch.distributed`` process group of N > 1 processes (e.g. started by
    :func:`advlab.utils.dist.process_group` under ``torchrun``) every process calls ``train`` with
    the same arguments and the model is trained with ``DistributedDataParallel``; see the module
    documentation for the semantics (global batch, sharding, rank-0-only files).
    """
    cfg = config or TrainConfig()
    recipe = recipe or Standard()
    if not isinstance(model, Classifier):
        raise TypeError(f"model must be an advlab Classifier; got {type(model).__name__}")
    tr = _as_data(train_data, "train_data")
    va = _as_data(val_data, "val_data") if val_data is not None else None
    if model.num_classes is not None and tr.num_classes > model.num_classes:
        raise ValueError(
            f"the data has {tr.num_classes} classes; the model has {model.num_classes}"
        )
    model.check_input(tr.x[:256])
    rank, world = dist_utils.rank(), dist_utils.world_size()
    main = rank == 0
    if cfg.batch_size % world:
        raise ValueError(
            f"batch_size {cfg.batch_size} is the global batch and must be divisible by the "
            f"number of processes ({world})"
        )
    device = dist_utils.rank_device(cfg.device)
    amp = cfg.amp if cfg.amp is not None else device.type == "cuda"
    if amp and device.type != "cuda":
        raise ValueError("amp (mixed precision) is only supported on CUDA devices")
    folder = Path(out) if out is not None else None
    state_file = folder / STATE if folder is not None else None
    if state_file is not None and state_file.exists() and not resume:
        raise ValueError(
            f"{folder} already holds a training run; pass resume=True (--resume) "
            "to continue it, or choose another output folder"
        )

    model.to(device)
    loader = TensorLoader(
        tr,
        cfg.batch_size // world,
        shuffle=True,
        seed=cfg.seed,  # the same permutation on every process; each takes its own shard
        device=device,
        rank=rank,
        world_size=world,
    )
    val_loader = _val_loader(va, device)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, len(loader))
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    result = TrainResult(out=folder)
    start = 0
    if resume and state_file is not None and state_file.exists():
        saved = torch.load(state_file, map_location="cpu", weights_only=True)
        _check_compatible(saved, cfg, recipe)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        result.history, result.best = saved["history"], saved["best"]
        start = int(saved["epoch"])
        if main:
            logger.info("resuming %s after epoch %d of %d", folder, start, cfg.epochs)
    elif resume and main:
        logger.info("nothing to resume in %s; starting a new run", folder)
    starts = dist_utils.all_gather_objects(start)
    if len(set(starts)) > 1:
        raise RuntimeError(
            f"the processes found different runs to resume in {folder} (epochs {starts}); "
            "the output folder must be one that every process sees"
        )

    ddp = _wrap_ddp(model, device)
    fork_devices = [device] if device.type == "cuda" else []
    stale = 0
    with torch.random.fork_rng(devices=fork_devices):
        for epoch in range(start, cfg.epochs):
            torch.manual_seed(_rank_seed(cfg.seed, epoch, rank))
            loader.set_epoch(epoch)
            recipe.start_epoch(epoch)
            with _ddp_forward(model, ddp):
                row = _train_epoch(
                    model, loader, opt, sched, scaler, recipe, amp, epoch, cfg.epochs, main
                )
            if ddp is not None:
                dist_utils.average_buffers(model.net)
                dist_utils.check_in_sync(model.net)
            if val_loader is not None:
                row.update(_validate(model, val_loader, recipe))
            model.eval()
            row = dist_utils.broadcast_object(row)  # rank 0's timings: one history everywhere
            result.history.append(row)
            monitor = cfg.monitor if val_loader is not None else "train_acc"
            if monitor not in row:
                raise ValueError(f"monitor {monitor!r} is not among the metrics {sorted(row)}")
            improved = _better(row[monitor], result.best.get(monitor), cfg.monitor_mode)
            if improved:
                result.best = dict(row)
            stale = 0 if improved else stale + 1
            if main:
                logger.info(
                    "epoch %d/%d: %s",
                    epoch + 1,
                    cfg.epochs,
                    ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"),
                )
            if folder is not None:
                if main:
                    meta: dict[str, Any] = {"recipe": recipe.config(), "metrics": row}
                    save(model, folder, dataset=dataset, **meta)
                    if improved and cfg.keep_best:
                        save(model, folder / "best", dataset=dataset, **meta)
                    _save_state(
                        state_file, model, opt, sched, scaler, result, epoch + 1, cfg, recipe
                    )
                dist_utils.barrier()  # the epoch is committed for every process
            if cfg.patience is not None and stale >= cfg.patience:
                if main:
                    logger.info("early stop: %s did not improve for %d epochs", monitor, stale)
                result.stopped_early = True
                break
            # rank 0 decides, so that all processes stop together
            reason = dist_utils.broadcast_object(recipe.stop_reason(result.history))
            if reason:
                if main:
                    logger.warning("stopping after epoch %d: %s", epoch + 1, reason)
                result.stopped_early = True
                break
    opt.zero_grad(set_to_none=True)  # a trained model carries no stale gradients
    model.eval()
    return result


def _train_epoch(
    model: Classifier,
    loader: TensorLoader,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LambdaLR,
    scaler: torch.amp.GradScaler,
    recipe: Recipe,
    amp: bool,
    epoch: int,
    epochs: int,
    main: bool = True,
) -> dict[str, float]:
    model.train()
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.long)
    n = 0
    bar = progress(
        loader,
        desc=f"epoch {epoch + 1}/{epochs}",
        total=len(loader),
        disable=None if main else True,
    )
    for i, (x, y) in enumerate(bar):
        with torch.autocast(device_type=loader.device.type, enabled=amp):
            loss, logits = recipe.loss(model, x, y)
        opt.zero_grad(set_to_none=True)  # after the recipe: crafting gradients never leak
        scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        scaler.step(opt)
        scaler.update()
        sched.step()
        loss_sum += loss.detach().float() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        n += len(y)
        if i % 25 == 0:
            bar.set_postfix(loss=f"{float(loss_sum) / n:.4f}", acc=f"{float(correct) / n:.4f}")
    bar.close()
    totals = dist_utils.all_reduce_sums(
        {"loss": float(loss_sum), "correct": float(correct), "n": n}
    )  # over all processes (unchanged in one)
    seconds = time.perf_counter() - t0
    n = round(totals["n"])
    return {
        "epoch": float(epoch + 1),
        "train_loss": totals["loss"] / max(n, 1),
        "train_acc": totals["correct"] / max(n, 1),
        "lr": float(opt.param_groups[0]["lr"]),
        "seconds": seconds,
        "images_per_s": n / seconds if seconds > 0 else 0.0,
    }


def _save_state(
    file: Path | None,
    model: Classifier,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LambdaLR,
    scaler: torch.amp.GradScaler,
    result: TrainResult,
    epoch: int,
    cfg: TrainConfig,
    recipe: Recipe,
) -> None:
    """Write the resume state atomically; it is the commit point of a finished epoch."""
    if file is None:
        return
    state = {
        "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(),
        "history": result.history,
        "best": result.best,
        "config": cfg.to_dict(),
        "recipe": recipe.config(),
    }
    tmp = file.with_name(f".{file.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, file)
