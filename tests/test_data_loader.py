"""TensorLoader, train_val_split, the offline datasets (digits, synthetic) and the registry."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import advlab.data as D
from advlab.data import digits as digits_mod


def toy(n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, 2) whose first column is the sample index, y = index (as labels)."""
    x = torch.stack([torch.arange(n, dtype=torch.float32), torch.zeros(n)], dim=1)
    return x, torch.arange(n)


def seen(loader: D.TensorLoader) -> list[int]:
    batches = list(loader)
    for xb, yb in batches:
        assert torch.equal(xb[:, 0].long(), yb)  # x and y stay paired
    return [int(v) for _, yb in batches for v in yb]


# ----------------------------------------------------------------------------- TensorLoader


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_sample_once_per_epoch(shuffle: bool) -> None:
    loader = D.TensorLoader(toy(10), 3, shuffle=shuffle, seed=4)
    assert len(loader) == 4
    order = seen(loader)
    assert sorted(order) == list(range(10))
    assert [len(yb) for _, yb in loader] == [3, 3, 3, 1]
    assert (order == list(range(10))) is not shuffle
    dropped = D.TensorLoader(toy(10), 3, shuffle=shuffle, drop_last=True)
    assert len(dropped) == 3 and len(seen(dropped)) == 9


def test_shuffle_is_a_function_of_seed_and_epoch() -> None:
    before = torch.random.get_rng_state()
    a = D.TensorLoader(toy(50), 8, shuffle=True, seed=1)
    b = D.TensorLoader(toy(50), 8, shuffle=True, seed=1)
    first = seen(a)
    assert seen(a) == first == seen(b)  # no implicit epoch advance; same seed, same order
    a.set_epoch(3)
    third = seen(a)
    assert third != first
    resumed = D.TensorLoader(toy(50), 8, shuffle=True, seed=1)
    resumed.set_epoch(3)
    assert seen(resumed) == third  # a resumed run sees the same batches
    assert seen(D.TensorLoader(toy(50), 8, shuffle=True, seed=2)) != first
    assert torch.equal(torch.random.get_rng_state(), before)  # global RNG untouched


@pytest.mark.parametrize(
    ("n", "world", "drop_last"), [(10, 3, False), (10, 3, True), (2, 4, False)]
)
def test_rank_shards(n: int, world: int, drop_last: bool) -> None:
    shards = []
    for rank in range(world):
        loader = D.TensorLoader(
            toy(n), 2, shuffle=True, seed=7, rank=rank, world_size=world, drop_last=drop_last
        )
        loader.set_epoch(5)
        shards.append(loader.indices().tolist())
    size = n // world if drop_last else math.ceil(n / world)
    assert all(len(s) == size for s in shards)
    flat = [i for s in shards for i in s]
    if drop_last:
        assert len(set(flat)) == len(flat)  # disjoint
    else:
        assert set(flat) == set(range(n))  # padded: everything covered
        assert len(flat) - len(set(flat)) == world * size - n  # only the padding repeats


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 40),
    batch=st.integers(1, 9),
    world=st.integers(1, 4),
    drop_last=st.booleans(),
    shuffle=st.booleans(),
)
def test_loader_lengths(n: int, batch: int, world: int, drop_last: bool, shuffle: bool) -> None:
    for rank in range(world):
        loader = D.TensorLoader(
            toy(n), batch, shuffle=shuffle, drop_last=drop_last, rank=rank, world_size=world
        )
        sizes = [len(yb) for _, yb in loader]
        assert len(sizes) == len(loader)
        assert all(s == batch for s in sizes[:-1])
        assert sum(sizes) <= loader.num_samples


def test_device_move_happens_once() -> None:
    data = D.load("synthetic", n=12)
    loader = D.TensorLoader(data, 5, shuffle=True, device="meta")
    assert loader.x.device.type == "meta" and loader.device.type == "meta"
    assert all(xb.device.type == "meta" and yb.device.type == "meta" for xb, yb in loader)
    assert data.x.device.type == "cpu"  # the source is not modified
    plain = D.TensorLoader(data, 5)
    xb, _ = next(iter(plain))
    assert xb.data_ptr() == data.x.data_ptr()  # same device: no copy


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_move_cuda() -> None:
    loader = D.TensorLoader(D.load("synthetic", n=12), 5, shuffle=True, device="cuda")
    assert all(xb.is_cuda and yb.is_cuda for xb, yb in loader)
    assert D.load("synthetic", n=4).to("cuda").x.is_cuda


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"batch_size": 0}, ValueError),
        ({"batch_size": 2.0}, TypeError),
        ({"batch_size": 2, "rank": 2, "world_size": 2}, ValueError),
        ({"batch_size": 2, "world_size": 0}, ValueError),
        ({"batch_size": 2, "seed": -1}, ValueError),
        ({"batch_size": 2, "shuffle": 1}, TypeError),
    ],
)
def test_loader_validation(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        D.TensorLoader(toy(), **kwargs)  # type: ignore[arg-type]


def test_loader_rejects_bad_data() -> None:
    with pytest.raises(TypeError, match="TensorData or an"):
        D.TensorLoader([1, 2], 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="first dimension"):
        D.TensorLoader((torch.zeros(3, 2), torch.zeros(4)), 2)
    with pytest.raises(ValueError, match="epoch"):
        D.TensorLoader(toy(), 2).set_epoch(-1)


# ----------------------------------------------------------------------------- splits


def test_train_val_split() -> None:
    data = D.load("synthetic", n=100)
    train, val = D.train_val_split(data, 0.2, seed=3)
    assert len(train) == 80 and len(val) == 20 and val.name == data.name
    rows = {tuple(r.tolist()) for r in train.x.flatten(1)}
    assert not rows & {tuple(r.tolist()) for r in val.x.flatten(1)}
    again, _ = D.train_val_split(data, 0.2, seed=3)
    assert torch.equal(again.x, train.x)
    other, _ = D.train_val_split(data, 0.2, seed=4)
    assert not torch.equal(other.x, train.x)
    for bad in (0.0, 1.0, -0.1, 0.001):
        with pytest.raises(ValueError, match="val_fraction"):
            D.train_val_split(data, bad)
    with pytest.raises(TypeError):
        D.train_val_split(data, "0.1")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- datasets


def test_digits_split() -> None:
    train, test = D.load("digits"), D.load("digits", "test")
    assert train.x.shape == (1438, 1, 8, 8) and test.x.shape == (359, 1, 8, 8)
    assert train.x.dtype == torch.float32 and float(train.x.max()) == 1.0
    _, labels, train_idx, test_idx = digits_mod._digits_split()
    assert not set(train_idx.tolist()) & set(test_idx.tolist())
    assert len(train_idx) + len(test_idx) == len(labels) == 1797
    counts = torch.bincount(test.y, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37  # stratified 20%
    assert torch.equal(D.load("digits", "test").x, test.x)  # deterministic
    full = torch.cat([train.x, test.x])
    assert abs(float(full.mean()) - train.mean[0]) < 1e-3
    assert abs(float(full.std()) - train.std[0]) < 1e-3


def test_synthetic_determinism_and_learnability() -> None:
    before = torch.random.get_rng_state()
    train = D.load("synthetic", n=300, seed=5)
    test = D.load("synthetic", "test", n=300, seed=5)
    assert torch.equal(train.x, D.load("synthetic", n=300, seed=5).x)
    assert not torch.equal(train.x, test.x)
    assert not torch.equal(train.x, D.load("synthetic", n=300, seed=6).x)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.bincount(train.y).tolist() == [100, 100, 100]
    assert float(train.x.min()) >= 0 and float(train.x.max()) <= 1
    centroids = torch.stack([train.x[train.y == k].mean(0) for k in range(3)]).flatten(1)
    predicted = torch.cdist(test.x.flatten(1), centroids).argmin(1)
    assert float((predicted == test.y).float().mean()) > 0.95
    features = D.load("synthetic", n=10, input_shape=(7,), num_classes=4)
    assert features.x.shape == (10, 7) and features.num_classes == 4


@pytest.mark.parametrize(
    "kwargs",
    [{"n": 0}, {"num_classes": 1}, {"noise": -1.0}, {"input_shape": (0, 2)}, {"seed": -3}],
)
def test_synthetic_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        D.load("synthetic", **kwargs)


def test_registry() -> None:
    assert {"mnist", "fashion-mnist", "cifar10", "digits", "synthetic"} <= set(D.datasets.names())
    with pytest.raises(ValueError, match=r"known: .*mnist"):
        D.load("imagenet")
    with pytest.raises(ValueError, match="train, test"):
        D.load("digits", "validation")
