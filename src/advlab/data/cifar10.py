"""CIFAR-10 loader: ``<data root>/cifar10/cifar-10-python.tar.gz`` -> ``TensorData``.

The archive is downloaded (if missing and allowed) and MD5-verified, then its seven batch files
are extracted safely (see :mod:`advlab.data.cifar`) to ``<root>/cifar10/cifar-10-batches-py/``
and each is MD5-verified. When that folder already holds the needed batches, the archive is not
needed at all. When the data folder is read-only, batches are decoded straight from the archive.

Output: ``x`` float32 ``(N, 3, 32, 32)`` = pixels / 255, ``y`` int64 ``(N,)``; 50,000 train
(``data_batch_1..5``) / 10,000 test (``test_batch``); class names from ``batches.meta``.
Checksums: archive MD5 from the dataset page, member MD5s as published with torchvision; tests
override them with ``archive=`` / ``members=`` (or by monkeypatching the module-level values).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from advlab.data.catalog import check_split, datasets
from advlab.data.cifar import ARCHIVE_DIR, decode_batch, decode_meta, iter_members
from advlab.data.download import DEFAULT_TIMEOUT_S, FileSpec, ensure_files, verify_file
from advlab.data.errors import DataIntegrityError
from advlab.data.paths import is_writable_dir, resolve_data_dir
from advlab.data.tensor_data import TensorData
from advlab.utils.files import atomic_write_bytes

CIFAR10_ARCHIVE = FileSpec("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
CIFAR10_MIRRORS: list[str] = ["https://www.cs.toronto.edu/~kriz/"]
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
META = "batches.meta"
# Member name -> MD5.
CIFAR10_MEMBERS: dict[str, str] = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    META: "5ff9c542aee3614f3951f8cda6e48888",
}
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _read_blobs(
    folder: Path,
    needed: Sequence[str],
    archive: FileSpec,
    members: Mapping[str, str],
    mirrors: Sequence[str],
    download: bool,
    timeout: float,
) -> dict[str, tuple[str, bytes]]:
    """``name -> (source, content)`` of the verified ``needed`` member files, extracting them
    first if necessary; ``source`` names the file (or archive member) for error messages."""
    batch_dir = folder / ARCHIVE_DIR
    specs = {name: FileSpec(name, members[name]) for name in members}
    if not all((batch_dir / name).is_file() for name in needed):
        (archive_path,) = ensure_files(
            folder, [archive], mirrors, dataset="cifar10", download=download, timeout=timeout
        )
        if not is_writable_dir(folder):
            blobs = {}
            for name, raw in iter_members(archive_path, needed):
                actual = hashlib.md5(raw, usedforsecurity=False).hexdigest()
                if actual != specs[name].md5:
                    raise DataIntegrityError(
                        f"{archive_path}: member {name}: expected MD5 {specs[name].md5}, "
                        f"got {actual}"
                    )
                blobs[name] = (f"{archive_path}:{ARCHIVE_DIR}/{name}", raw)
            return blobs
        for name, raw in iter_members(archive_path, list(members)):
            atomic_write_bytes(batch_dir / name, raw)
    for name in needed:
        verify_file(batch_dir / name, specs[name])
    return {name: (str(batch_dir / name), (batch_dir / name).read_bytes()) for name in needed}


@datasets.register("cifar10")
def cifar10(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    archive: FileSpec | None = None,
    members: Mapping[str, str] | None = None,
    mirrors: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> TensorData:
    """CIFAR-10, 10 classes, (N, 3, 32, 32); mean (0.4914, 0.4822, 0.4465),
    std (0.2470, 0.2435, 0.2616)."""
    check_split(split)
    members = CIFAR10_MEMBERS if members is None else members
    batches = TRAIN_BATCHES if split == "train" else TEST_BATCHES
    needed = [*batches, META]
    if unknown := [name for name in needed if name not in members]:
        raise ValueError(f"members must give an MD5 for {needed}; missing {unknown}")
    blobs = _read_blobs(
        resolve_data_dir(data_dir) / "cifar10",
        needed,
        CIFAR10_ARCHIVE if archive is None else archive,
        members,
        CIFAR10_MIRRORS if mirrors is None else mirrors,
        download,
        timeout,
    )
    decoded = [decode_batch(blobs[name][1], blobs[name][0]) for name in batches]
    class_names = decode_meta(blobs[META][1], blobs[META][0])
    if len(class_names) != 10:
        raise DataIntegrityError(f"{blobs[META][0]}: expected 10 class names; got {class_names}")
    for name, (_, y) in zip(batches, decoded, strict=True):
        if y.size and not 0 <= y.min() <= y.max() < 10:
            raise DataIntegrityError(f"{blobs[name][0]}: labels must be in [0, 10)")
    labels = np.concatenate([y for _, y in decoded])
    x = torch.from_numpy(np.concatenate([im for im, _ in decoded])).to(torch.float32).div_(255.0)
    return TensorData(
        x=x,
        y=torch.from_numpy(labels),
        num_classes=10,
        name="cifar10",
        class_names=class_names,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
    )
