"""Shared pieces of the attack reproductions on an MNIST LeNet (``kurakin2017``,
``onepixel2019``, ``uap2017``, ``deepfool2016``): one cached, normally trained LeNet and the
test images it classifies correctly."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

from advlab.defenses.training import TrainConfig
from advlab.models import Classifier
from advlab.reproduce.base import Context

T = TypeVar("T")

# quick: 20,000 training images for 2 epochs; full: all 60,000 for 3 (Adam 3e-3, batch 64, cosine)
TRAIN_N = {True: 20_000, False: None}
EPOCHS = {True: 2, False: 3}


def lenet_key(ctx: Context) -> str:
    """The cache key of the shared LeNet: ``lenet-mnist-{q|full}-s{seed}``."""
    return f"lenet-mnist-{'q' if ctx.quick else 'full'}-s{ctx.seed}"


def lenet(ctx: Context) -> Classifier:
    """The LeNet (advlab preset ``lenet``) trained on MNIST, cached under :func:`lenet_key`.

    The initial weights are drawn from the global RNG seeded with ``ctx.seed`` inside
    ``torch.random.fork_rng`` (the caller's RNG state is restored), so the model does not depend
    on what ran before in the process (``Context.model`` builds it from the global RNG)."""
    train_set = ctx.data("mnist", "train", TRAIN_N[ctx.quick])
    cfg = TrainConfig(epochs=EPOCHS[ctx.quick], batch_size=64, lr=3e-3, seed=ctx.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        model = ctx.model(lenet_key(ctx), "lenet", train_set, cfg)
    return model.eval()


def lenet_note(ctx: Context) -> str:
    n = TRAIN_N[ctx.quick] or 60_000
    return (
        f"Model: advlab's LeNet-5 style CNN (preset lenet), trained normally on {n:,} MNIST "
        f"images for {EPOCHS[ctx.quick]} epoch(s) (Adam lr 3e-3, batch 64, cosine), cached as "
        f"{lenet_key(ctx)}."
    )


@dataclass
class Images:
    """Test images for an attack: ``x (n, 1, 28, 28)`` and ``y (n,)`` on the model's device,
    all classified correctly; ``clean_accuracy`` on the ``tested`` images they came from."""

    x: Tensor
    y: Tensor
    clean_accuracy: float
    tested: int


def correct_images(ctx: Context, model: Classifier, n: int, tested: int | None = None) -> Images:
    """The first ``n`` correctly classified images among the first ``tested`` (default all)
    MNIST test images."""
    test = ctx.data("mnist", "test", tested).to(ctx.device)
    ok = model.predict(test.x) == test.y
    keep = ok.nonzero().squeeze(1)[:n]
    return Images(test.x[keep], test.y[keep], float(ok.float().mean()), len(test))


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """``fn()`` and its wall time in seconds."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
