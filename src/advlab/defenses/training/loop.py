"""The training loop: one function, ``train``, that every recipe and the CLI use.

It owns batching (in-memory, seeded), the optimizer and per-step LR schedule, mixed precision on
CUDA, validation each epoch, progress bars, checkpoints every epoch, best-epoch tracking, early
stopping and exact resume. The batch loss comes from a :class:`Recipe`.

Data parallelism (DESIGN §7): under a ``torch.distributed`` process group with more than one
process the same code trains with ``DistributedDataParallel``; :mod:`.distributed` holds that
part (sharding, DDP wrapping, metric reduction, rank-0-only files) and documents the semantics.
Without a group it runs exactly as in a single process.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.data import TensorData, TensorLoader
from advlab.defenses.training import distributed
from advlab.defenses.training.config import TrainConfig
from advlab.defenses.training.optim import make_optimizer, make_scheduler
from advlab.defenses.training.recipe import Recipe, Standard
from advlab.models.checkpoint import save
from advlab.models.classifier import Classifier
from advlab.utils import dist as dist_utils
from advlab.utils.progress import progress

logger = logging.getLogger(__name__)
STATE = "train_state.pt"


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
    totals, n = distributed.sum_metrics({k: float(v) for k, v in sums.items()}, n)
    return {k: v / max(n, 1) for k, v in totals.items()}


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
    the same arguments and the model is trained with ``DistributedDataParallel``; see
    :mod:`advlab.defenses.training.distributed` for the semantics (global batch, sharding,
    rank-0-only files).
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
    main = dist_utils.is_main()
    distributed.local_batch_size(cfg.batch_size)  # checked before anything is moved or read
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
    loader = distributed.train_loader(tr, cfg.batch_size, cfg.seed, device)
    val_loader = distributed.val_loader(va, device)
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
    distributed.check_same_start(start, folder)

    ddp = distributed.wrap(model, device)
    fork_devices = [device] if device.type == "cuda" else []
    stale = 0
    with torch.random.fork_rng(devices=fork_devices):
        for epoch in range(start, cfg.epochs):
            torch.manual_seed(distributed.rank_seed(_epoch_seed(cfg.seed, epoch)))
            loader.set_epoch(epoch)
            recipe.start_epoch(epoch)
            with distributed.ddp_forward(model, ddp):
                row = _train_epoch(
                    model, loader, opt, sched, scaler, recipe, amp, epoch, cfg.epochs, main
                )
            distributed.sync_replicas(model)
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
            if folder is not None:  # rank 0 writes; the epoch is then committed for everyone
                best = improved and cfg.keep_best
                args = (folder, model, opt, sched, scaler, result, cfg, recipe)
                distributed.on_main(_commit, *args, dataset=dataset, best=best)
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


def _commit(
    folder: Path,
    model: Classifier,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LambdaLR,
    scaler: torch.amp.GradScaler,
    result: TrainResult,
    cfg: TrainConfig,
    recipe: Recipe,
    *,
    dataset: str | None,
    best: bool,
) -> None:
    """Save the epoch just finished (``result.last``): the model checkpoint in ``folder`` (and
    in ``folder/best`` when ``best``), then the resume state, written atomically: the commit
    point of the epoch."""
    meta: dict[str, Any] = {"recipe": recipe.config(), "metrics": result.last}
    save(model, folder, dataset=dataset, **meta)
    if best:
        save(model, folder / "best", dataset=dataset, **meta)
    state = {
        "epoch": int(result.last["epoch"]),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict(),
        "history": result.history,
        "best": result.best,
        "config": cfg.to_dict(),
        "recipe": recipe.config(),
    }
    file = folder / STATE
    tmp = file.with_name(f".{file.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, file)
