"""MNIST and Fashion-MNIST from their canonical gzip IDX files (no torchvision).

Files live in ``<data root>/mnist/`` and ``<data root>/fashion-mnist/`` (see
:func:`advlab.data.paths.resolve_data_dir`). Output: ``x`` float32 ``(N, 1, 28, 28)`` = pixels /
255, ``y`` int64 ``(N,)``; 60,000 train / 10,000 test samples each.

Sources: LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 1998; Xiao, Rasul, Vollgraf, "Fashion-MNIST", arXiv:1708.07747, 2017.
MD5s are the canonical ones (``../shared/data/README.md``). Tests and mirrors of modified copies
override them with ``files=`` (a mapping like :data:`MNIST_FILES`) or by monkeypatching these
module-level dicts; ``mirrors=`` overrides the download locations.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from advlab.data.catalog import check_split, datasets
from advlab.data.download import DEFAULT_TIMEOUT_S, FileSpec, ensure_files
from advlab.data.errors import DataIntegrityError
from advlab.data.idx import read_idx
from advlab.data.paths import resolve_data_dir
from advlab.data.tensor_data import TensorData

# Role -> file; roles are "<split>_images" and "<split>_labels".
MNIST_FILES: dict[str, FileSpec] = {
    "train_images": FileSpec(
        "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422
    ),
    "train_labels": FileSpec(
        "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28881
    ),
    "test_images": FileSpec(
        "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1648877
    ),
    "test_labels": FileSpec("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4542),
}
MNIST_MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]
FASHION_MNIST_FILES: dict[str, FileSpec] = {
    "train_images": FileSpec("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "train_labels": FileSpec("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    "test_images": FileSpec("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    "test_labels": FileSpec("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
}
FASHION_MNIST_MIRRORS: list[str] = ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def read_idx_pair(
    images_path: Path,
    labels_path: Path,
    num_classes: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode an images/labels IDX pair into ``x`` float32 (N, 1, H, W) in [0, 1] and ``y``
    int64 (N,); inconsistent files raise :class:`DataIntegrityError` naming them."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != "uint8":
        raise DataIntegrityError(
            f"{images_path}: expected uint8 images (N, H, W); got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != "uint8":
        raise DataIntegrityError(
            f"{labels_path}: expected uint8 labels (N,); got {labels.dtype} {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DataIntegrityError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) >= num_classes:
        raise DataIntegrityError(f"{labels_path}: label {int(labels.max())} >= {num_classes}")
    x = torch.from_numpy(images).unsqueeze(1).to(torch.float32).div_(255.0)  # (N, 1, H, W)
    y = torch.from_numpy(labels).to(torch.int64)  # (N,)
    return x, y


def _load_idx_dataset(
    name: str,
    split: str,
    data_dir: str | os.PathLike[str] | None,
    download: bool,
    files: Mapping[str, FileSpec],
    mirrors: Sequence[str],
    timeout: float,
    class_names: tuple[str, ...],
    mean: float,
    std: float,
) -> TensorData:
    check_split(split)
    folder = resolve_data_dir(data_dir) / name
    try:
        specs = [files[f"{split}_images"], files[f"{split}_labels"]]
    except KeyError as exc:
        raise ValueError(
            f"files must map {split}_images and {split}_labels to FileSpecs; "
            f"got keys {sorted(files)}"
        ) from exc
    images_path, labels_path = ensure_files(
        folder, specs, mirrors, dataset=name, download=download, timeout=timeout
    )
    x, y = read_idx_pair(images_path, labels_path, len(class_names))
    return TensorData(
        x=x,
        y=y,
        num_classes=len(class_names),
        name=name,
        class_names=class_names,
        mean=(mean,),
        std=(std,),
    )


@datasets.register("mnist")
def mnist(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    files: Mapping[str, FileSpec] | None = None,
    mirrors: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> TensorData:
    """MNIST digits, 10 classes, (N, 1, 28, 28); mean (0.1307,), std (0.3081,)."""
    return _load_idx_dataset(
        "mnist",
        split,
        data_dir,
        download,
        MNIST_FILES if files is None else files,
        MNIST_MIRRORS if mirrors is None else mirrors,
        timeout,
        tuple(str(i) for i in range(10)),
        0.1307,
        0.3081,
    )


@datasets.register("fashion-mnist")
def fashion_mnist(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    files: Mapping[str, FileSpec] | None = None,
    mirrors: Sequence[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> TensorData:
    """Fashion-MNIST clothing images, 10 classes, (N, 1, 28, 28); mean (0.2860,),
    std (0.3530,)."""
    return _load_idx_dataset(
        "fashion-mnist",
        split,
        data_dir,
        download,
        FASHION_MNIST_FILES if files is None else files,
        FASHION_MNIST_MIRRORS if mirrors is None else mirrors,
        timeout,
        FASHION_MNIST_CLASSES,
        0.2860,
        0.3530,
    )
