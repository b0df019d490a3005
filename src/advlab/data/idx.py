"""Reader for IDX files, the format of MNIST and Fashion-MNIST (LeCun et al., 1998).

Layout: two zero bytes, a type code byte, a dimension-count byte, then one big-endian uint32 per
dimension, then the values row-major in big-endian order. Files may be gzip-compressed (detected
by content, not by name).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from advlab.data.errors import DataIntegrityError

# IDX type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype[np.generic]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    with path.open("rb") as fh:
        raw = fh.read()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataIntegrityError(f"{path}: corrupt or truncated gzip data ({exc})") from exc


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode uncompressed IDX bytes into a new, writable, native-endian array.

    Raises :class:`DataIntegrityError` (naming ``source``) for a bad magic number, an unknown
    type code, or a byte count that disagrees with the dimensions.
    """
    if len(raw) < 4:
        raise DataIntegrityError(f"{source}: not an IDX file (only {len(raw)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in IDX_DTYPES:
        raise DataIntegrityError(
            f"{source}: not an IDX file (magic {raw[:4].hex()}; expected 0000 followed by a "
            f"type code in {sorted(IDX_DTYPES)} and a dimension count)"
        )
    if ndim == 0:
        raise DataIntegrityError(f"{source}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataIntegrityError(f"{source}: truncated IDX header ({len(raw)} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataIntegrityError(
            f"{source}: IDX dimensions {dims} need {expected} data bytes, file has "
            f"{len(raw) - header} (truncated or corrupt)"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a gzip-compressed or plain IDX file; shape is the file's dimensions, dtype its type
    (native byte order). Corrupt or truncated files raise :class:`DataIntegrityError`."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))
