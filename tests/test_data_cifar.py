"""CIFAR-10 reader on small files written here in the canonical format (protocol-2 pickles
with bytes keys, inside ``cifar-10-python.tar.gz``), safe extraction, restricted unpickling."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import advlab.data as D
from advlab.data import cifar, cifar10

CLASSES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
           b"ship", b"truck"]  # fmt: skip
PER_BATCH = 4


def batch_bytes(index: int) -> bytes:
    rng = np.random.default_rng(index)
    return pickle.dumps(
        {
            b"batch_label": f"batch {index}".encode(),
            b"labels": [(index + i) % 10 for i in range(PER_BATCH)],
            b"data": rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(PER_BATCH)],
        },
        protocol=2,
    )


def member_files() -> dict[str, bytes]:
    files = {name: batch_bytes(i) for i, name in enumerate(cifar10.TRAIN_BATCHES)}
    files["test_batch"] = batch_bytes(99)
    meta = {b"label_names": CLASSES, b"num_cases_per_batch": PER_BATCH, b"num_vis": 3072}
    files["batches.meta"] = pickle.dumps(meta, protocol=2)
    return files


def add(tar: tarfile.TarFile, name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data) if kind == tarfile.REGTYPE else 0
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def write_archive(path: Path, files: dict[str, bytes], extra: bool = True) -> D.FileSpec:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        if extra:  # decoys that must never be extracted
            add(tar, "cifar-10-batches-py/readme.html", b"<html></html>")
            add(tar, "../escape.txt", b"evil")
            add(tar, "cifar-10-batches-py/../../escape2.txt", b"evil")
        for name, data in files.items():
            add(tar, f"cifar-10-batches-py/{name}", data)
    return D.FileSpec(path.name, hashlib.md5(path.read_bytes()).hexdigest())


def md5s(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.md5(data).hexdigest() for name, data in files.items()}


@pytest.fixture
def cifar_root(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """(data root, loader overrides) with a small archive at ``<root>/cifar10``."""
    files = member_files()
    root = tmp_path / "data"
    spec = write_archive(root / "cifar10" / "cifar-10-python.tar.gz", files)
    return root, {"archive": spec, "members": md5s(files), "download": False}


def test_cifar10_from_archive(cifar_root: tuple[Path, dict[str, Any]]) -> None:
    root, kw = cifar_root
    train = D.load("cifar10", data_dir=root, **kw)
    test = D.load("cifar10", "test", data_dir=root, **kw)
    assert train.x.shape == (5 * PER_BATCH, 3, 32, 32) and test.x.shape == (PER_BATCH, 3, 32, 32)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert train.class_names[:2] == ("airplane", "automobile") and train.num_classes == 10
    assert train.mean == (0.4914, 0.4822, 0.4465) and train.std == (0.2470, 0.2435, 0.2616)
    raw = pickle.loads(batch_bytes(0), encoding="bytes")
    # Channel layout: row = R(1024) G(1024) B(1024); pixel (c, r, col) = row[c*1024 + r*32 + col].
    assert float(train.x[1, 2, 3, 4]) == pytest.approx(raw[b"data"][1, 2 * 1024 + 3 * 32 + 4] / 255)
    assert train.y[:PER_BATCH].tolist() == raw[b"labels"]
    extracted = root / "cifar10" / "cifar-10-batches-py"
    assert sorted(p.name for p in extracted.iterdir() if not p.name.startswith(".")) == sorted(
        member_files()
    )
    assert not list(root.rglob("escape*")) and not (root.parent / "escape.txt").exists()
    assert not (extracted / "readme.html").exists()


def test_extracted_batches_are_reused(
    cifar_root: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, kw = cifar_root
    D.load("cifar10", "test", data_dir=root, **kw)
    (root / "cifar10" / "cifar-10-python.tar.gz").unlink()

    def no_archive(*args: object) -> None:
        raise AssertionError("archive read again")

    monkeypatch.setattr(cifar10, "iter_members", no_archive)
    assert len(D.load("cifar10", data_dir=root, **kw)) == 5 * PER_BATCH


def test_corrupt_extracted_batch(cifar_root: tuple[Path, dict[str, Any]]) -> None:
    root, kw = cifar_root
    D.load("cifar10", "test", data_dir=root, **kw)
    path = root / "cifar10" / "cifar-10-batches-py" / "test_batch"
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(D.DataIntegrityError, match="test_batch"):
        D.load("cifar10", "test", data_dir=root, **kw)


def test_read_only_folder_decodes_in_memory(cifar_root: tuple[Path, dict[str, Any]]) -> None:
    root, kw = cifar_root
    folder = root / "cifar10"
    folder.chmod(0o555)
    try:
        assert len(D.load("cifar10", "test", data_dir=root, **kw)) == PER_BATCH
        assert [p.name for p in folder.iterdir()] == ["cifar-10-python.tar.gz"]
    finally:
        folder.chmod(stat.S_IRWXU)


def test_missing_archive_message(tmp_path: Path) -> None:
    with pytest.raises(D.DatasetNotFoundError) as info:
        D.load("cifar10", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and str(tmp_path / "cifar10") in message
    assert "www.cs.toronto.edu" in message


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    files = member_files()
    archive = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        add(tar, "cifar-10-batches-py/test_batch", b"", tarfile.SYMTYPE)
        add(tar, "cifar-10-batches-py/batches.meta", files["batches.meta"])
    spec = D.FileSpec(archive.name, hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(D.DataIntegrityError, match="not a regular file"):
        D.load("cifar10", "test", data_dir=tmp_path, archive=spec, members=md5s(files))


def test_truncated_archive(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    write_archive(archive, member_files())
    archive.write_bytes(archive.read_bytes()[:2000])
    with pytest.raises(D.DataIntegrityError, match=r"a\.tar\.gz"):
        list(cifar.iter_members(archive, ["test_batch"]))


class Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": Evil(marker)}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing .*system"):
        cifar.restricted_loads(payload)
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.eval"):
        cifar.restricted_loads(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(D.DataIntegrityError, match="batch_x"):
        cifar.decode_batch(payload, "batch_x")
    assert not marker.exists()


def test_restricted_unpickler_reads_numpy() -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = cifar.restricted_loads(pickle.dumps({b"a": array, b"s": np.int64(3)}, protocol=2))
    np.testing.assert_array_equal(out[b"a"], array)
    assert out[b"s"] == 3
