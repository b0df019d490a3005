"""Architectures for the model zoo: small MNIST-scale networks from the classic papers.

Every network maps a batch ``(N, in_channels, input_size, input_size)`` of (already normalized)
images to logits ``(N, num_classes)``; none applies a softmax. Fully connected layers after a
convolutional stack are sized arithmetically at construction (no lazy modules, no dummy forward),
so weights load strictly from safetensors. Initialization is PyTorch's default for every layer
(deterministic given the global torch seed); where a paper used another initializer the class
docstring says so. The residual networks live in :mod:`advlab.models.nets_resnet`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

_MAX_SIZE_SEARCH = 1024  # largest input size tried when looking for an architecture's minimum


# --------------------------------------------------------------------------------- validation
def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an ``int >= minimum`` (bools refused), else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value}")
    return value


def check_prob(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a dropout probability in ``[0, 1)``, else raise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number in [0, 1); got {value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1); got {value}")
    return float(value)


def check_sizes(name: str, value: object) -> tuple[int, ...]:
    """Return ``value`` as a tuple of ints >= 1 (a list/tuple of layer widths), else raise."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of layer widths (ints >= 1); got {value!r}")
    return tuple(check_int(f"{name}[{i}]", v, 1) for i, v in enumerate(value))


def check_common(in_channels: object, num_classes: object, input_size: object) -> None:
    """Validate the three arguments every zoo network takes."""
    check_int("in_channels", in_channels, 1)
    check_int("num_classes", num_classes, 2)
    check_int("input_size", input_size, 1)


# --------------------------------------------------------------------------- spatial sizes
def _first(v: int | tuple[int, ...]) -> int:
    return v if isinstance(v, int) else int(v[0])


def _window_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    return span // stride + 1 if span >= 0 else 0


def spatial_size(layers: Iterable[nn.Module], size: int) -> int:
    """Side length after ``layers`` for a square input of side ``size`` (0 if it vanishes).

    Understands ``Conv2d``, ``MaxPool2d``/``AvgPool2d`` (floor mode) and shape-preserving layers
    (activations, dropout, batch norm); anything else raises ``TypeError``.
    """
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            if isinstance(layer.padding, str):
                if layer.padding == "valid":
                    size = _window_out(
                        size, layer.kernel_size[0], layer.stride[0], 0, layer.dilation[0]
                    )
                # "same": the side is unchanged (PyTorch allows it only with stride 1)
            else:
                size = _window_out(
                    size, layer.kernel_size[0], layer.stride[0], layer.padding[0], layer.dilation[0]
                )
        elif isinstance(layer, nn.MaxPool2d | nn.AvgPool2d):
            if layer.ceil_mode:
                raise TypeError("spatial_size does not support ceil_mode pooling")
            stride = layer.stride if layer.stride is not None else layer.kernel_size
            dilation = layer.dilation if isinstance(layer, nn.MaxPool2d) else 1
            size = _window_out(
                size,
                _first(layer.kernel_size),
                _first(stride),
                _first(layer.padding),
                _first(dilation),
            )
        elif not isinstance(
            layer,
            nn.ReLU | nn.Dropout | nn.Dropout2d | nn.BatchNorm2d | nn.Identity | ChannelMaxout,
        ):
            raise TypeError(f"spatial_size cannot see through {type(layer).__name__}")
        if size < 1:
            return 0
    return size


def min_input_size(layers: Sequence[nn.Module]) -> int:
    """Smallest square input side for which ``layers`` leave at least one pixel."""
    for n in range(1, _MAX_SIZE_SEARCH + 1):
        if spatial_size(layers, n) >= 1:
            return n
    raise ValueError(f"no input size up to {_MAX_SIZE_SEARCH} fits these layers")


def flat_features(arch: str, features: nn.Sequential, channels: int, input_size: int) -> int:
    """Number of features after ``features`` and flattening, or a ``ValueError`` that says the
    minimum input size of ``arch`` when the stack shrinks the input to nothing."""
    side = spatial_size(features, input_size)
    if side < 1:
        raise ValueError(
            f"{arch} needs input_size >= {min_input_size(list(features))}; got {input_size}"
        )
    return channels * side * side


# -------------------------------------------------------------------------------- base class
class FeatureNet(nn.Module):
    """Base: ``features`` (spatial stack) -> flatten -> ``head`` (fully connected) -> logits.

    The input shape is fixed at construction (the head's width depends on it); ``forward``
    checks it and raises a ``ValueError`` naming the expected and the received shape.
    """

    features: nn.Sequential
    head: nn.Sequential

    def __init__(self, in_channels: int, num_classes: int, input_size: int) -> None:
        super().__init__()
        check_common(in_channels, num_classes, input_size)
        self.input_shape = (in_channels, input_size, input_size)
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            c, h, w = self.input_shape
            raise ValueError(
                f"{type(self).__name__} expects input (N, {c}, {h}, {w}); got {tuple(x.shape)}"
            )
        out: Tensor = self.head(torch.flatten(self.features(x), 1))
        return out


def _dense(sizes: Sequence[int], dropout: float = 0.0) -> list[nn.Module]:
    """``[Linear, ReLU, (Dropout)]`` for each consecutive pair in ``sizes``."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return layers


# ---------------------------------------------------------------------------- fully connected
class SoftmaxRegression(FeatureNet):
    """Shallow softmax regression: flatten + one linear layer (Goodfellow et al. 2015, "Explaining
    and harnessing adversarial examples", §4). Returns the logits; the softmax is in the loss."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__(in_channels, num_classes, input_size)
        self.features = nn.Sequential()
        self.head = nn.Sequential(nn.Linear(in_channels * input_size**2, num_classes))


class MLP(FeatureNet):
    """Multilayer perceptron: ``[Linear-ReLU-(Dropout)] x len(hidden)`` then a linear layer.

    Default ``hidden=(256, 256)``, ``dropout=0.0``. With ``hidden=(300,) * 4, dropout=0.5`` it is
    model D of Tramèr et al. 2018 (who used He-normal initialization; here PyTorch's default).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        *,
        hidden: Sequence[int] = (256, 256),
        dropout: float = 0.0,
    ) -> None:
        super().__init__(in_channels, num_classes, input_size)
        sizes = (in_channels * input_size**2, *check_sizes("hidden", hidden))
        p = check_prob("dropout", dropout)
        self.features = nn.Sequential()
        self.head = nn.Sequential(*_dense(sizes, p), nn.Linear(sizes[-1], num_classes))


class Maxout(nn.Module):
    """Maxout layer (Goodfellow et al. 2013): ``units`` outputs, each the max of ``pieces``
    affine pieces. Input ``(N, in_features)`` -> output ``(N, units)``."""

    def __init__(self, in_features: int, units: int, pieces: int) -> None:
        super().__init__()
        self.units = check_int("units", units, 1)
        self.pieces = check_int("pieces", pieces, 1)
        self.linear = nn.Linear(in_features, units * pieces)

    def forward(self, x: Tensor) -> Tensor:
        z: Tensor = self.linear(x).unflatten(-1, (self.units, self.pieces))  # (N, units, pieces)
        return z.amax(dim=-1)

    def extra_repr(self) -> str:
        return f"units={self.units}, pieces={self.pieces}"


class MaxoutNet(FeatureNet):
    """Dropout maxout network for MNIST (Goodfellow et al. 2013 "Maxout networks",
    permutation-invariant model; used by Goodfellow et al. 2015 with 240 units per layer).

    Architecture: flatten - dropout(``input_dropout``=0.2) - maxout(``units``=240,
    ``pieces``=5) - dropout(``dropout``=0.5) - maxout(240, 5) - dropout(0.5) - linear.
    Deviation: the max-norm constraint on the weight vectors is a training-time constraint and
    is not applied by this module (nor by advlab's training loop).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        *,
        units: int = 240,
        pieces: int = 5,
        input_dropout: float = 0.2,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(in_channels, num_classes, input_size)
        check_int("units", units, 1)
        p_in, p = check_prob("input_dropout", input_dropout), check_prob("dropout", dropout)
        self.features = nn.Sequential()
        self.head = nn.Sequential(
            nn.Dropout(p_in),
            Maxout(in_channels * input_size**2, units, pieces),
            nn.Dropout(p),
            Maxout(units, units, pieces),
            nn.Dropout(p),
            nn.Linear(units, num_classes),
        )


class ChannelMaxout(nn.Module):
    """Convolutional maxout over channel groups: ``(N, C * pieces, H, W)`` -> ``(N, C, H, W)``,
    each output channel the max of ``pieces`` consecutive input channels."""

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = check_int("pieces", pieces, 1)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        if c % self.pieces:
            raise ValueError(f"ChannelMaxout({self.pieces}) got {c} channels, not a multiple")
        return torch.unflatten(x, 1, (c // self.pieces, self.pieces)).amax(dim=2)  # any layout

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


class MaxoutConvNet(FeatureNet):
    """Convolutional dropout maxout network for MNIST, after the non-permutation-invariant model
    of Goodfellow et al. 2013 ("Maxout networks", 0.45% test error): three convolutional maxout
    layers, each followed by spatial max-pooling, then a linear softmax layer.

    Architecture (28x28 input): dropout(``input_dropout``=0.2) - conv 8x8 -> 48 maxout units x 2
    pieces - maxpool 4/2 (9x9) - dropout(``dropout``=0.5) - conv 8x8 pad 3 -> 48 x 2 - maxpool
    4/2 (3x3) - dropout - conv 5x5 pad 3 -> 24 x 4 - maxpool 2/2 (2x2) - dropout - linear.
    The layer sizes follow public ports of the paper's pylearn2 configuration and are not checked
    against it. Deviations: no max-norm constraint on the kernels, PyTorch's default
    initialization. Minimum input size 19.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        *,
        input_dropout: float = 0.2,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(in_channels, num_classes, input_size)
        p_in, p = check_prob("input_dropout", input_dropout), check_prob("dropout", dropout)
        self.features = nn.Sequential(
            nn.Dropout(p_in),
            nn.Conv2d(in_channels, 48 * 2, 8), ChannelMaxout(2), nn.MaxPool2d(4, 2),
            nn.Dropout(p),
            nn.Conv2d(48, 48 * 2, 8, padding=3), ChannelMaxout(2), nn.MaxPool2d(4, 2),
            nn.Dropout(p),
            nn.Conv2d(48, 24 * 4, 5, padding=3), ChannelMaxout(4), nn.MaxPool2d(2),
        )  # fmt: skip
        flat = flat_features("maxout-conv", self.features, 24, input_size)
        self.head = nn.Sequential(nn.Dropout(p), nn.Linear(flat, num_classes))


# ------------------------------------------------------------------------------ convolutional
class LeNet5(FeatureNet):
    """LeNet-5 style CNN (LeCun et al. 1998): conv6(5x5)-pool-conv16(5x5)-pool-fc120-fc84.

    Deviations from the paper: ReLU instead of scaled tanh, max-pooling instead of trainable
    sub-sampling, full connections between conv layers, and both convolutions zero-padded by 2
    ("same") so that 28x28 MNIST and 8x8 digits work (minimum input size 4). At 28x28 the
    flattened features are 16x7x7 rather than the paper's 16x5x5 (which came from 32x32 input).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__(in_channels, num_classes, input_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        flat = flat_features("lenet", self.features, 16, input_size)
        self.head = nn.Sequential(*_dense((flat, 120, 84)), nn.Linear(84, num_classes))


class MadryMNIST(FeatureNet):
    """MNIST CNN of Madry et al. 2018 ("Towards deep learning models resistant to adversarial
    attacks"): conv32(5x5)-pool-conv64(5x5)-pool-fc1024-fc, ReLU, 2x2 max-pooling, "same"
    padding as in the released TensorFlow model. 3,274,634 parameters at 1x28x28, 10 classes.
    Minimum input size 4. Initialization: PyTorch default (the release used truncated normal).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__(in_channels, num_classes, input_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        flat = flat_features("madry-mnist", self.features, 64, input_size)
        self.head = nn.Sequential(*_dense((flat, 1024)), nn.Linear(1024, num_classes))


class WongMNIST(FeatureNet):
    """MNIST CNN of Wong, Rice & Kolter 2020 ("Fast is better than free", their released MNIST
    network; also Wong & Kolter 2018's small convex-relaxation net): conv16(4x4, stride 2,
    padding 1)-conv32(4x4, stride 2, padding 1)-fc100-fc, ReLU, no pooling. 166,406 parameters
    at 1x28x28, 10 classes. Minimum input size 4. Initialization: PyTorch default (as theirs).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__(in_channels, num_classes, input_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        flat = flat_features("wong-mnist", self.features, 32, input_size)
        self.head = nn.Sequential(*_dense((flat, 100)), nn.Linear(100, num_classes))


class SmallCNN(FeatureNet):
    """Four-conv MNIST CNN: conv32-conv32-pool-conv64-conv64-pool-fc200-dropout-fc200-fc.

    3x3 "valid" convolutions, ReLU, 2x2 max-pooling, dropout (default 0.5) after the first fully
    connected layer. This is the MNIST network of Papernot et al. 2016 (defensive distillation)
    as released by Carlini & Wagner 2017, and the SmallCNN of TRADES (Zhang et al. 2019).
    Minimum input size 16 (28x28 gives 64x4x4 features). Initialization: PyTorch default
    (TRADES uses Kaiming-normal convolutions and a zero last layer).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        *,
        dropout: float = 0.5,
        arch: str = "small-cnn",
    ) -> None:
        super().__init__(in_channels, num_classes, input_size)
        p = check_prob("dropout", dropout)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3), nn.ReLU(),
            nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(),
            nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        flat = flat_features(arch, self.features, 64, input_size)
        self.head = nn.Sequential(
            *_dense((flat, 200), p), *_dense((200, 200)), nn.Linear(200, num_classes)
        )


class TramerA(FeatureNet):
    """Model A of Tramèr et al. 2018 ("Ensemble adversarial training"):
    conv64(5x5)-conv64(5x5)-dropout.25-fc128-dropout.5-fc, ReLU, "valid" convolutions.
    Minimum input size 9. Initialization: PyTorch default (the release used Keras defaults).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__(in_channels, num_classes, input_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 5), nn.ReLU(),
            nn.Conv2d(64, 64, 5), nn.ReLU(), nn.Dropout(0.25),
        )  # fmt: skip
        flat = flat_features("tramer-a", self.features, 64, input_size)
        self.head = nn.Sequential(*_dense((flat, 128), 0.5), nn.Linear(128, num_classes))


class TramerB(FeatureNet):
    """Model B of Tramèr et al. 2018: dropout.2-conv64(8x8, stride 2, "same")-conv128(6x6,
    stride 2)-conv128(5x5)-dropout.5-fc, ReLU.

    Deviation: TensorFlow "same" padding is emulated by a symmetric zero padding of 3, which is
    identical for even input sizes (28, 32) and one pixel smaller for odd ones. Minimum input
    size 28 (the two "valid" convolutions need a 14x14 map).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__(in_channels, num_classes, input_size)
        self.features = nn.Sequential(
            nn.Dropout(0.2),
            nn.Conv2d(in_channels, 64, 8, stride=2, padding=3), nn.ReLU(),
            nn.Conv2d(64, 128, 6, stride=2), nn.ReLU(),
            nn.Conv2d(128, 128, 5), nn.ReLU(), nn.Dropout(0.5),
        )  # fmt: skip
        flat = flat_features("tramer-b", self.features, 128, input_size)
        self.head = nn.Sequential(nn.Linear(flat, num_classes))


class TramerC(FeatureNet):
    """Model C of Tramèr et al. 2018: conv128(3x3)-conv64(3x3)-dropout.25-fc128-dropout.5-fc,
    ReLU, "valid" convolutions. Minimum input size 5."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> None:
        super().__init__(in_channels, num_classes, input_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 128, 3), nn.ReLU(),
            nn.Conv2d(128, 64, 3), nn.ReLU(), nn.Dropout(0.25),
        )  # fmt: skip
        flat = flat_features("tramer-c", self.features, 64, input_size)
        self.head = nn.Sequential(*_dense((flat, 128), 0.5), nn.Linear(128, num_classes))
