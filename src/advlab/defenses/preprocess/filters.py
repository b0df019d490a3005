"""Smoothing filters in front of a classifier: Gaussian blur and the median filter."""

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
    image_shape,
)
from advlab.models.classifier import Classifier


def symmetric_pad(x: Tensor, before: int, after: int) -> Tensor:
    """Pad the last two dimensions by mirroring with the edge sample repeated (``d c b a | a b c
    d | d c b a``: numpy's ``"symmetric"``, scipy.ndimage's ``"reflect"``)."""
    if before == 0 and after == 0:
        return x
    h, w = x.shape[-2], x.shape[-1]
    if max(before, after) > min(h, w):
        raise ValueError(f"padding {max(before, after)} is larger than the image ({h}x{w})")
    parts = [x[..., :before, :].flip(-2), x, x[..., h - after :, :].flip(-2)]
    x = torch.cat(parts, dim=-2)
    parts = [x[..., :before].flip(-1), x, x[..., w - after :].flip(-1)]
    return torch.cat(parts, dim=-1)


def median_filter(x: Tensor, size: int) -> Tensor:
    """``size x size`` median filter of an image batch ``(N, C, H, W)``, per channel.

    Matches ``scipy.ndimage.median_filter(x, size=(1, 1, size, size), mode="reflect")``: the
    window covers offsets ``-(size // 2) .. (size - 1) // 2`` (so an even size looks up and left,
    as in Xu et al.'s 2x2 squeezer), the border is mirrored with the edge repeated, and for an
    even window the upper of the two middle values is taken (scipy's rank ``size**2 // 2``).
    Autograd passes each output's gradient to the one input it selected (a sparse subgradient).
    """
    image_shape(x, "the median filter")
    padded = symmetric_pad(x, size // 2, (size - 1) // 2)
    windows = padded.unfold(2, size, 1).unfold(3, size, 1)  # (N, C, H, W, size, size)
    flat = windows.reshape(*windows.shape[:4], size * size)
    return flat.kthvalue(size * size // 2 + 1, dim=-1).values


def gaussian_kernel(sigma: float, size: int) -> Tensor:
    """Normalized 1-D Gaussian weights ``(size,)`` centred on the middle tap."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(r**2) / (2 * sigma**2))
    return (k / k.sum()).float()


class GaussianBlurTransform(Transform):
    kernel: Tensor

    def __init__(self, low: Tensor, high: Tensor, sigma: float, size: int) -> None:
        super().__init__(low, high)
        self.sigma = sigma
        self.size = size
        self.register_buffer("kernel", gaussian_kernel(sigma, size), persistent=False)

    def real(self, x: Tensor) -> Tensor:
        c, h, w = image_shape(x, "Gaussian blur")
        pad = self.size // 2
        if pad >= min(h, w):
            raise ValueError(
                f"kernel_size {self.size} is too large for {h}x{w} images (reflect padding needs "
                f"kernel_size // 2 < {min(h, w)})"
            )
        k = self.kernel.to(device=x.device, dtype=x.dtype)
        out = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class GaussianBlur(InputTransformDefense):
    """Gaussian blur before the classifier: a classical smoothing (denoising) preprocessor.

    Each channel is convolved with a separable Gaussian of standard deviation ``sigma`` pixels
    (default 1.0) over a ``kernel_size x kernel_size`` window (odd; default
    ``2 * ceil(2 * sigma) + 1``, i.e. +-2 sigma), weights renormalized to sum to 1, with reflect
    padding (``d c b | a b c d | c b a``) so the output keeps its size. A convex combination of
    in-bounds pixels stays in bounds.

    Gradient story ``"exact"``: the blur is a linear convolution, so autograd through the
    defended model is the honest gradient; ``naive()`` and ``adaptive()`` are the model itself.
    """

    name: ClassVar[str] = "gaussian-blur"
    gradient: ClassVar[GradientStory] = "exact"

    def __init__(
        self, base: Classifier, *, sigma: float = 1.0, kernel_size: int | None = None
    ) -> None:
        self.sigma = check_float("sigma", sigma, low=0.0)
        if kernel_size is None:
            kernel_size = 2 * math.ceil(2 * self.sigma) + 1
        self.kernel_size = check_int("kernel_size", kernel_size, 1)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd; got {kernel_size}")
        shape = base_image_shape(base, "gaussian-blur") if isinstance(base, Classifier) else None
        if shape is not None and self.kernel_size // 2 >= min(shape[1:]):
            raise ValueError(
                f"kernel_size {self.kernel_size} is too large for the base's {shape[1]}x"
                f"{shape[2]} images"
            )
        low, high = _bounds(base)
        super().__init__(base, GaussianBlurTransform(low, high, self.sigma, self.kernel_size))

    def defense_args(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "kernel_size": self.kernel_size}


class MedianTransform(Transform):
    def __init__(self, low: Tensor, high: Tensor, size: int) -> None:
        super().__init__(low, high)
        self.size = size

    def real(self, x: Tensor) -> Tensor:
        return median_filter(x, self.size)


class MedianFilter(InputTransformDefense):
    """Median filter before the classifier (the local-smoothing squeezer of Xu, Evans & Qi 2018,
    "Feature squeezing"; used as a stand-alone defense there and in later evaluations).

    Each channel is replaced by the median of a ``kernel_size x kernel_size`` window (default 2,
    Xu et al.'s MNIST setting; even sizes allowed and anchored as in scipy, see
    :func:`median_filter`), with reflect padding (edge sample repeated, scipy's ``"reflect"``,
    as in the paper's implementation).

    Gradient story ``"bpda"``: autograd through the defended model (``naive()``) is torch's
    subgradient of the order statistic, which sends each output's gradient to the single input
    pixel that happened to be the median: exact almost everywhere but sparse and piecewise, so
    it is a poor ascent direction (Athalye, Carlini & Wagner 2018 list such filters among
    obfuscated-gradient defenses). ``adaptive()`` is the BPDA view: the real filter forward, the
    identity backward (the filter's output is close to its input on natural images).
    """

    name: ClassVar[str] = "median"
    gradient: ClassVar[GradientStory] = "bpda"

    def __init__(self, base: Classifier, *, kernel_size: int = 2) -> None:
        self.kernel_size = check_int("kernel_size", kernel_size, 2)
        shape = base_image_shape(base, "median") if isinstance(base, Classifier) else None
        if shape is not None and self.kernel_size // 2 > min(shape[1:]):
            raise ValueError(
                f"kernel_size {self.kernel_size} is too large for the base's {shape[1]}x"
                f"{shape[2]} images"
            )
        low, high = _bounds(base)
        super().__init__(base, MedianTransform(low, high, self.kernel_size))

    def defense_args(self) -> dict[str, Any]:
        return {"kernel_size": self.kernel_size}


def _bounds(base: Classifier) -> tuple[Tensor, Tensor]:
    if not isinstance(base, Classifier):
        raise TypeError(f"a defense needs an advlab Classifier as its base; got {base!r}")
    return base.low, base.high


defenses.register(GaussianBlur.name, GaussianBlur)
defenses.register(MedianFilter.name, MedianFilter)

__all__ = [
    "GaussianBlur",
    "MedianFilter",
    "gaussian_kernel",
    "median_filter",
    "symmetric_pad",
]
