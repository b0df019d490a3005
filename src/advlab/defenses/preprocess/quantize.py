"""Quantizing preprocessors: bit-depth reduction and real JPEG compression (Pillow)."""

from __future__ import annotations

import io
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from advlab.defenses.base import GradientStory, defenses
from advlab.defenses.preprocess._common import (
    InputTransformDefense,
    Transform,
    base_image_shape,
    check_int,
    image_shape,
    in_bounds,
    zero_gradient,
)
from advlab.models.classifier import Classifier


def reduce_bit_depth(x: Tensor, bits: int, low: Tensor, high: Tensor) -> Tensor:
    """Round ``x`` to ``2**bits`` evenly spaced levels spanning ``[low, high]`` (Xu et al. 2018:
    ``rint(x * (2**bits - 1)) / (2**bits - 1)`` for pixels in ``[0, 1]``)."""
    lo = low.to(device=x.device, dtype=x.dtype)
    hi = high.to(device=x.device, dtype=x.dtype)
    levels = (1 << bits) - 1
    unit = ((x - lo) / (hi - lo)).clamp(0.0, 1.0)
    return torch.round(unit * levels) / levels * (hi - lo) + lo


class BitDepthTransform(Transform):
    def __init__(self, low: Tensor, high: Tensor, bits: int) -> None:
        super().__init__(low, high)
        self.bits = bits

    def real(self, x: Tensor) -> Tensor:
        return reduce_bit_depth(x, self.bits, self.low, self.high)

    def forward(self, x: Tensor) -> Tensor:
        return zero_gradient(self.real(x.detach()), x)


class BitDepth(InputTransformDefense):
    """Bit-depth reduction before the classifier (Xu, Evans & Qi 2018, "Feature squeezing";
    Guo et al. 2018 evaluate it as an input transformation too).

    Pixels are rounded to ``2**bits`` levels over the model's bounds (``bits`` in 1..8, default
    4, Xu et al.'s ImageNet setting; they use 1 bit for MNIST and 5 for CIFAR-10). Per-feature
    bounds are quantized per feature.

    Gradient story ``"bpda"``: rounding is piecewise constant, so the defended model's autograd
    gradient (``naive()``) is exactly zero (the value is computed on ``x.detach()`` and joined as
    ``real + 0 * x``): a defense-unaware gradient attack does not move, which the evaluation
    reports as masking. ``adaptive()`` is BPDA with the identity backward (Athalye, Carlini &
    Wagner 2018).
    """

    name: ClassVar[str] = "bit-depth"
    gradient: ClassVar[GradientStory] = "bpda"

    def __init__(self, base: Classifier, *, bits: int = 4) -> None:
        self.bits = check_int("bits", bits, 1, 8)
        if not isinstance(base, Classifier):
            raise TypeError(f"a defense needs an advlab Classifier as its base; got {base!r}")
        super().__init__(base, BitDepthTransform(base.low, base.high, self.bits))

    def defense_args(self) -> dict[str, Any]:
        return {"bits": self.bits}


def jpeg_compress(x: Tensor, quality: int, low: float, high: float) -> Tensor:
    """Encode and decode every image of ``x`` ``(N, C, H, W)`` (C = 1 grayscale or 3 RGB) as a
    real JPEG with Pillow at ``quality`` (1..100), one image at a time; pixels in ``[low, high]``
    are mapped to 8-bit ``0..255`` and back. Runs on the CPU; the result comes back on ``x``'s
    device and dtype."""
    from PIL import Image

    c, _, _ = image_shape(x, "JPEG compression")
    if c not in (1, 3):
        raise ValueError(f"JPEG compression needs 1 (grayscale) or 3 (RGB) channels; got {c}")
    unit = ((x.detach().float() - low) / (high - low)).clamp(0.0, 1.0)
    u8 = (unit * 255.0).round().to(torch.uint8).cpu().permute(0, 2, 3, 1).numpy()
    mode = "L" if c == 1 else "RGB"
    out = np.empty_like(u8)
    for i in range(u8.shape[0]):
        img = Image.fromarray(u8[i, :, :, 0] if c == 1 else u8[i], mode=mode)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as decoded:
            arr = np.asarray(decoded.convert(mode))
        out[i] = arr[:, :, None] if c == 1 else arr
    back = torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype)
    return back / 255.0 * (high - low) + low


class JPEGTransform(Transform):
    def __init__(self, low: Tensor, high: Tensor, quality: int) -> None:
        super().__init__(low, high)
        self.quality = quality

    def real(self, x: Tensor) -> Tensor:
        lo, hi = float(self.low.min()), float(self.high.max())
        return in_bounds(jpeg_compress(x, self.quality, lo, hi), self.low, self.high)

    def forward(self, x: Tensor) -> Tensor:
        return zero_gradient(self.real(x.detach()), x)


class JPEG(InputTransformDefense):
    """Real JPEG compression before the classifier (Dziugaite, Ghahramani & Roy 2016; Das et al.
    2017; Guo et al. 2018, "Countering adversarial images using input transformations").

    Every image is encoded and decoded with Pillow at ``quality`` (1..100, default 75, Guo et
    al.'s setting), grayscale (1 channel) or RGB (3 channels,
    Pillow's default 4:2:0 chroma subsampling), after mapping the model's bounds to 8-bit pixels.
    The codec runs on the CPU image by image; CUDA inputs go there and back. Needs scalar bounds.

    Gradient story ``"bpda"``: the codec is not differentiable (and quantizes), so the defended
    model's autograd gradient (``naive()``) is exactly zero (``real + 0 * x``); ``adaptive()`` is
    BPDA with the identity backward (Athalye, Carlini & Wagner 2018; Shin & Song 2017 instead
    approximate JPEG by a differentiable surrogate, not done here).
    """

    name: ClassVar[str] = "jpeg"
    gradient: ClassVar[GradientStory] = "bpda"

    def __init__(self, base: Classifier, *, quality: int = 75) -> None:
        self.quality = check_int("quality", quality, 1, 100)
        if not isinstance(base, Classifier):
            raise TypeError(f"a defense needs an advlab Classifier as its base; got {base!r}")
        if base.per_feature_bounds and not (
            bool((base.low == base.low.min()).all()) and bool((base.high == base.high.max()).all())
        ):
            raise ValueError(
                "jpeg needs one pixel range for the whole image, not per-feature bounds"
            )
        shape = base_image_shape(base, "jpeg")
        if shape is not None and shape[0] not in (1, 3):
            raise ValueError(
                f"jpeg needs 1 (grayscale) or 3 (RGB) channels; the base takes {shape[0]}"
            )
        super().__init__(base, JPEGTransform(base.low, base.high, self.quality))

    def defense_args(self) -> dict[str, Any]:
        return {"quality": self.quality}


defenses.register(BitDepth.name, BitDepth)
defenses.register(JPEG.name, JPEG)

__all__ = ["JPEG", "BitDepth", "jpeg_compress", "reduce_bit_depth"]
