"""The model zoo: named architecture presets and :func:`build`, which wraps one in a Classifier.

``models`` maps a preset name to a factory ``f(*, in_channels, num_classes, input_size,
**arch_kwargs) -> nn.Module`` that returns a logits network for inputs
``(N, in_channels, input_size, input_size)``. A factory's defaults for ``in_channels`` and
``input_size`` are the preset's natural input (MNIST presets 1x28x28, CIFAR presets 3x32x32).
:func:`build` resolves every argument, builds the network, wraps it in a
:class:`~advlab.models.classifier.Classifier` and records ``preset``/``preset_args`` so that
``build(clf.preset, **clf.preset_args)`` rebuilds the same architecture (checkpoints rely on it).

The architectures, their papers and their deviations are documented in
:mod:`advlab.models.nets` and :mod:`advlab.models.nets_resnet`.
"""

from __future__ import annotations

import inspect
import json
import operator
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from advlab.models.classifier import Classifier
from advlab.models.nets import (
    MLP,
    LeNet5,
    MadryMNIST,
    MaxoutConvNet,
    MaxoutNet,
    SmallCNN,
    SoftmaxRegression,
    TramerA,
    TramerB,
    TramerC,
    WongMNIST,
    check_int,
)
from advlab.models.nets_resnet import PreActResNet18, WideResNet
from advlab.registry import Registry
from advlab.types import BoundsLike

__all__ = ["build", "default_input_shape", "describe", "models"]

models: Registry[nn.Module] = Registry("model")
"""Preset name -> network factory (see the module docstring for the factory contract)."""

_COMMON = ("in_channels", "num_classes", "input_size")
_FALLBACK = {"in_channels": 1, "num_classes": 10, "input_size": 28}


# ------------------------------------------------------------------------------------ presets
@models.register("softmax")
def _softmax(*, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """Shallow softmax regression, flatten + one linear layer (Goodfellow et al. 2015)."""
    return SoftmaxRegression(in_channels, num_classes, input_size)


@models.register("maxout")
def _maxout(
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: int = 28,
    units: int = 240,
    pieces: int = 5,
    input_dropout: float = 0.2,
    dropout: float = 0.5,
) -> nn.Module:
    """Dropout maxout MLP, 2 x 240 units x 5 pieces (Goodfellow et al. 2013/2015); no max-norm.

    Arch kwargs: ``units``, ``pieces``, ``input_dropout``, ``dropout``.
    """
    return MaxoutNet(
        in_channels,
        num_classes,
        input_size,
        units=units,
        pieces=pieces,
        input_dropout=input_dropout,
        dropout=dropout,
    )


@models.register("maxout-conv")
def _maxout_conv(
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: int = 28,
    input_dropout: float = 0.2,
    dropout: float = 0.5,
) -> nn.Module:
    """Convolutional dropout maxout net, 3 conv maxout layers + pooling (Goodfellow et al. 2013).

    Arch kwargs: ``input_dropout``, ``dropout``.
    """
    return MaxoutConvNet(
        in_channels, num_classes, input_size, input_dropout=input_dropout, dropout=dropout
    )


@models.register("mlp")
def _mlp(
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: int = 28,
    hidden: Sequence[int] = (256, 256),
    dropout: float = 0.0,
) -> nn.Module:
    """ReLU multilayer perceptron, hidden sizes (256, 256) by default.

    Arch kwargs: ``hidden`` (list of widths), ``dropout`` (after each hidden layer).
    """
    return MLP(in_channels, num_classes, input_size, hidden=hidden, dropout=dropout)


@models.register("lenet")
def _lenet(*, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """LeNet-5 style CNN conv6-pool-conv16-pool-fc120-fc84, ReLU, padded (LeCun et al. 1998)."""
    return LeNet5(in_channels, num_classes, input_size)


@models.register("madry-mnist")
def _madry_mnist(*, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """MNIST CNN conv32(5x5)-pool-conv64(5x5)-pool-fc1024 (Madry et al. 2018)."""
    return MadryMNIST(in_channels, num_classes, input_size)


@models.register("wong-mnist")
def _wong_mnist(*, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """MNIST CNN conv16(4x4,s2)-conv32(4x4,s2)-fc100 (Wong, Rice & Kolter 2020, fast AT)."""
    return WongMNIST(in_channels, num_classes, input_size)


@models.register("papernot-mnist")
def _papernot_mnist(
    *, in_channels: int = 1, num_classes: int = 10, input_size: int = 28, dropout: float = 0.5
) -> nn.Module:
    """MNIST CNN conv32-conv32-pool-conv64-conv64-pool-fc200-fc200 (Papernot 2016; C&W 2017)."""
    return SmallCNN(in_channels, num_classes, input_size, dropout=dropout, arch="papernot-mnist")


@models.register("small-cnn")
def _small_cnn(
    *, in_channels: int = 1, num_classes: int = 10, input_size: int = 28, dropout: float = 0.5
) -> nn.Module:
    """TRADES SmallCNN conv32-conv32-pool-conv64-conv64-pool-fc200-fc200 (Zhang et al. 2019)."""
    return SmallCNN(in_channels, num_classes, input_size, dropout=dropout, arch="small-cnn")


@models.register("tramer-a")
def _tramer_a(*, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """Model A conv64(5x5)-conv64(5x5)-fc128 with dropout (Tramèr et al. 2018)."""
    return TramerA(in_channels, num_classes, input_size)


@models.register("tramer-b")
def _tramer_b(*, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """Model B dropout-conv64(8x8,s2)-conv128(6x6,s2)-conv128(5x5) (Tramèr et al. 2018)."""
    return TramerB(in_channels, num_classes, input_size)


@models.register("tramer-c")
def _tramer_c(*, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """Model C conv128(3x3)-conv64(3x3)-fc128 with dropout (Tramèr et al. 2018)."""
    return TramerC(in_channels, num_classes, input_size)


@models.register("tramer-d")
def _tramer_d(*, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """Model D, 4 x [fc300-relu-dropout.5] MLP (Tramèr et al. 2018)."""
    return MLP(in_channels, num_classes, input_size, hidden=(300,) * 4, dropout=0.5)


@models.register("preact-resnet18")
def _preact_resnet18(
    *, in_channels: int = 3, num_classes: int = 10, input_size: int = 32, width: int = 64
) -> nn.Module:
    """Pre-activation ResNet-18 for 32x32 colour images (He et al. 2016).

    Arch kwargs: ``width`` (channels of the first stage, default 64).
    """
    return PreActResNet18(in_channels, num_classes, input_size, width=width)


@models.register("wide-resnet")
def _wide_resnet(
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    depth: int = 28,
    widen_factor: int = 10,
    dropout: float = 0.0,
) -> nn.Module:
    """Wide ResNet WRN-depth-k, default WRN-28-10 (Zagoruyko & Komodakis 2016).

    Arch kwargs: ``depth`` (6n + 4), ``widen_factor``, ``dropout``.
    """
    return WideResNet(
        in_channels,
        num_classes,
        input_size,
        depth=depth,
        widen_factor=widen_factor,
        dropout=dropout,
    )


# -------------------------------------------------------------------------------------- build
def _parameters(factory: Callable[..., nn.Module]) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(factory).parameters)


def _default(params: dict[str, inspect.Parameter], key: str) -> int:
    p = params.get(key)
    if p is None or p.default is inspect.Parameter.empty:
        return _FALLBACK[key]
    return int(p.default)


def default_input_shape(name: str) -> tuple[int, int, int]:
    """The natural input shape ``(C, H, W)`` of preset ``name`` (e.g. ``(1, 28, 28)``)."""
    params = _parameters(models.get(name))
    size = _default(params, "input_size")
    return (_default(params, "in_channels"), size, size)


def _input_shape(name: str, input_shape: object) -> tuple[int, int, int]:
    if input_shape is None:
        return default_input_shape(name)
    if isinstance(input_shape, str | bytes) or not isinstance(input_shape, Sequence):
        raise TypeError(f"input_shape must be (channels, height, width); got {input_shape!r}")
    try:
        dims = tuple(operator.index(d) for d in input_shape if not isinstance(d, bool))
    except TypeError:
        dims = ()
    if len(dims) != 3 or len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be three ints (channels, height, width); got {input_shape!r}"
        )
    c, h, w = dims
    if min(dims) < 1:
        raise ValueError(f"input_shape entries must be >= 1; got {dims}")
    if h != w:
        raise ValueError(
            f"zoo presets need square inputs (height == width); got input_shape {dims}"
        )
    return (c, h, w)


def _arch_kwargs(
    name: str, params: dict[str, inspect.Parameter], given: dict[str, Any]
) -> dict[str, Any]:
    """Every architecture kwarg of the factory with its default, updated by ``given``."""
    for key in _COMMON:
        if key in given:
            hint = "input_shape=(C, H, W)" if key != "num_classes" else "num_classes="
            raise TypeError(f"pass {key} to build() through {hint}, not as an arch kwarg")
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    known = {
        k: p.default
        for k, p in params.items()
        if k not in _COMMON
        and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    unknown = sorted(set(given) - set(known))
    if unknown and not open_ended:
        accepted = ", ".join(sorted(known)) or "none"
        raise TypeError(
            f"model {name!r} got unknown argument(s) {', '.join(unknown)}; "
            f"its arch kwargs are: {accepted}"
        )
    resolved = {k: v for k, v in known.items() if v is not inspect.Parameter.empty}
    resolved.update(given)
    return resolved


def _jsonable(value: Any) -> Any:
    """Tuples -> lists (recursively), so preset_args survive a JSON round trip unchanged."""
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def build(
    name: str,
    *,
    input_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    bounds: BoundsLike = (0.0, 1.0),
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
    **arch_kwargs: Any,
) -> Classifier:
    """Build zoo preset ``name`` as a :class:`Classifier` (logits, inputs in ``bounds``).

    Args:
        name: a registered preset (``advlab.models.models.names()``).
        input_shape: ``(C, H, W)`` with ``H == W``; default the preset's natural shape
            (MNIST presets ``(1, 28, 28)``, CIFAR presets ``(3, 32, 32)``).
        num_classes: number of classes (>= 2); default 10.
        bounds, mean, std: passed to the Classifier (normalization lives there).
        **arch_kwargs: architecture arguments of the preset (e.g. ``depth=16`` for wide-resnet).

    The returned classifier has ``preset = name`` and ``preset_args`` = the fully resolved,
    JSON-serializable arguments (``input_shape`` as a list, ``num_classes``, every arch kwarg
    including defaults), so ``build(clf.preset, **clf.preset_args)`` rebuilds the same network.
    Raises ``ValueError`` for an unknown name (listing the known ones), a non-square or
    malformed input shape, ``num_classes < 2`` or an input too small for the architecture, and
    ``TypeError`` for unknown or mistyped arguments.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string; got {name!r}")
    factory = models.get(name)
    params = _parameters(factory)
    c, size, _ = _input_shape(name, input_shape)
    k = _default(params, "num_classes") if num_classes is None else num_classes
    check_int("num_classes", k, 2)
    arch = _arch_kwargs(name, params, arch_kwargs)
    preset_args = {"input_shape": [c, size, size], "num_classes": k, **_jsonable(arch)}
    try:
        json.dumps(preset_args)
    except (TypeError, ValueError) as e:
        raise TypeError(f"arguments of model {name!r} must be JSON-serializable: {e}") from None
    net = factory(in_channels=c, num_classes=k, input_size=size, **arch)
    clf = Classifier(
        net, bounds=bounds, mean=mean, std=std, num_classes=k, input_shape=(c, size, size)
    )
    clf.preset = name
    clf.preset_args = preset_args
    return clf


def describe(name: str) -> str:
    """One-line description of preset ``name`` (the first line of its factory's docstring)."""
    doc = inspect.getdoc(models.get(name)) or ""
    return next((line.strip() for line in doc.splitlines() if line.strip()), name)
