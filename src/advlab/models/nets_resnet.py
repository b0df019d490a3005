"""Residual networks for 32x32 colour images: pre-activation ResNet-18 and Wide ResNet.

Both end in batch norm - ReLU - global average pooling - linear, so they accept any square input
size (the channel count is fixed at construction). Initialization is PyTorch's default.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from advlab.models.nets import check_common, check_int, check_prob


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al. 2016, "Identity mappings in deep residual
    networks"): BN-ReLU-conv3x3(stride)-[dropout]-BN-ReLU-conv3x3, plus the shortcut.

    The shortcut is the identity when shapes match, else a 1x1 convolution applied to the
    pre-activated input (as in both reference implementations). ``dropout`` between the two
    convolutions is the Wide ResNet variant (Zagoruyko & Komodakis 2016); 0 disables it.
    Input ``(N, in_planes, H, W)`` -> ``(N, planes, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = F.dropout(F.relu(self.bn2(out)), p=self.dropout, training=self.training)
        res: Tensor = self.conv2(out) + skip
        return res


class _ResNet(nn.Module):
    """Stem conv3x3 -> residual stages -> BN-ReLU -> global average pool -> linear."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: int,
        stem: int,
        stages: list[tuple[int, int, int]],  # (planes, blocks, first stride)
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_common(in_channels, num_classes, input_size)
        self.conv1 = nn.Conv2d(in_channels, stem, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        planes_in = stem
        for planes, n, stride in stages:
            for i in range(n):
                blocks.append(PreActBlock(planes_in, planes, stride if i == 0 else 1, dropout))
                planes_in = planes
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(planes_in)
        self.linear = nn.Linear(planes_in, num_classes)
        self.in_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects input (N, {self.in_channels}, H, W); "
                f"got {tuple(x.shape)}"
            )
        out = F.relu(self.bn(self.blocks(self.conv1(x))))  # (N, C, H', W')
        logits: Tensor = self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
        return logits


class PreActResNet18(_ResNet):
    """Pre-activation ResNet-18 (He et al. 2016, "Identity mappings in deep residual networks")
    in the CIFAR-10 form used by the adversarial-robustness literature (e.g. Rice et al. 2020).

    Stem conv3x3(``width``), four stages of two pre-activation basic blocks with ``width`` x
    (1, 2, 4, 8) channels and strides (1, 2, 2, 2), final BN-ReLU, global average pooling and a
    linear layer. ``width=64`` gives the standard 11.2M-parameter network. Deviations from the
    ImageNet ResNet-18: 3x3 stem without max-pooling (CIFAR form); global average pooling
    instead of a fixed 4x4 pool (identical at 32x32), so any input size >= 1 works.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        input_size: int = 32,
        *,
        width: int = 64,
    ) -> None:
        w = check_int("width", width, 1)
        stages = [(w, 2, 1), (2 * w, 2, 2), (4 * w, 2, 2), (8 * w, 2, 2)]
        super().__init__(in_channels, num_classes, input_size, w, stages)


class WideResNet(_ResNet):
    """Wide ResNet WRN-``depth``-``widen_factor`` (Zagoruyko & Komodakis 2016, "Wide residual
    networks"): stem conv3x3(16), three stages of ``(depth - 4) / 6`` pre-activation blocks with
    16k, 32k, 64k channels (k = ``widen_factor``) and strides (1, 2, 2), dropout ``dropout``
    between the block's convolutions, final BN-ReLU, global average pooling, linear.

    ``depth`` must satisfy ``(depth - 4) % 6 == 0`` and ``depth >= 10``; the default WRN-28-10
    has 36.5M parameters. Deviation: global average pooling instead of a fixed 8x8 pool
    (identical at 32x32), and PyTorch's default initialization instead of He-normal.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        input_size: int = 32,
        *,
        depth: int = 28,
        widen_factor: int = 10,
        dropout: float = 0.0,
    ) -> None:
        check_int("depth", depth, 10)
        if (depth - 4) % 6 != 0:
            raise ValueError(
                f"wide-resnet depth must be 6n + 4 (10, 16, 22, 28, 34, 40, ...); got {depth}"
            )
        k = check_int("widen_factor", widen_factor, 1)
        n = (depth - 4) // 6
        stages = [(16 * k, n, 1), (32 * k, n, 2), (64 * k, n, 2)]
        super().__init__(
            in_channels, num_classes, input_size, 16, stages, check_prob("dropout", dropout)
        )
