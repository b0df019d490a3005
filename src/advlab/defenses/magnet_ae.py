"""MagNet's autoencoders and detector measures (Meng & Chen 2017).

See :mod:`advlab.defenses.magnet` for the defense that uses them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: Autoencoder layouts of Meng & Chen 2017, Table 1 (the authors' ``structure`` lists): an int is
#: a 3x3 sigmoid convolution with that many channels, ``"average"`` a 2x2 average pooling (an
#: upsampling on the way back). The decoder mirrors the encoder and ends in a 3x3 sigmoid
#: convolution back to the input channels.
ARCHS: dict[str, tuple[int | str, ...]] = {"I": (3, "average", 3), "II": (3,)}
MNIST_DETECTORS: tuple[str, ...] = ("I:l2", "II:l1")
CIFAR_DETECTORS: tuple[str, ...] = ("II:l1", "II:jsd@10", "II:jsd@40")
_TINY = 1e-12


class AutoEncoder(nn.Module):
    """A MagNet autoencoder (Meng & Chen 2017, Table 1) on images in ``[0, 1]``.

    ``arch="I"``: conv 3 - avg-pool 2 - conv 3 | conv 3 - upsample 2 - conv 3 - conv ``channels``;
    ``arch="II"``: conv 3 | conv 3 - conv ``channels``; every convolution 3x3, "same" padding,
    sigmoid. Works at any image size: pooling rounds up and upsampling is cropped back, so
    odd sizes (7x7) pass through (the authors' Keras model needs even sizes). Weights start as
    Keras's Glorot-uniform with zero biases, drawn from a private generator seeded by ``seed``.
    """

    def __init__(self, arch: str = "I", channels: int = 1, *, seed: int = 0) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown MagNet autoencoder {arch!r}; known: {', '.join(ARCHS)}")
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be an integer >= 1; got {channels!r}")
        self.arch, self.channels = arch, channels
        structure = ARCHS[arch]
        with torch.random.fork_rng(devices=[]):  # nn.Conv2d's own init draws from it
            layers, kinds = self._build(structure, channels)
        self.layers = nn.ModuleList(layers)
        self._kinds = kinds
        gen = torch.Generator().manual_seed(int(seed))
        for m in self.layers:
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * 9
                fan_out = m.out_channels * 9
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                with torch.no_grad():
                    m.weight.copy_((torch.rand(m.weight.shape, generator=gen) * 2 - 1) * limit)
                    if m.bias is not None:
                        m.bias.zero_()

    @staticmethod
    def _build(
        structure: tuple[int | str, ...], channels: int
    ) -> tuple[list[nn.Module], list[str]]:
        layers: list[nn.Module] = []
        kinds: list[str] = []
        prev = channels
        for layer in structure:
            if isinstance(layer, int):
                layers.append(nn.Conv2d(prev, layer, 3, padding=1))
                kinds.append("conv")
                prev = layer
            else:
                layers.append(nn.AvgPool2d(2, ceil_mode=True))
                kinds.append("pool")
        for layer in reversed(structure):
            if isinstance(layer, int):
                layers.append(nn.Conv2d(prev, layer, 3, padding=1))
                kinds.append("conv")
                prev = layer
            else:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                kinds.append("up")
        layers.append(nn.Conv2d(prev, channels, 3, padding=1))
        kinds.append("conv")
        return layers, kinds

    def reconstruct(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(AE(x), activity)``: the reconstruction ``(N, C, H, W)`` in ``(0, 1)`` and the sum of
        squared activations of every convolution per input ``(N,)`` (the authors' Keras
        ``activity_regularizer=l2``)."""
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"this MagNet autoencoder takes images with {self.channels} channels "
                f"(N, {self.channels}, H, W); got {tuple(x.shape)}"
            )
        sizes: list[tuple[int, int]] = []
        activity = x.new_zeros(x.shape[0])
        h = x
        for kind, layer in zip(self._kinds, self.layers, strict=True):
            if kind == "conv":
                h = torch.sigmoid(layer(h))
                activity = activity + h.square().flatten(1).sum(1)
            elif kind == "pool":
                sizes.append((h.shape[-2], h.shape[-1]))
                h = layer(h)
            else:
                hh, ww = sizes.pop()
                h = layer(h)[..., :hh, :ww]
        return h, activity

    def forward(self, x: Tensor) -> Tensor:
        return self.reconstruct(x)[0]

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, channels={self.channels}"


@dataclass(frozen=True)
class Detector:
    """One detector: autoencoder ``arch`` and measure ``kind`` (``"l1"``, ``"l2"``, ``"jsd"``
    with temperature ``T``). Written ``"I:l2"``, ``"II:l1"``, ``"II:jsd@10"``."""

    arch: str
    kind: str
    T: float = 1.0

    @staticmethod
    def parse(spec: str) -> Detector:
        if not isinstance(spec, str) or spec.count(":") != 1:
            raise ValueError(
                f"a detector is written 'ARCH:l1', 'ARCH:l2' or 'ARCH:jsd@T'; got {spec!r}"
            )
        arch, measure = spec.split(":")
        if arch not in ARCHS:
            raise ValueError(
                f"detector {spec!r}: unknown autoencoder {arch!r}; known: {', '.join(ARCHS)}"
            )
        if measure in ("l1", "l2"):
            return Detector(arch, measure)
        if measure.startswith("jsd@"):
            try:
                t = float(measure[4:])
            except ValueError:
                t = float("nan")
            if not (math.isfinite(t) and t > 0):
                raise ValueError(f"detector {spec!r}: the JSD temperature must be a number > 0")
            return Detector(arch, "jsd", t)
        raise ValueError(f"detector {spec!r}: the measure must be l1, l2 or jsd@T")


def jsd(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """Jensen-Shannon divergence ``(N,)`` (natural log) between ``softmax(logits_p)`` and
    ``softmax(logits_q)``, differentiable."""
    lp, lq = torch.log_softmax(logits_p, 1), torch.log_softmax(logits_q, 1)
    lm = torch.logsumexp(torch.stack([lp, lq]), 0) - math.log(2.0)
    kl_p = (lp.exp() * (lp - lm)).sum(1)
    kl_q = (lq.exp() * (lq - lm)).sum(1)
    return 0.5 * (kl_p + kl_q)
