"""Datasets as tensors in input space (DESIGN §1, §5).

``load(name, split)`` returns a :class:`TensorData`; ``datasets`` lists the loaders (``mnist``,
``fashion-mnist``, ``cifar10``, ``digits``, ``synthetic``). Files are found with
:func:`resolve_data_dir` (``--data-dir`` > ``$ADVLAB_DATA`` > ``~/.cache/advlab``), downloaded
from canonical mirrors when missing, and MD5-verified. :class:`TensorLoader` batches in memory.
"""

from advlab.data import cifar10 as _cifar10  # noqa: F401  (registers "cifar10")
from advlab.data import digits as _digits  # noqa: F401  (registers "digits")
from advlab.data import mnist as _mnist  # noqa: F401  (registers "mnist", "fashion-mnist")
from advlab.data import synthetic as _synthetic  # noqa: F401  (registers "synthetic")
from advlab.data.catalog import SPLITS, check_split, datasets, load
from advlab.data.download import FileSpec, ensure_files, md5_file, verify_file
from advlab.data.errors import DataIntegrityError, DatasetNotFoundError
from advlab.data.idx import read_idx
from advlab.data.loader import TensorLoader
from advlab.data.paths import ENV_VAR, resolve_data_dir
from advlab.data.split import train_val_split
from advlab.data.tensor_data import TensorData

__all__ = [
    "ENV_VAR",
    "SPLITS",
    "DataIntegrityError",
    "DatasetNotFoundError",
    "FileSpec",
    "TensorData",
    "TensorLoader",
    "check_split",
    "datasets",
    "ensure_files",
    "load",
    "md5_file",
    "read_idx",
    "resolve_data_dir",
    "train_val_split",
    "verify_file",
]
