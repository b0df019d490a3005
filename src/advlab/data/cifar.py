"""Reader for the CIFAR-10 "python version" files (Krizhevsky, "Learning Multiple Layers of
Features from Tiny Images", 2009): pickled batches inside ``cifar-10-python.tar.gz``.

Safety: pickles are loaded with :class:`RestrictedUnpickler`, which resolves only the globals
that numpy array reconstruction needs (see :data:`ALLOWED_GLOBALS`) and refuses anything else
(``os.system``, ``builtins.eval``, ...). The archive is never ``extractall``-ed: only regular
members named ``cifar-10-batches-py/<expected name>`` are read, and output paths are built from
the expected names, so path traversal and links cannot escape the folder.
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from advlab.data.errors import DataIntegrityError

ARCHIVE_DIR = "cifar-10-batches-py"
MAX_MEMBER_BYTES = 256 << 20  # a real batch is ~31 MB; refuse anything absurd


def _multiarray() -> Any:
    try:
        return importlib.import_module("numpy._core.multiarray")  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        return importlib.import_module("numpy.core.multiarray")


_MA = _multiarray()

# (module, name) as written in the pickle -> object. Both numpy 1 (``numpy.core``) and numpy 2
# (``numpy._core``) spellings resolve to the installed numpy without importing the deprecated one.
ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("numpy.core.multiarray", "_reconstruct"): _MA._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _MA._reconstruct,
    ("numpy.core.multiarray", "scalar"): _MA.scalar,
    ("numpy._core.multiarray", "scalar"): _MA.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 writes bytes at protocol <= 2 as _codecs.encode(str, "latin1").
    ("_codecs", "encode"): codecs.encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that only resolves :data:`ALLOWED_GLOBALS`; any other global raises
    ``pickle.UnpicklingError`` naming it. Persistent ids are refused too (the default)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to unpickle global {module}.{name}: CIFAR batches may only contain "
                "numpy arrays, lists, dicts, numbers and strings"
            ) from None


def restricted_loads(data: bytes, *, encoding: str = "bytes") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (``encoding="bytes"`` as the
    Python 2 CIFAR files need: their keys and strings come back as ``bytes``)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()


def _load_dict(raw: bytes, source: str) -> dict[str, Any]:
    try:
        obj = restricted_loads(raw)
    except Exception as exc:  # untrusted bytes: any failure means a bad file
        raise DataIntegrityError(f"{source}: cannot unpickle CIFAR batch ({exc})") from exc
    if not isinstance(obj, dict):
        raise DataIntegrityError(f"{source}: expected a pickled dict; got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def decode_batch(raw: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one pickled batch into images uint8 ``(N, 3, 32, 32)`` and labels int64 ``(N,)``;
    a malformed batch raises :class:`DataIntegrityError` naming ``source``."""
    batch = _load_dict(raw, source)
    data, labels = batch.get("data"), batch.get("labels")
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * 32 * 32
    ):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataIntegrityError(f"{source}: 'data' must be uint8 (N, 3072); got {got}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataIntegrityError(f"{source}: 'labels' must be a list of ints ({exc})") from exc
    if y.shape != (data.shape[0],):
        raise DataIntegrityError(
            f"{source}: {data.shape[0]} images but labels have shape {y.shape}"
        )
    return data.reshape(-1, 3, 32, 32), y  # rows are R(1024) G(1024) B(1024), row-major


def decode_meta(raw: bytes, source: str) -> tuple[str, ...]:
    """Class names from ``batches.meta`` (its ``label_names`` list)."""
    names = _load_dict(raw, source).get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, bytes | str) for n in names):
        raise DataIntegrityError(f"{source}: 'label_names' must be a list of strings")
    return tuple(n.decode("utf-8") if isinstance(n, bytes) else n for n in names)


def iter_members(archive: Path, names: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, content)`` for each ``cifar-10-batches-py/<name>`` in ``archive``, in
    archive order, reading nothing else. Missing, duplicated, non-regular or oversized members
    and a corrupt archive raise :class:`DataIntegrityError`."""
    wanted = {f"{ARCHIVE_DIR}/{name}": name for name in names}
    seen: set[str] = set()
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:  # streams through the archive once
                name = wanted.get(member.name.removeprefix("./"))
                if name is None:
                    continue
                if name in seen or not member.isreg() or member.size > MAX_MEMBER_BYTES:
                    raise DataIntegrityError(
                        f"{archive}: member {member.name!r} is duplicated, not a regular file, "
                        f"or larger than {MAX_MEMBER_BYTES} bytes"
                    )
                fh = tar.extractfile(member)
                content = fh.read() if fh is not None else b""
                seen.add(name)
                yield name, content
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataIntegrityError(f"{archive}: corrupt or truncated tar.gz ({exc})") from exc
    missing = [name for name in names if name not in seen]
    if missing:
        raise DataIntegrityError(
            f"{archive}: missing members {', '.join(f'{ARCHIVE_DIR}/{n}' for n in missing)}"
        )
