"""The ``datasets`` registry and :func:`load` (DESIGN §3, §5).

Every loader has the signature
``loader(split: str = "train", data_dir: str | Path | None = None, download: bool = True, **kw)
-> TensorData`` with ``split`` in :data:`SPLITS`. Offline loaders (``digits``, ``synthetic``)
accept and ignore ``data_dir`` and ``download``.
"""

from __future__ import annotations

import os
from typing import Any

from advlab.data.tensor_data import TensorData
from advlab.registry import Registry

SPLITS = ("train", "test")

datasets: Registry[TensorData] = Registry("dataset")


def check_split(split: str) -> str:
    """Return ``split`` if it is one of :data:`SPLITS`, else raise ``ValueError`` listing them."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    return split


def load(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    **kw: Any,
) -> TensorData:
    """Load dataset ``name`` (see ``datasets.names()``); same as
    ``datasets.build(name, split=..., data_dir=..., download=..., **kw)``."""
    return datasets.build(name, split=split, data_dir=data_dir, download=download, **kw)
