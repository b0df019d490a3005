"""Seeded synthetic classification data for tests and quick experiments.

Each class ``k`` has a prototype ``p_k ~ U[0, 1]^input_shape`` that depends only on ``seed``.
A sample of class ``k`` is ``clip(p_k + noise * N(0, I), 0, 1)``. Labels are balanced
(``i % num_classes``, then shuffled). Train and test use different sample streams over the same
prototypes, so a model fit on train generalizes to test; with the defaults a linear model reaches
~100% accuracy. All randomness comes from local ``torch.Generator`` objects.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch

from advlab.data._rng import generator
from advlab.data.catalog import check_split, datasets
from advlab.data.tensor_data import TensorData

_STREAM = {"prototypes": 0, "train": 1, "test": 2}


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}; got {value!r}")
    return value


@datasets.register("synthetic")
def synthetic(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    n: int = 512,
    input_shape: Sequence[int] = (1, 8, 8),
    num_classes: int = 3,
    seed: int = 0,
    noise: float = 0.15,
) -> TensorData:
    """``n`` samples of shape ``input_shape`` ((C, H, W) images or (D,) features) from
    ``num_classes`` Gaussian blobs around seeded prototypes, clipped to [0, 1].

    ``mean``/``std`` are the generating distribution's (unclipped) statistics: 0.5 and
    ``sqrt(1/12 + noise**2)``. ``data_dir``/``download`` are accepted and ignored.
    """
    check_split(split)
    _check_int("n", n, 1)
    _check_int("num_classes", num_classes, 2)
    _check_int("seed", seed, 0)
    shape = tuple(input_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(f"input_shape must be positive ints, e.g. (1, 8, 8); got {input_shape!r}")
    if not (isinstance(noise, int | float) and not isinstance(noise, bool) and noise >= 0):
        raise ValueError(f"noise must be a float >= 0; got {noise!r}")
    prototypes = torch.rand((num_classes, *shape), generator=generator(seed, _STREAM["prototypes"]))
    gen = generator(seed, _STREAM[split])
    y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]  # (n,) balanced
    x = prototypes[y] + float(noise) * torch.randn((n, *shape), generator=gen)
    x = x.clamp_(0.0, 1.0)
    std = math.sqrt(1.0 / 12.0 + float(noise) ** 2)
    return TensorData(
        x=x,
        y=y,
        num_classes=num_classes,
        name="synthetic",
        class_names=tuple(f"class{k}" for k in range(num_classes)),
        mean=(0.5,),
        std=(std,),
    )
