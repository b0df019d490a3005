"""Data layer: TensorData, data-folder resolution, IDX reader, MNIST loader, checksums,
download (never the real network) and the real MNIST copy."""

from __future__ import annotations

import gzip
import hashlib
import io
import stat
import struct
import urllib.error
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
import torch

import advlab.data as D
from advlab.data import download as dl
from advlab.data import mnist as mnist_mod
from advlab.data.paths import is_writable_dir

MNIST_NAMES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


# ----------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray) -> bytes:
    """Uncompressed IDX encoding of ``array`` (uint8, int32 or float32)."""
    codes = {np.dtype("uint8"): 0x08, np.dtype("int32"): 0x0C, np.dtype("float32"): 0x0D}
    header = struct.pack(">HBB", 0, codes[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_fake_mnist(folder: Path, n_train: int = 12, n_test: int = 5) -> dict[str, D.FileSpec]:
    """Write a tiny MNIST-format folder; return ``files=`` specs with the right MD5s."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    specs = {}
    for (role, array), name in zip(arrays.items(), MNIST_NAMES, strict=True):
        path = write_idx(folder / name, array)
        specs[role] = D.FileSpec(name, md5(path), path.stat().st_size)
    return specs


@pytest.fixture
def fake_mnist(tmp_path: Path) -> tuple[Path, dict[str, D.FileSpec]]:
    """(data root, specs) for a tiny MNIST folder at ``<root>/mnist``."""
    root = tmp_path / "data"
    return root, make_fake_mnist(root / "mnist")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every download attempt fails like an offline machine; returns the URLs tried."""
    tried: list[str] = []

    def offline(url: str, timeout: float) -> tuple[BinaryIO, int | None]:
        tried.append(url)
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(dl, "open_url", offline)
    return tried


@pytest.fixture
def read_only() -> Iterator[Callable[[Path], None]]:
    """Make folders read-only (no write bits: the rule advlab honours even for root)."""
    changed: list[tuple[Path, int]] = []

    def make(path: Path) -> None:
        changed.append((path, path.stat().st_mode))
        path.chmod(0o555)

    yield make
    for path, mode in reversed(changed):
        path.chmod(stat.S_IMODE(mode))


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


# ----------------------------------------------------------------------------- TensorData


def small_data(n: int = 6) -> D.TensorData:
    x = torch.linspace(0, 1, n * 2 * 3 * 3).reshape(n, 2, 3, 3)
    return D.TensorData(x=x, y=torch.arange(n) % 3, num_classes=3, name="toy")


def test_tensor_data_basics() -> None:
    data = small_data()
    assert len(data) == 6 and data.input_shape == (2, 3, 3)
    assert data.class_names == ("0", "1", "2")
    assert len(data.mean) == 2 and len(data.std) == 2 and all(s > 0 for s in data.std)
    assert data.subset(-1).y.tolist() == [2] and len(data.subset(slice(1, 4))) == 3
    assert data.subset([0, 5]).y.tolist() == [0, 2]
    assert data.subset(torch.tensor([True, False] * 3)).y.tolist() == [0, 2, 1]
    assert data.subset(slice(0, 2)).name == "toy" and data.subset(0).mean == data.mean
    assert data.to("cpu") is data
    assert "n=6" in repr(data)
    features = D.TensorData(x=torch.rand(4, 5), y=torch.zeros(4, dtype=torch.int64), num_classes=2)
    assert features.input_shape == (5,)


@pytest.mark.parametrize(
    ("change", "error", "pattern"),
    [
        ({"x": torch.rand(5, 1, 2, 2)}, ValueError, "disagree on N"),
        ({"x": torch.full((6, 1, 2, 2), float("inf"))}, ValueError, "finite"),
        ({"x": torch.full((6, 1, 2, 2), float("nan"))}, ValueError, "finite"),
        ({"x": torch.ones(6, 1, 2, 2, dtype=torch.uint8)}, ValueError, "float"),
        ({"x": torch.rand(6)}, ValueError, "float"),
        ({"y": torch.full((6,), 3)}, ValueError, "labels must be in"),
        ({"y": torch.zeros(6, dtype=torch.int32)}, ValueError, "int64"),
        ({"y": [0] * 6}, TypeError, "tensors"),
        ({"num_classes": 0}, ValueError, "num_classes"),
        ({"class_names": ("a", "b")}, ValueError, "class_names"),
        ({"mean": (0.1, 0.2, 0.3), "std": (1.0,)}, ValueError, "mean"),
        ({"std": (0.0,), "mean": (0.5,)}, ValueError, "std"),
    ],
)
def test_tensor_data_validation(change: dict[str, object], error: type, pattern: str) -> None:
    kwargs: dict[str, object] = {
        "x": torch.rand(6, 1, 2, 2),
        "y": torch.zeros(6, dtype=torch.int64),
        "num_classes": 3,
    }
    kwargs.update(change)
    with pytest.raises(error, match=pattern):
        D.TensorData(**kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- data folder


def test_resolve_data_dir_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ADVLAB_DATA", raising=False)
    assert D.resolve_data_dir() == tmp_path / "home" / ".cache" / "advlab"
    monkeypatch.setenv("ADVLAB_DATA", "")
    assert D.resolve_data_dir() == tmp_path / "home" / ".cache" / "advlab"
    monkeypatch.setenv("ADVLAB_DATA", str(tmp_path / "env"))
    assert D.resolve_data_dir() == tmp_path / "env"
    assert D.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert D.resolve_data_dir("~/x") == tmp_path / "home" / "x"
    assert not (tmp_path / "home").exists()  # resolution creates nothing


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", ["uint8", "int32", "float32"])
def test_read_idx_roundtrip(tmp_path: Path, compress: bool, dtype: str) -> None:
    array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype) % 200
    out = D.read_idx(write_idx(tmp_path / "a.idx", array, compress))
    assert out.dtype == np.dtype(dtype) and out.flags.writeable
    np.testing.assert_array_equal(out, array)


def test_read_idx_truncated_names_file(tmp_path: Path) -> None:
    raw = idx_bytes(np.zeros((3, 4, 4), np.uint8))
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(D.DataIntegrityError, match=r"short\.gz.*truncated"):
        D.read_idx(path)
    gz = gzip.compress(raw)
    path.write_bytes(gz[: len(gz) // 2])  # cut inside the gzip stream
    with pytest.raises(D.DataIntegrityError, match=r"short\.gz"):
        D.read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01" + raw[4:])  # unknown type code
    with pytest.raises(D.DataIntegrityError, match="not an IDX file"):
        D.read_idx(path)


# ----------------------------------------------------------------------------- MNIST format


def test_mnist_loader_on_small_files(fake_mnist: tuple[Path, dict[str, D.FileSpec]]) -> None:
    root, specs = fake_mnist
    train = D.load("mnist", data_dir=root, files=specs)
    test = D.load("mnist", "test", data_dir=root, files=specs, download=False)
    assert train.x.shape == (12, 1, 28, 28) and train.x.dtype == torch.float32
    assert test.x.shape == (5, 1, 28, 28) and test.y.tolist() == [4, 3, 2, 1, 0]
    raw = D.read_idx(root / "mnist" / MNIST_NAMES[0])
    torch.testing.assert_close(train.x[:, 0], torch.from_numpy(raw).float() / 255)
    assert train.mean == (0.1307,) and train.std == (0.3081,) and train.name == "mnist"


def test_fashion_mnist_via_patched_module_specs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = make_fake_mnist(tmp_path / "fashion-mnist", n_train=3, n_test=2)
    monkeypatch.setattr(mnist_mod, "FASHION_MNIST_FILES", specs)
    monkeypatch.setenv("ADVLAB_DATA", str(tmp_path))
    data = D.load("fashion-mnist", "test", download=False)
    assert len(data) == 2 and data.class_names[0] == "T-shirt/top"


def test_checksum_mismatch_names_file(fake_mnist: tuple[Path, dict[str, D.FileSpec]]) -> None:
    root, specs = fake_mnist
    path = root / "mnist" / MNIST_NAMES[1]
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # corrupt one byte
    path.write_bytes(bytes(raw))
    with pytest.raises(D.DataIntegrityError) as info:
        D.load("mnist", data_dir=root, files=specs, download=False)
    message = str(info.value)
    assert MNIST_NAMES[1] in message and specs["train_labels"].md5 in message
    assert hashlib.md5(bytes(raw)).hexdigest() in message


def test_verification_is_cached(
    fake_mnist: tuple[Path, dict[str, D.FileSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, specs = fake_mnist
    D.load("mnist", data_dir=root, files=specs)
    assert (root / "mnist" / dl.VERIFIED_CACHE).is_file()
    monkeypatch.setattr(dl, "_verified", {})  # forget the in-process cache: use the file

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(dl, "md5_file", no_hashing)
    D.load("mnist", data_dir=root, files=specs)
    # A changed file (new mtime) is hashed again, and found corrupt.
    monkeypatch.undo()
    path = root / "mnist" / MNIST_NAMES[0]
    raw = path.read_bytes()
    path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0xFF]))
    with pytest.raises(D.DataIntegrityError, match=MNIST_NAMES[0]):
        D.load("mnist", data_dir=root, files=specs)


def test_read_only_folder_is_never_written(
    fake_mnist: tuple[Path, dict[str, D.FileSpec]],
    read_only: Callable[[Path], None],
    no_network: list[str],
) -> None:
    root, specs = fake_mnist
    folder = root / "mnist"
    (folder / MNIST_NAMES[2]).unlink()
    before = listing(folder)
    read_only(folder)
    assert len(D.load("mnist", data_dir=root, files=specs)) == 12
    with pytest.raises(D.DatasetNotFoundError, match="read-only"):
        D.load("mnist", "test", data_dir=root, files=specs)
    assert listing(folder) == before and no_network == []


# ----------------------------------------------------------------------------- download


def test_offline_error_names_files_and_folder(tmp_path: Path, no_network: list[str]) -> None:
    with pytest.raises(D.DatasetNotFoundError) as info:
        D.load("mnist", "test", data_dir=tmp_path)
    message, folder = str(info.value), tmp_path / "mnist"
    for name in MNIST_NAMES[2:]:
        assert name in message
    assert str(folder) in message and "ADVLAB_DATA" in message and "--data-dir" in message
    assert isinstance(info.value, FileNotFoundError) and info.value.folder == folder
    assert len(no_network) == 2 and no_network[0].startswith("https://ossci-datasets")
    assert [p.name for p in folder.iterdir()] == []  # no partial files left behind


def test_download_false_does_not_touch_network(tmp_path: Path, no_network: list[str]) -> None:
    with pytest.raises(D.DatasetNotFoundError, match="download=False"):
        D.load("mnist", data_dir=tmp_path, download=False)
    assert no_network == []


class Flaky(io.BytesIO):
    """A response that fails after its first chunk, like a dropped connection."""

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() > 0:
            raise ConnectionResetError("connection reset")
        return super().read(4)


def serve(
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, bytes],
    bad_hosts: Collection[str],
    flaky_hosts: Collection[str] = (),
) -> list[str]:
    """Patch ``open_url`` to serve ``files`` by name; hosts in ``bad_hosts`` are unreachable."""
    tried: list[str] = []

    def fake_open(url: str, timeout: float) -> tuple[BinaryIO, int | None]:
        tried.append(url)
        host, name = url.split("/")[2], url.rsplit("/", 1)[1]
        if host in bad_hosts:
            raise urllib.error.URLError("unreachable")
        body = files[name]
        return (Flaky(body) if host in flaky_hosts else io.BytesIO(body)), len(body)

    monkeypatch.setattr(dl, "open_url", fake_open)
    return tried


def test_download_falls_back_and_writes_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    specs = make_fake_mnist(source)
    served = {name: (source / name).read_bytes() for name in MNIST_NAMES}
    mirrors = ["https://down.example/", "https://flaky.example/", "https://good.example/"]
    tried = serve(monkeypatch, served, {"down.example"}, {"flaky.example"})
    root = tmp_path / "data"
    data = D.load("mnist", data_dir=root, files=specs, mirrors=mirrors)
    assert len(data) == 12 and len(tried) == 6  # 3 mirrors per file
    folder = root / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*MNIST_NAMES[:2], ".verified.json"])
    assert md5(folder / MNIST_NAMES[0]) == specs["train_images"].md5


def test_download_with_wrong_checksum_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = make_fake_mnist(tmp_path / "source")
    served = {name: b"not the file" for name in MNIST_NAMES}
    serve(monkeypatch, served, ())
    with pytest.raises(D.DataIntegrityError, match="expected MD5"):
        D.load("mnist", data_dir=tmp_path / "data", files=specs, mirrors=["https://a.example/"])
    assert list((tmp_path / "data" / "mnist").iterdir()) == []


def test_file_spec_validation() -> None:
    with pytest.raises(ValueError, match="bare file name"):
        D.FileSpec("../x.gz", "0" * 32)
    with pytest.raises(ValueError, match="md5"):
        D.FileSpec("x.gz", "xyz")


# ----------------------------------------------------------------------------- real MNIST


def test_real_mnist(mnist_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = listing(mnist_root / "mnist")
    monkeypatch.setenv("ADVLAB_DATA", str(mnist_root))
    train, test = D.load("mnist", download=False), D.load("mnist", "test", download=False)
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test.y[:5].tolist() == [7, 2, 1, 0, 4]
    assert torch.bincount(train.y).min() > 5000 and float(train.x.max()) == 1.0
    assert abs(float(train.x.mean()) - 0.1307) < 1e-3
    if not is_writable_dir(mnist_root / "mnist"):  # e.g. the shared reference copy
        assert listing(mnist_root / "mnist") == before
