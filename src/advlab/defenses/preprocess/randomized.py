"""Randomized preprocessors: random resize-and-pad (Xie et al. 2018) and random crop-rescale
(Guo et al. 2018). Both draw fresh randomness on every forward from a private generator."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.defenses.base import GradientStory, defenses
from advlab.defenses.preprocess._common import (
    InputTransformDefense,
    Transform,
    base_image_shape,
    check_float,
    check_int,
    check_seed,
    eot_view,
    image_shape,
)
from advlab.models.classifier import Classifier


class _Seeded(Transform):
    """A transform with a private ``torch.Generator`` (CPU; draws move to the input's device)."""

    def __init__(self, low: Tensor, high: Tensor, seed: int) -> None:
        super().__init__(low, high)
        self.generator = torch.Generator().manual_seed(seed)

    def uniform(self, n: int) -> Tensor:
        return torch.rand(n, generator=self.generator, dtype=torch.float64)


def _canvas(size: int, ratio: float) -> int:
    return math.floor(size * ratio + 0.5)


class ResizePadTransform(_Seeded):
    def __init__(self, low: Tensor, high: Tensor, seed: int, ratio: float, pad: float) -> None:
        super().__init__(low, high, seed)
        self.ratio = ratio
        self.pad = pad

    def real(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        _, h, w = image_shape(x, "random resize-pad")
        ph, pw = _canvas(h, self.ratio), _canvas(w, self.ratio)
        if ph <= h or pw <= w:
            raise ValueError(
                f"max_ratio {self.ratio} leaves no room to pad {h}x{w} images (canvas "
                f"{ph}x{pw}); use max_ratio >= {(max(h, w) + 1) / min(h, w):.3g}"
            )
        u = self.uniform(n)  # one size draw per image, shared by both sides (square: r x r)
        rh = h + torch.floor(u * (ph - h)).long()
        rw = w + torch.floor(u * (pw - w)).long()
        a = torch.floor(self.uniform(n) * (ph - rh + 1)).long()  # top padding
        b = torch.floor(self.uniform(n) * (pw - rw + 1)).long()  # left padding
        dev = x.device
        rows, keep_r = _nearest_index(ph, h, rh.to(dev), a.to(dev))
        cols, keep_c = _nearest_index(pw, w, rw.to(dev), b.to(dev))
        c = x.shape[1]
        out = x.gather(2, rows[:, None, :, None].expand(n, c, ph, w))
        out = out.gather(3, cols[:, None, None, :].expand(n, c, ph, pw))
        keep = (keep_r[:, :, None] & keep_c[:, None, :])[:, None].to(x.dtype)
        canvas = out * keep + self.pad * (1.0 - keep)
        return F.interpolate(
            canvas, size=(h, w), mode="bilinear", align_corners=False, antialias=True
        )


def _nearest_index(out: int, size: int, r: Tensor, offset: Tensor) -> tuple[Tensor, Tensor]:
    """For each image, the source index (nearest-neighbour resize of ``size`` to ``r``, then
    placed at ``offset`` on a canvas of ``out``) of every canvas position ``(N, out)``, and
    whether the position is inside the resized image (else padding)."""
    pos = torch.arange(out, device=r.device)[None, :] - offset[:, None]
    keep = (pos >= 0) & (pos < r[:, None])
    src = (pos.clamp(min=0) * size) // r[:, None]
    return src.clamp(max=size - 1), keep


class RandomResizePad(InputTransformDefense):
    """Random resizing and padding (Xie, Wang, Zhang, Ren & Yuille 2018, "Mitigating adversarial
    effects through randomization").

    Each image of side ``size`` is resized (nearest neighbour) to a random ``r x r`` with ``r``
    uniform in ``[size, P)``, ``P = round(size * max_ratio)``, then placed at a uniformly random
    offset on a ``P x P`` canvas filled with ``pad_value`` (default 0.0: zero padding). Defaults:
    ``max_ratio = 331 / 299`` (the paper's 299 -> [299, 331) -> 331 for Inception); tiny images
    need a larger ratio for any padding to happen (e.g. 1.5 on 8x8 digits).

    Deviation: the paper feeds the ``P x P`` canvas to the network; advlab models have a fixed
    input size, so the canvas is resized back to ``size x size`` (bilinear, antialiased) before
    the base model. Non-square images draw one scale for both sides.

    Gradient story ``"eot"``: every step is differentiable (gather and interpolation), but each
    forward draws fresh randomness from a private generator seeded by ``seed`` (``None``: a fresh
    seed, recorded in ``defense_args()``); ``naive()`` is the model itself (one random draw per
    gradient), ``adaptive()`` is :func:`advlab.models.eot` over ``eot_samples`` draws (default
    10; Athalye, Carlini & Wagner 2018 broke this defense with EOT).
    """

    name: ClassVar[str] = "random-resize-pad"
    gradient: ClassVar[GradientStory] = "eot"

    def __init__(
        self,
        base: Classifier,
        *,
        max_ratio: float = 331 / 299,
        pad_value: float = 0.0,
        eot_samples: int = 10,
        seed: int | None = None,
    ) -> None:
        self.max_ratio = check_float("max_ratio", max_ratio, low=1.0)
        self.pad_value = check_float("pad_value", pad_value, low_open=False)
        self.eot_samples = check_int("eot_samples", eot_samples, 1)
        self.seed = check_seed(seed)
        if not isinstance(base, Classifier):
            raise TypeError(f"a defense needs an advlab Classifier as its base; got {base!r}")
        if not bool((base.low <= self.pad_value).all() and (self.pad_value <= base.high).all()):
            raise ValueError(f"pad_value {self.pad_value} is outside the model's bounds")
        shape = base_image_shape(base, "random-resize-pad")
        if shape is not None:
            h, w = shape[1:]
            if _canvas(h, self.max_ratio) <= h or _canvas(w, self.max_ratio) <= w:
                raise ValueError(
                    f"max_ratio {self.max_ratio} leaves no room to pad {h}x{w} images; use "
                    f"max_ratio >= {(max(h, w) + 1) / min(h, w):.3g}"
                )
        transform = ResizePadTransform(
            base.low, base.high, self.seed, self.max_ratio, self.pad_value
        )
        super().__init__(base, transform)

    def adaptive(self) -> Classifier:
        return eot_view(self, self.eot_samples)

    def defense_args(self) -> dict[str, Any]:
        return {
            "max_ratio": self.max_ratio,
            "pad_value": self.pad_value,
            "eot_samples": self.eot_samples,
            "seed": self.seed,
        }


class CropRescaleTransform(_Seeded):
    def __init__(self, low: Tensor, high: Tensor, seed: int, fraction: float) -> None:
        super().__init__(low, high, seed)
        self.fraction = fraction

    def real(self, x: Tensor) -> Tensor:
        n, c = x.shape[0], x.shape[1]
        _, h, w = image_shape(x, "crop-rescale")
        ch, cw = _crop_side(h, self.fraction), _crop_side(w, self.fraction)
        a = torch.floor(self.uniform(n) * (h - ch + 1)).long().to(x.device)
        b = torch.floor(self.uniform(n) * (w - cw + 1)).long().to(x.device)
        rows = a[:, None] + torch.arange(ch, device=x.device)[None, :]
        cols = b[:, None] + torch.arange(cw, device=x.device)[None, :]
        crop = x.gather(2, rows[:, None, :, None].expand(n, c, ch, w))
        crop = crop.gather(3, cols[:, None, None, :].expand(n, c, ch, cw))
        return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)


def _crop_side(size: int, fraction: float) -> int:
    return max(1, min(size, math.floor(size * fraction + 0.5)))


class CropRescale(InputTransformDefense):
    """Random image cropping-rescaling (Guo, Rana, Cissé & van der Maaten 2018, "Countering
    adversarial images using input transformations"; after Graese et al. 2016).

    Each forward crops every image to a random ``round(fraction * H) x round(fraction * W)``
    window (default ``fraction`` 0.875, i.e. 7/8 of each side; offsets uniform) and rescales it
    back to ``H x W`` with bilinear interpolation. With ``crops > 1`` the logits are the log of
    the mean softmax over that many independent crops, the paper's test-time averaging over
    random crops (default 1: one crop per forward).

    Gradient story ``"eot"``: the crop and the interpolation are differentiable but random
    (private generator seeded by ``seed``; ``None``: a fresh seed, recorded in
    ``defense_args()``); ``naive()`` is the model itself, ``adaptive()`` is
    :func:`advlab.models.eot` over ``eot_samples`` forwards (default 10).
    """

    name: ClassVar[str] = "crop-rescale"
    gradient: ClassVar[GradientStory] = "eot"

    def __init__(
        self,
        base: Classifier,
        *,
        fraction: float = 0.875,
        crops: int = 1,
        eot_samples: int = 10,
        seed: int | None = None,
    ) -> None:
        self.fraction = check_float("fraction", fraction, low=0.0, high=1.0)
        self.crops = check_int("crops", crops, 1)
        self.eot_samples = check_int("eot_samples", eot_samples, 1)
        self.seed = check_seed(seed)
        if not isinstance(base, Classifier):
            raise TypeError(f"a defense needs an advlab Classifier as its base; got {base!r}")
        base_image_shape(base, "crop-rescale")
        super().__init__(base, CropRescaleTransform(base.low, base.high, self.seed, self.fraction))
        self.pipeline.draws = self.crops

    def adaptive(self) -> Classifier:
        return eot_view(self, self.eot_samples)

    def defense_args(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "crops": self.crops,
            "eot_samples": self.eot_samples,
            "seed": self.seed,
        }


defenses.register(RandomResizePad.name, RandomResizePad)
defenses.register(CropRescale.name, CropRescale)

__all__ = ["CropRescale", "RandomResizePad"]
