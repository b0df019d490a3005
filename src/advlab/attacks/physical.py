"""A print-and-photograph simulator (Kurakin, Goodfellow & Bengio 2017, "Adversarial examples in
the physical world", ICLR workshop), EOT attacks through it (Athalye, Engstrom, Ilyas & Kwok
2018, "Synthesizing robust adversarial examples", ICML) and the destruction rate.

Kurakin et al. printed clean and adversarial images, photographed the printouts with a phone
camera, cropped and rescaled the photos, and classified them. This module replaces the printer
and camera by random, differentiable image transformations, each an ``nn.Module``:

* :class:`Perspective`: the camera's viewpoint, a homography from random corner jitter.
* :class:`DefocusBlur` (disk kernel) and :class:`MotionBlur` (line kernel).
* :class:`Exposure`: brightness / contrast / gamma (:func:`.spatial.adjust_lighting`).
* :class:`ColorShift`: white balance / printer colour, a per-channel gain (no-op for grey).
* :class:`Resample`: the camera's resolution, down- then up-scaling.
* :class:`SensorNoise`: Poisson-Gaussian sensor noise (heteroscedastic Gaussian approximation).
* :class:`JPEG`: the phone's compression, an 8×8 DCT quantization in torch.

:class:`PrintPhoto` composes them (defaults in its docstring). Every transform is called as
``t(x, generator, bounds=(low, high))`` on images ``(N, C, H, W)`` in pixel units: ``generator``
(a ``torch.Generator``, or an int seed) is the only source of randomness, every image draws its
own parameters, and the result is clamped into ``bounds``. Same generator state → same output;
the draws depend only on the batch shape, not on the pixel values, so two batches of equal shape
transformed from equal generator states get the same parameters image by image (used by
:func:`destruction_rate` to photograph clean and adversarial images "on the same page", as in
the paper). Random numbers are drawn on the generator's device and moved to the images'.

:func:`photographed` turns a model into a randomized :class:`~advlab.models.Classifier` (every
forward pass photographs its input anew); ``advlab.models.eot(photographed(clf, t), n)``
attacks the expected loss over ``n`` photographs (EOT), e.g. with PGD.
:func:`destruction_rate` is Kurakin et al.'s metric.

Simplifications (the simulator is a stand-in, not a calibrated model of a printer and camera):
no printer halftoning, colour gamut or paper texture, no lens distortion or vignetting, no
cropping error beyond the perspective jitter; JPEG without chroma subsampling, with the float
DCT and without the final rounding of pixels to 8 bits (see :class:`JPEG`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.attacks.base import attack_mode
from advlab.attacks.spatial import adjust_lighting
from advlab.models.classifier import Classifier

GeneratorLike = torch.Generator | int
BoundsPair = tuple[float, float]

# JPEG standard tables (ITU-T T.81 Annex K), luminance and chrominance
_LUMA = [
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
]
_CHROMA = [
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
    *([[99] * 8] * 4),
]


def _number(name: str, value: Any, low: float = 0.0, high: float = math.inf) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float)
    if not ok or not low <= value <= high or math.isnan(value):
        raise ValueError(f"{name} must be a number in [{low:g}, {high:g}]; got {value!r}")
    return float(value)


def _range(name: str, value: Any, low: float, high: float) -> tuple[float, float]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValueError(f"{name} must be a pair (min, max); got {value!r}")
    a, b = (_number(name, v, low, high) for v in value)
    if a > b:
        raise ValueError(f"{name} must be (min, max) with min <= max; got {value!r}")
    return a, b


def _as_generator(generator: GeneratorLike) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise TypeError(
            f"generator must be a torch.Generator or an int seed; got {type(generator).__name__}"
        )
    return torch.Generator().manual_seed(generator)


class RandomTransform(nn.Module, ABC):
    """A random image transformation: ``t(x, generator, bounds=(0.0, 1.0))``.

    ``x (N, C, H, W)`` float in pixel units inside scalar ``bounds``; ``generator`` a
    ``torch.Generator`` (its state advances) or an int seed. Subclasses implement
    :meth:`apply_unit` on images scaled to ``[0, 1]``; the output is clamped into ``bounds``.
    Differentiable in ``x`` (JPEG: straight-through rounding).
    """

    def forward(
        self, x: Tensor, generator: GeneratorLike, *, bounds: BoundsPair = (0.0, 1.0)
    ) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(
                f"{type(self).__name__} needs images of shape (N, C, H, W); got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"x must be a float tensor in pixel units; got dtype {x.dtype}")
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise TypeError(
                f"bounds must be a pair of numbers (low, high); got {bounds!r}"
            ) from None
        if not lo < hi:
            raise ValueError(f"bounds must satisfy low < high; got {bounds!r}")
        gen = _as_generator(generator)
        z = x if (lo, hi) == (0.0, 1.0) else (x - lo) / (hi - lo)
        z = self.apply_unit(z, gen).clamp(0.0, 1.0)
        return z if (lo, hi) == (0.0, 1.0) else z * (hi - lo) + lo

    @abstractmethod
    def apply_unit(self, z: Tensor, generator: torch.Generator) -> Tensor:
        """The transformation of ``z (N, C, H, W)`` with values in ``[0, 1]``."""

    @staticmethod
    def uniform(
        n: int, low: float, high: float, generator: torch.Generator, like: Tensor
    ) -> Tensor:
        """``(n,)`` uniform in ``[low, high]``, drawn on the generator's device, in ``like``'s
        dtype and device."""
        u = torch.rand(n, generator=generator, device=generator.device)
        return (low + (high - low) * u).to(dtype=like.dtype, device=like.device)

    def extra_repr(self) -> str:
        hyper = {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "training"}
        return ", ".join(f"{k}={v!r}" for k, v in hyper.items())


# --------------------------------------------------------------------------- geometry
class Perspective(RandomTransform):
    """Viewpoint change: each corner of the image moves by up to ``distortion`` of the image
    side in x and y (uniform, independent), and the image is warped by the homography that maps
    the corners (bilinear ``grid_sample``, edge pixels repeated outside). Default 0.03."""

    def __init__(self, distortion: float = 0.03) -> None:
        super().__init__()
        self.distortion = _number("distortion", distortion, 0.0, 0.25)

    def apply_unit(self, z: Tensor, generator: torch.Generator) -> Tensor:
        n, _, h, w = z.shape
        d = self.distortion
        jitter = self.uniform(n * 8, -2 * d, 2 * d, generator, z).view(n, 4, 2).double()
        if d == 0:
            return z
        dst = torch.tensor(
            [[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64
        )
        dst = dst.to(z.device).expand(n, 4, 2)
        src = dst + jitter  # output corner -> where it samples the input
        xd, yd, xs, ys = dst[..., 0], dst[..., 1], src[..., 0], src[..., 1]
        one, zero = torch.ones_like(xd), torch.zeros_like(xd)
        rows_x = torch.stack([xd, yd, one, zero, zero, zero, -xd * xs, -yd * xs], -1)
        rows_y = torch.stack([zero, zero, zero, xd, yd, one, -xd * ys, -yd * ys], -1)
        a = torch.cat([rows_x, rows_y], 1)  # (n, 8, 8)
        b = torch.cat([xs, ys], 1)  # (n, 8)
        hmat = torch.cat([torch.linalg.solve(a, b), one[:, :1]], 1).view(n, 3, 3)
        eye = torch.eye(2, 3, dtype=torch.float64, device=z.device).expand(n, 2, 3)
        base = F.affine_grid(eye, [n, 1, h, w], align_corners=False)  # (n, h, w, 2)
        homog = torch.cat([base, torch.ones_like(base[..., :1])], -1)  # (n, h, w, 3)
        mapped = torch.einsum("nij,nhwj->nhwi", hmat, homog)
        grid = (mapped[..., :2] / mapped[..., 2:]).to(z.dtype)
        return F.grid_sample(z, grid, padding_mode="border", align_corners=False)


# --------------------------------------------------------------------------- blur
def _per_image_conv(z: Tensor, kernels: Tensor) -> Tensor:
    """Convolve each image of ``z (N, C, H, W)`` with its own kernel ``(N, k, k)`` (odd ``k``),
    edges replicated."""
    n, c, h, w = z.shape
    k = kernels.shape[-1]
    padded = F.pad(z.reshape(1, n * c, h, w), [k // 2] * 4, mode="replicate")
    weight = kernels.to(z.dtype).repeat_interleave(c, 0).unsqueeze(1)  # (n·c, 1, k, k)
    return F.conv2d(padded, weight, groups=n * c).view(n, c, h, w)


def _offsets(k: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """Pixel offsets ``(k, k)`` (dx, dy) from the centre of a ``k × k`` kernel."""
    r = torch.arange(k, dtype=like.dtype, device=like.device) - k // 2
    return r.view(1, -1).expand(k, k), r.view(-1, 1).expand(k, k)


class DefocusBlur(RandomTransform):
    """Out-of-focus blur: a disk kernel of radius uniform in ``[0, radius]`` pixels per image
    (anti-aliased edge, weight ``clamp(r + 0.5 - distance, 0, 1)``, normalized; radius 0 is the
    identity). Default ``radius=0.75``."""

    def __init__(self, radius: float = 0.75) -> None:
        super().__init__()
        self.radius = _number("radius", radius, 0.0, 16.0)

    def apply_unit(self, z: Tensor, generator: torch.Generator) -> Tensor:
        r = self.uniform(z.shape[0], 0.0, self.radius, generator, z)
        k = 2 * math.ceil(self.radius) + 1
        dx, dy = _offsets(k, z)
        dist = (dx.square() + dy.square()).sqrt()
        kern = (r.view(-1, 1, 1) + 0.5 - dist).clamp(0.0, 1.0)
        return _per_image_conv(z, kern / kern.sum((1, 2), keepdim=True))


class MotionBlur(RandomTransform):
    """Camera shake: a line kernel of length uniform in ``[0, length]`` pixels and direction
    uniform in ``[0°, 180°)`` per image (weight ``clamp(1 - distance to the segment, 0, 1)``,
    normalized; length 0 is the identity). Default ``length=1.5``."""

    def __init__(self, length: float = 1.5) -> None:
        super().__init__()
        self.length = _number("length", length, 0.0, 32.0)

    def apply_unit(self, z: Tensor, generator: torch.Generator) -> Tensor:
        n = z.shape[0]
        half = self.uniform(n, 0.0, self.length, generator, z).view(-1, 1, 1) / 2
        phi = self.uniform(n, 0.0, math.pi, generator, z).view(-1, 1, 1)
        k = 2 * math.ceil(self.length / 2) + 1
        dx, dy = _offsets(k, z)
        along = (dx * phi.cos() + dy * phi.sin()).clamp(-half, half)  # projection on the segment
        dist = ((dx - along * phi.cos()).square() + (dy - along * phi.sin()).square()).sqrt()
        kern = (1 - dist).clamp(0.0, 1.0)
        return _per_image_conv(z, kern / kern.sum((1, 2), keepdim=True))


# --------------------------------------------------------------------------- photometry
class Exposure(RandomTransform):
    """Lighting and exposure: per image a brightness offset uniform in
    ``[-brightness, brightness]``, contrast and gamma factors log-uniform in ``[1/contrast,
    contrast]`` and ``[1/gamma, gamma]`` (:func:`~advlab.attacks.spatial.adjust_lighting`).
    Defaults 0.1, 1.2, 1.2."""

    def __init__(self, brightness: float = 0.1, contrast: float = 1.2, gamma: float = 1.2) -> None:
        super().__init__()
        self.brightness = _number("brightness", brightness, 0.0, 1.0)
        self.contrast = _number("contrast", contrast, 1.0, 100.0)
        self.gamma = _number("gamma", gamma, 1.0, 100.0)

    def apply_unit(self, z: Tensor, generator: torch.Generator) -> Tensor:
        n = z.shape[0]
        b = self.uniform(n, -self.brightness, self.brightness, generator, z)
        lc, lg = math.log(self.contrast), math.log(self.gamma)
        c = self.uniform(n, -lc, lc, generator, z).exp()
        g = self.uniform(n, -lg, lg, generator, z).exp()
        return adjust_lighting(z, b, c, g)


class ColorShift(RandomTransform):
    """White balance / printer colour: each channel multiplied by a gain uniform in
    ``[1 - gain, 1 + gain]`` per image; a no-op (and no draws) for one-channel images.
    Default 0.1."""

    def __init__(self, gain: float = 0.1) -> None:
        super().__init__()
        self.gain = _number("gain", gain, 0.0, 1.0)

    def apply_unit(self, z: Tensor, generator: torch.Generator) -> Tensor:
        n, c = z.shape[:2]
        if c == 1:
            return z
        g = self.uniform(n * c, 1 - self.gain, 1 + self.gain, generator, z)
        return z * g.view(n, c, 1, 1)


class Resample(RandomTransform):
    """Camera resolution: per image, downscale by a factor uniform in ``scale = (min, max)``
    (bilinear, anti-aliased; at least 1 pixel) and upscale back (bilinear). Default
    ``(0.6, 1.0)``."""

    def __init__(self, scale: tuple[float, float] = (0.6, 1.0)) -> None:
        super().__init__()
        self.scale = _range("scale", scale, 0.01, 1.0)

    def apply_unit(self, z: Tensor, generator: torch.Generator) -> Tensor:
        n, _, h, w = z.shape
        s = self.uniform(n, *self.scale, generator, z).double()
        hs = (s * h).round().clamp_min(1).long()
        ws = (s * w).round().clamp_min(1).long()
        out = z.clone()
        for size in torch.unique(torch.stack([hs, ws], 1).cpu(), dim=0).tolist():
            if size == [h, w]:
                continue
            sel = ((hs == size[0]) & (ws == size[1])).nonzero().squeeze(1).to(z.device)
            small = F.interpolate(z[sel], size=size, mode="bilinear", antialias=True)
            out[sel] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        return out


class SensorNoise(RandomTransform):
    """Sensor noise, Poisson-Gaussian (Foi et al. 2008) in its heteroscedastic Gaussian
    approximation: ``z + sqrt(read² + shot²·z)·n``, ``n ~ N(0, 1)`` per pixel; ``read`` is the
    signal-independent standard deviation and ``shot`` the shot-noise standard deviation at
    white (fixed levels, not drawn). Defaults ``read=0.01``, ``shot=0.02``."""

    def __init__(self, read: float = 0.01, shot: float = 0.02) -> None:
        super().__init__()
        self.read = _number("read", read, 0.0, 1.0)
        self.shot = _number("shot", shot, 0.0, 1.0)

    def apply_unit(self, z: Tensor, generator: torch.Generator) -> Tensor:
        noise = torch.randn(z.shape, generator=generator, device=generator.device)
        var = self.read**2 + self.shot**2 * z.clamp_min(0.0)
        return z + var.clamp_min(1e-12).sqrt() * noise.to(dtype=z.dtype, device=z.device)


# --------------------------------------------------------------------------- JPEG
def _dct_matrix(dtype: torch.dtype, device: torch.device) -> Tensor:
    """The orthonormal 8-point DCT-II matrix ``(8, 8)``."""
    i = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * i.view(1, -1) + 1) * i.view(-1, 1) * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(dtype=dtype, device=device)


def jpeg_tables(quality: Tensor) -> tuple[Tensor, Tensor]:
    """Luminance and chrominance quantization tables ``(N, 8, 8)`` for integer qualities
    ``(N,)`` in ``[1, 100]``, scaled as libjpeg (IJG) does: ``scale = 5000/q`` below 50, else
    ``200 - 2q``; ``floor((table·scale + 50)/100)`` clamped to ``[1, 255]``."""
    q = quality.double().view(-1, 1, 1)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)
    out = []
    for base in (_LUMA, _CHROMA):
        t = torch.tensor(base, dtype=torch.float64, device=quality.device)
        out.append(((t * scale + 50) / 100).floor().clamp(1, 255))
    return out[0], out[1]


class JPEG(RandomTransform):
    """JPEG compression, differentiable: quality uniform over the integers in
    ``quality = (min, max)`` per image (default ``(60, 95)``, phone-camera settings).

    Pixels are scaled to 0-255 and, for 3 channels, converted to YCbCr (JFIF); other channel
    counts are coded channel by channel as luminance. Each channel is level-shifted by 128, cut
    into 8×8 blocks (edges replicated to a multiple of 8), transformed by the orthonormal
    DCT-II, quantized with the standard tables scaled by quality as libjpeg does, and decoded.
    Rounding is straight-through: exact in the forward pass, identity gradient (BPDA, Athalye,
    Carlini & Wagner 2018). Simplifications against libjpeg: no chroma subsampling, float DCT,
    decoded pixels not rounded to 8 bits; for grey images the output is within a few grey
    levels of PIL's (checked in the tests).
    """

    def __init__(self, quality: tuple[int, int] = (60, 95)) -> None:
        super().__init__()
        lo, hi = _range("quality", quality, 1, 100)
        if lo != int(lo) or hi != int(hi):
            raise ValueError(f"quality must be a pair of integers in [1, 100]; got {quality!r}")
        self.quality = (int(lo), int(hi))

    def apply_unit(self, z: Tensor, generator: torch.Generator) -> Tensor:
        n, c, h, w = z.shape
        lo, hi = self.quality
        q = torch.randint(lo, hi + 1, (n,), generator=generator, device=generator.device)
        luma, chroma = (t.to(dtype=z.dtype, device=z.device) for t in jpeg_tables(q.to(z.device)))
        x = z * 255
        if c == 3:
            x = _rgb_to_ycbcr(x)
            tables = torch.stack([luma, chroma, chroma], 1)  # (n, 3, 8, 8)
        else:
            tables = luma.unsqueeze(1).expand(n, c, 8, 8)
        ph, pw = -h % 8, -w % 8
        x = F.pad(x - 128, [0, pw, 0, ph], mode="replicate") if ph or pw else x - 128
        hb, wb = x.shape[2] // 8, x.shape[3] // 8
        blocks = x.view(n, c, hb, 8, wb, 8).permute(0, 1, 2, 4, 3, 5)  # (n, c, hb, wb, 8, 8)
        d = _dct_matrix(z.dtype, z.device)
        coef = d @ blocks @ d.T
        t = tables.view(n, c, 1, 1, 8, 8)
        scaled = coef / t
        quant = scaled + (scaled.round() - scaled).detach()  # straight-through rounding
        rec = d.T @ (quant * t) @ d
        x = rec.permute(0, 1, 2, 4, 3, 5).reshape(n, c, hb * 8, wb * 8)[:, :, :h, :w] + 128
        if c == 3:
            x = _ycbcr_to_rgb(x)
        return x / 255


def _rgb_to_ycbcr(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return torch.stack([y, cb, cr], 1)


def _ycbcr_to_rgb(x: Tensor) -> Tensor:
    y, cb, cr = x[:, 0], x[:, 1] - 128, x[:, 2] - 128
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    b = y + 1.772 * cb
    return torch.stack([r, g, b], 1)


# --------------------------------------------------------------------------- composition
class PrintPhoto(RandomTransform):
    """The print-and-photograph pipeline: ``transforms`` applied in order (each clamped to the
    bounds), one generator for all. Default (``transforms=None``), in a camera's order:
    ``Perspective(0.03)``, ``DefocusBlur(0.75)``, ``MotionBlur(1.5)``,
    ``Exposure(0.1, 1.2, 1.2)``, ``ColorShift(0.1)``, ``Resample((0.6, 1.0))``,
    ``SensorNoise(0.01, 0.02)``, ``JPEG((60, 95))`` (advlab's choices, not calibrated on a real
    printer and camera). Blur lengths are in pixels of the classifier's input, so they are
    relatively stronger on small images: on the 8×8 scikit-learn digits a LeNet's clean accuracy
    falls from 95% to 79% through the default pipeline (most of it from ``Resample``, 87% alone;
    every other step alone stays within 1.5 points)."""

    def __init__(self, transforms: Sequence[RandomTransform] | None = None) -> None:
        super().__init__()
        if transforms is None:
            transforms = self.defaults()
        items = list(transforms)
        for t in items:
            if not isinstance(t, RandomTransform):
                raise TypeError(
                    f"PrintPhoto composes RandomTransform modules; got {type(t).__name__}"
                )
        self.steps = nn.ModuleList(items)

    @staticmethod
    def defaults() -> list[RandomTransform]:
        """The default pipeline (a fresh list of fresh modules)."""
        return [
            Perspective(0.03),
            DefocusBlur(0.75),
            MotionBlur(1.5),
            Exposure(0.1, 1.2, 1.2),
            ColorShift(0.1),
            Resample((0.6, 1.0)),
            SensorNoise(0.01, 0.02),
            JPEG((60, 95)),
        ]

    def apply_unit(self, z: Tensor, generator: torch.Generator) -> Tensor:
        for t in self.steps:
            z = cast(RandomTransform, t).apply_unit(z, generator).clamp(0.0, 1.0)
        return z

    def extra_repr(self) -> str:
        return ""


# --------------------------------------------------------------------------- models and metric
def _scalar_bounds(model: Classifier, what: str) -> BoundsPair:
    if not isinstance(model, Classifier):
        raise TypeError(f"{what} needs an advlab Classifier; got {type(model).__name__}")
    if model.per_feature_bounds:
        raise ValueError(
            f"{what} needs a model with scalar bounds (images); this one has per-feature bounds"
        )
    return model.bounds


class _Photographed(nn.Module):
    def __init__(self, model: Classifier, transform: RandomTransform, seed: int) -> None:
        super().__init__()
        self.model = model
        self.transform = transform
        self.bounds = model.bounds
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: Tensor) -> Tensor:
        xt = self.transform(x, self.generator, bounds=self.bounds)
        return self.model.logits(xt, check=False)


def photographed(model: Classifier, transform: RandomTransform, *, seed: int = 0) -> Classifier:
    """A randomized :class:`Classifier`: ``model`` applied to ``transform(x)``, with a new draw of
    the transform at every forward pass from a private CPU generator seeded with ``seed`` at
    construction (so two models built with the same seed answer the same sequence of calls
    identically). Differentiable (EOT, Athalye et al. 2018): attack the expected loss with
    ``advlab.models.eot(photographed(model, transform), samples)``. Bounds, classes and input
    shape are ``model``'s (scalar bounds only)."""
    bounds = _scalar_bounds(model, "photographed")
    if not isinstance(transform, RandomTransform):
        raise TypeError(
            f"transform must be an advlab RandomTransform (e.g. PrintPhoto()); got "
            f"{type(transform).__name__}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int; got {seed!r}")
    wrapped = Classifier(
        _Photographed(model, transform, seed),
        bounds=bounds,
        num_classes=model.num_classes,
        input_shape=model.input_shape,
    )
    wrapped.preset = model.preset
    wrapped.train(model.training)
    return wrapped


@dataclass
class Destruction:
    """:func:`destruction_rate`'s result.

    Attributes:
        rate: Kurakin et al.'s destruction rate (NaN when ``eligible`` is 0).
        eligible: images correctly classified clean and misclassified adversarial (the
            formula's denominator).
        draws: transform draws per image.
        clean_accuracy, adversarial_accuracy: accuracy on ``x`` and ``x_adv`` (untransformed).
        clean_accuracy_transformed, adversarial_accuracy_transformed: the same after the
            transform, averaged over draws (the clean one is the baseline: what the transform
            alone does to the model).
        clean_destruction: the transform's own damage, ``Σ C(X)·¬C(T(X)) / Σ C(X)``: the share
            of correctly classified clean images that the transform makes misclassified.
        restored: ``(N,)`` per image, the share of draws in which ``T(x_adv)`` is classified
            correctly.
    """

    rate: float
    eligible: int
    draws: int
    clean_accuracy: float
    adversarial_accuracy: float
    clean_accuracy_transformed: float
    adversarial_accuracy_transformed: float
    clean_destruction: float
    restored: Tensor

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (without the per-image tensor)."""
        return {k: v for k, v in vars(self).items() if k != "restored"}


def destruction_rate(
    model: Classifier,
    x: Tensor,
    x_adv: Tensor,
    y: Tensor,
    transform: RandomTransform,
    *,
    draws: int = 10,
    seed: int = 0,
    batch_size: int = 1024,
) -> Destruction:
    """Kurakin et al. 2017's destruction rate of ``transform`` on the adversarial images
    ``x_adv`` of ``x`` (both ``(N, C, H, W)``, pixel units) with labels ``y (N,)``: their
    formula (1),

        rate = Σ C(X, y)·¬C(X_adv, y)·C(T(X_adv), y) / Σ C(X, y)·¬C(X_adv, y),

    with ``C(·, y)`` = "classified as ``y``": the share of the adversarial images that worked
    (clean correct, adversarial wrong) that the transform turns back into correct ones.

    Draws: each image is transformed ``draws`` times (generator seeded with ``seed``), and
    ``C(T(X_adv), y)`` is replaced by its average over the draws, so the rate is the mean of
    the per-draw rates (the denominator does not depend on the draws). Clean and adversarial
    images get the same transform parameters image by image and draw by draw (the paper
    photographed both on the same page). The model runs in eval mode (restored after) without
    gradients, in batches of ``batch_size`` (each batch takes its ``draws`` draws in turn from
    the one generator, so the draws depend on ``seed`` and ``batch_size``).
    """
    bounds = _scalar_bounds(model, "destruction_rate")
    if not isinstance(transform, RandomTransform):
        raise TypeError(
            f"transform must be an advlab RandomTransform; got {type(transform).__name__}"
        )
    for name, t in (("x", x), ("x_adv", x_adv)):
        if not isinstance(t, Tensor) or t.ndim != 4:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{name} must be images of shape (N, C, H, W); got {shape}")
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv must have x's shape {tuple(x.shape)}; got {tuple(x_adv.shape)}")
    if not isinstance(y, Tensor) or y.shape != (x.shape[0],) or y.is_floating_point():
        got = f"shape {tuple(y.shape)}, {y.dtype}" if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"y must be integer labels of shape ({x.shape[0]},); got {got}")
    for name, v in (("draws", draws), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int; got {seed!r}")
    model.check_input(x)
    model.check_input(x_adv)
    y = y.to(device=x.device, dtype=torch.long)
    n = x.shape[0]
    ok_clean = torch.zeros(n, device=x.device)
    ok_adv = torch.zeros(n, device=x.device)
    ok_clean_t = torch.zeros(n, device=x.device)
    ok_adv_t = torch.zeros(n, device=x.device)

    def correct(batch: Tensor, labels: Tensor) -> Tensor:
        return (model.logits(batch, check=False).argmax(1) == labels).float()

    gen = torch.Generator().manual_seed(seed)
    with attack_mode(model, "eval"), torch.no_grad():
        for s in range(0, n, batch_size):
            sl = slice(s, s + batch_size)
            xb, ab, yb = x[sl], x_adv[sl], y[sl]
            ok_clean[sl], ok_adv[sl] = correct(xb, yb), correct(ab, yb)
            for _ in range(draws):
                state = gen.get_state()
                ok_adv_t[sl] += correct(transform(ab, gen, bounds=bounds), yb)
                gen.set_state(state)  # the clean images get the same draw
                ok_clean_t[sl] += correct(transform(xb, gen, bounds=bounds), yb)
    restored = ok_adv_t / draws
    eligible = ok_clean * (1 - ok_adv)
    n_elig = int(eligible.sum())
    rate = float((eligible * restored).sum() / n_elig) if n_elig else float("nan")
    n_clean = float(ok_clean.sum())
    broken = float((ok_clean * (1 - ok_clean_t / draws)).sum())
    return Destruction(
        rate=rate,
        eligible=n_elig,
        draws=draws,
        clean_accuracy=float(ok_clean.mean()),
        adversarial_accuracy=float(ok_adv.mean()),
        clean_accuracy_transformed=float((ok_clean_t / draws).mean()),
        adversarial_accuracy_transformed=float(restored.mean()),
        clean_destruction=broken / n_clean if n_clean else float("nan"),
        restored=restored.cpu(),
    )
