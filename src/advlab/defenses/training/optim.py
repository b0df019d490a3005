"""Optimizers and per-step learning-rate schedules for the training loop."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

import torch
from torch import nn

from advlab.defenses.training.config import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of ``cfg.lr`` at global step ``t`` (0-based), for ``LambdaLR``."""
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "step":
        bounds = sorted(m * steps_per_epoch for m in cfg.milestones)
        return lambda t: cfg.gamma ** bisect.bisect_right(bounds, t)
    if cfg.schedule == "cosine":
        return lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total) / total))
    if cfg.schedule == "cyclic":
        peak = cfg.warmup * total
        return lambda t: (
            min(1.0, (t + 1) / peak) if t < peak else max(0.0, (total - t) / (total - peak))
        )
    return lambda t: 1.0


def make_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg, steps_per_epoch))
