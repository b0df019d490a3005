"""Contract tests for the model zoo (advlab.models.zoo / nets / nets_resnet)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from advlab.models.classifier import Classifier
from advlab.models.nets import ChannelMaxout, Maxout, TramerB, spatial_size
from advlab.models.nets_resnet import WideResNet
from advlab.models.zoo import build, default_input_shape, describe, models

MNIST_PRESETS = [
    "softmax", "maxout", "maxout-conv", "mlp", "lenet", "madry-mnist", "papernot-mnist",
    "tramer-a", "tramer-b", "tramer-c", "tramer-d", "small-cnn", "wong-mnist",
]  # fmt: skip
CIFAR_PRESETS = ["preact-resnet18", "wide-resnet"]
# small arch kwargs keep the residual nets fast in tests
SMALL: dict[str, dict[str, Any]] = {
    "preact-resnet18": {"width": 4},
    "wide-resnet": {"depth": 10, "widen_factor": 1},
}
# minimum square input side of the presets that cannot take every size
MIN_SIZE = {
    "maxout-conv": 19,
    "papernot-mnist": 16,
    "small-cnn": 16,
    "tramer-a": 9,
    "tramer-b": 28,
    "tramer-c": 5,
}
# parameter counts at 1x28x28, 10 classes (Madry's matches the released TF model)
PARAMS = {
    "softmax": 7_850,
    "maxout": 1_233_610,
    "maxout-conv": 417_514,
    "mlp": 269_322,
    "lenet": 107_786,
    "madry-mnist": 3_274_634,
    "papernot-mnist": 312_202,
    "small-cnn": 312_202,
    "tramer-a": 3_382_346,
    "tramer-b": 710_218,
    "tramer-c": 4_795_082,
    "tramer-d": 509_410,
    "wong-mnist": 166_406,
}
NAMES = models.names()


def small_build(name: str, **kw: Any) -> Classifier:
    return build(name, **{**SMALL.get(name, {}), **kw})


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_all_presets_registered() -> None:
    assert set(MNIST_PRESETS + CIFAR_PRESETS) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_default_input_shape_and_describe(name: str) -> None:
    expected = (3, 32, 32) if name in CIFAR_PRESETS else (1, 28, 28)
    assert default_input_shape(name) == expected
    text = describe(name)
    assert text and "\n" not in text and len(text) <= 100


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_logits(name: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    clf = small_build(name, input_shape=(channels, size, size), num_classes=7).eval()
    assert isinstance(clf, Classifier)
    assert clf.input_shape == (channels, size, size) and clf.num_classes == 7
    x = torch.rand(3, channels, size, size)
    with torch.no_grad():
        out = clf(x)  # the Classifier refuses probability-like outputs on its first forward
        again = clf(x)
    assert out.shape == (3, 7) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert torch.equal(out, again)  # eval mode: dropout off, deterministic
    # logits, not probabilities: rows do not sum to 1 and not everything lies in [0, 1]
    assert not torch.allclose(out.sum(1), torch.ones(3), atol=1e-3)
    assert bool((out < 0).any() or (out > 1).any())


@pytest.mark.parametrize("size", [8, 15, 16, 29])
@pytest.mark.parametrize("name", NAMES)
def test_other_sizes_work_or_name_minimum(name: str, size: int) -> None:
    shape = (1, size, size)
    minimum = MIN_SIZE.get(name, 1)
    if size < minimum:
        with pytest.raises(ValueError, match=rf"{name} needs input_size >= {minimum}; got {size}"):
            small_build(name, input_shape=shape)
        return
    clf = small_build(name, input_shape=shape).eval()
    with torch.no_grad():
        assert clf(torch.rand(2, *shape)).shape == (2, 10)


def test_digits_8x8_presets() -> None:
    for name in ("softmax", "mlp", "lenet"):
        clf = build(name, input_shape=(1, 8, 8))
        assert clf(torch.rand(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_every_parameter(name: str) -> None:
    torch.manual_seed(1)
    clf = small_build(name).train()  # train mode: dropout and batch norm active
    x = torch.rand(4, *default_input_shape(name), requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    nn.functional.cross_entropy(clf(x), y).backward()
    for pname, p in clf.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
    assert x.grad is not None and x.grad.abs().sum() > 0  # attacks need input gradients


@pytest.mark.parametrize("name", NAMES)
def test_preset_args_rebuild_same_architecture(name: str) -> None:
    c, s, _ = default_input_shape(name)
    other = (4 - c, s + 4, s + 4)  # a non-default shape must round-trip too
    for kw in ({}, {"input_shape": other, "num_classes": 3}):
        clf = small_build(name, **kw, mean=0.5, std=0.25)
        assert clf.preset == name
        args = json.loads(json.dumps(clf.preset_args))  # JSON-serializable, as checkpoints do
        assert args == clf.preset_args
        assert not {"bounds", "mean", "std"} & set(args)
        assert args["input_shape"] == list(clf.input_shape or ())
        assert args["num_classes"] == clf.num_classes
        clone = build(name, **args)
        assert clone.preset_args == clf.preset_args
        mine = {k: v.shape for k, v in clf.net.state_dict().items()}
        theirs = {k: v.shape for k, v in clone.net.state_dict().items()}
        assert mine == theirs
        clone.net.load_state_dict(clf.net.state_dict())  # strict load works


def test_preset_args_include_resolved_defaults() -> None:
    assert build("mlp").preset_args == {
        "input_shape": [1, 28, 28], "num_classes": 10, "hidden": [256, 256], "dropout": 0.0,
    }  # fmt: skip
    wrn = build("wide-resnet", depth=10, widen_factor=1)
    assert wrn.preset_args == {
        "input_shape": [3, 32, 32], "num_classes": 10, "depth": 10, "widen_factor": 1,
        "dropout": 0.0,
    }  # fmt: skip


@pytest.mark.parametrize("name", MNIST_PRESETS)
def test_mnist_param_counts(name: str) -> None:
    assert n_params(build(name)) == PARAMS[name]


def test_resnet_param_counts_and_arch_kwargs() -> None:
    assert n_params(build("preact-resnet18", width=8)) < n_params(
        build("preact-resnet18", width=16)
    )
    # WRN-16-2 has about 0.7M parameters (Zagoruyko & Komodakis 2016, table 4 family)
    assert 650_000 < n_params(build("wide-resnet", depth=16, widen_factor=2)) < 720_000
    net = build("wide-resnet", depth=16, widen_factor=1, dropout=0.3).net
    assert isinstance(net, WideResNet)
    assert len(net.blocks) == 3 * 2  # (16 - 4) / 6 = 2 blocks per stage


def test_same_seed_same_weights() -> None:
    torch.manual_seed(123)
    a = build("lenet").state_dict()
    torch.manual_seed(123)
    b = build("lenet").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_maxout_takes_max_over_pieces() -> None:
    layer = Maxout(2, units=1, pieces=3)
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        layer.linear.bias.zero_()
    x = torch.tensor([[0.2, 0.7], [-3.0, 1.0], [-1.0, -2.0]])
    assert torch.allclose(layer(x), torch.tensor([[0.7], [2.0], [3.0]]))


def test_channel_maxout_takes_max_over_consecutive_channels() -> None:
    x = torch.tensor([1.0, 5.0, -2.0, -3.0, 0.5, 4.0]).view(1, 6, 1, 1).expand(2, 6, 3, 3)
    out = ChannelMaxout(3)(x)
    assert out.shape == (2, 2, 3, 3)
    assert torch.equal(out[:, :, 0, 0], torch.tensor([[5.0, 4.0], [5.0, 4.0]]))
    assert torch.equal(ChannelMaxout(3)(x.contiguous(memory_format=torch.channels_last)), out)
    with pytest.raises(ValueError, match="pieces"):
        ChannelMaxout(0)
    with pytest.raises(ValueError, match="not a multiple"):
        ChannelMaxout(4)(x)


def test_spatial_size_matches_real_forward() -> None:
    clf = build("tramer-b", input_shape=(1, 31, 31))
    assert isinstance(clf.net, TramerB)
    features = clf.net.features
    side = spatial_size(features, 31)
    assert features(torch.rand(1, 1, 31, 31)).shape[-1] == side


# ----------------------------------------------------------------------------- bad arguments
def test_unknown_name_lists_known() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet-9000'.*madry-mnist"):
        build("resnet-9000")
    with pytest.raises(ValueError, match=r"known:.*lenet"):
        describe("nope")
    with pytest.raises(TypeError, match="model name must be a string"):
        build(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("depth", [4, 27, 29, 30])
def test_wide_resnet_bad_depth(depth: int) -> None:
    with pytest.raises(ValueError, match="depth"):
        build("wide-resnet", depth=depth, widen_factor=1)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"input_shape": (1, 28, 32)}, ValueError, "square"),
        ({"input_shape": (28, 28)}, ValueError, "three ints"),
        ({"input_shape": (1, 0, 0)}, ValueError, ">= 1"),
        ({"input_shape": (1, 28.0, 28)}, ValueError, "three ints"),
        ({"input_shape": "1x28x28"}, TypeError, "input_shape"),
        ({"num_classes": 1}, ValueError, "num_classes must be an int >= 2; got 1"),
        ({"num_classes": 0}, ValueError, "num_classes"),
        ({"num_classes": True}, TypeError, "num_classes"),
        ({"num_classes": 2.5}, TypeError, "num_classes"),
        ({"in_channels": 3}, TypeError, "input_shape"),
        ({"depth": 10}, TypeError, "unknown argument.*depth.*hidden"),
        ({"hidden": 256}, TypeError, "hidden"),
        ({"hidden": [256, 0]}, ValueError, r"hidden\[1\]"),
        ({"dropout": 1.0}, ValueError, r"dropout must be in \[0, 1\)"),
        ({"dropout": object()}, TypeError, "JSON-serializable"),
    ],
)
def test_bad_arguments_raise_clear_errors(
    kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        build("mlp", **kwargs)


def test_bad_arch_kwargs_of_other_presets() -> None:
    with pytest.raises(TypeError, match="its arch kwargs are: none"):
        build("lenet", width=3)
    with pytest.raises(ValueError, match="width must be an int >= 1"):
        build("preact-resnet18", width=0)
    with pytest.raises(ValueError, match="pieces"):
        build("maxout", pieces=0)
    with pytest.raises(ValueError, match="widen_factor"):
        build("wide-resnet", depth=10, widen_factor=0)


def test_net_rejects_wrong_input_shape() -> None:
    net = build("madry-mnist").net
    with pytest.raises(ValueError, match=r"expects input \(N, 1, 28, 28\); got \(2, 1, 32, 32\)"):
        net(torch.rand(2, 1, 32, 32))
    res = build("preact-resnet18", width=4).net
    with pytest.raises(ValueError, match=r"expects input \(N, 3, H, W\)"):
        res(torch.rand(2, 1, 32, 32))
