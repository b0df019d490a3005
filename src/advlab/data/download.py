"""Fetch dataset files from their canonical mirrors and verify them by MD5 (DESIGN §5).

Contract of :func:`ensure_files`:

- a file that is present is MD5-verified; a mismatch raises :class:`DataIntegrityError` naming
  the file, the expected and the actual MD5 (the file is never half-read or silently replaced);
- a missing file is downloaded (``download=True``) from each mirror in turn (``mirror + name``):
  streamed with a progress bar into a temporary file in the destination folder, MD5-checked,
  then renamed into place atomically. Network errors and bad checksums move on to the next
  mirror. When every mirror fails, when ``download=False``, or when the folder is read-only,
  :class:`DatasetNotFoundError` says which files to put in which folder.

Hashing a 10 MB file costs ~20 ms; results are cached per process and in a small
``.verified.json`` next to the files (keyed by name, size and mtime, written atomically, and only
when the folder is writable: read-only reference copies are never written to).

The one network call is :func:`open_url`; tests replace it with ``monkeypatch``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from advlab.data.errors import DataIntegrityError, DatasetNotFoundError
from advlab.data.paths import ENV_VAR, is_writable_dir
from advlab.utils.files import atomic_write_json
from advlab.utils.progress import progress

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 30.0
VERIFIED_CACHE = ".verified.json"
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")

# Process-wide cache: (absolute path, size, mtime_ns) -> md5 of a file that verified.
_verified: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class FileSpec:
    """One expected file: bare ``name`` inside the dataset folder, its ``md5`` (lower-case hex)
    and, when known, its ``size`` in bytes."""

    name: str
    md5: str
    size: int | None = None

    def __post_init__(self) -> None:
        if not self.name or self.name in {".", ".."} or "/" in self.name or "\\" in self.name:
            raise ValueError(f"FileSpec name must be a bare file name; got {self.name!r}")
        if not _MD5_RE.match(self.md5):
            raise ValueError(f"FileSpec md5 must be 32 lower-case hex digits; got {self.md5!r}")
        if self.size is not None and self.size < 0:
            raise ValueError(f"FileSpec size must be >= 0 or None; got {self.size}")


def md5_file(path: Path) -> str:
    """MD5 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def open_url(url: str, timeout: float) -> tuple[BinaryIO, int | None]:
    """Open ``url`` (http or https) for streaming; return the response and its length in bytes
    (``None`` when the server does not say). This is the only function that touches the network.
    """
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"only http(s) URLs can be downloaded; got {url!r}")
    request = urllib.request.Request(url, headers={"User-Agent": "advlab"})
    response = urllib.request.urlopen(request, timeout=timeout)  # scheme checked above
    length = response.headers.get("Content-Length")
    size = int(length) if length is not None and length.isdigit() else None
    return cast(BinaryIO, response), size


# ----------------------------------------------------------------------------- verification


def _cache_key(path: Path, st: os.stat_result) -> tuple[str, int, int]:
    return (str(path.absolute()), st.st_size, st.st_mtime_ns)


def _read_cache(folder: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads((folder / VERIFIED_CACHE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def _remember(path: Path, md5: str) -> None:
    """Record that ``path`` (at its current size and mtime) has MD5 ``md5``."""
    st = path.stat()
    _verified[_cache_key(path, st)] = md5
    folder = path.parent
    if not is_writable_dir(folder):
        return
    files = _read_cache(folder)
    files[path.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "md5": md5}
    try:
        atomic_write_json(folder / VERIFIED_CACHE, {"version": 1, "files": files})
    except OSError as exc:  # a cache only: losing it costs one re-hash
        logger.debug("could not write %s: %s", folder / VERIFIED_CACHE, exc)


def _known_md5(path: Path, st: os.stat_result) -> str | None:
    hit = _verified.get(_cache_key(path, st))
    if hit is not None:
        return hit
    entry = _read_cache(path.parent).get(path.name)
    if (
        isinstance(entry, dict)
        and entry.get("size") == st.st_size
        and entry.get("mtime_ns") == st.st_mtime_ns
        and isinstance(entry.get("md5"), str)
    ):
        return cast(str, entry["md5"])
    return None


def verify_file(path: Path, spec: FileSpec) -> None:
    """Raise :class:`DataIntegrityError` unless ``path`` has ``spec``'s MD5 (and size, if set).

    Uses the verification cache when the file's size and mtime are unchanged since it last
    verified; otherwise hashes it and, on success, updates the cache.
    """
    st = path.stat()
    if _known_md5(path, st) == spec.md5 and spec.size in (None, st.st_size):
        _verified[_cache_key(path, st)] = spec.md5
        return
    actual = md5_file(path)
    if actual != spec.md5 or spec.size not in (None, st.st_size):
        size_note = f", size {st.st_size} bytes (expected {spec.size})" if spec.size else ""
        raise DataIntegrityError(
            f"checksum mismatch for {path}: expected MD5 {spec.md5}, got {actual}{size_note}. "
            "The file is corrupt or incomplete: delete it to download it again, or replace it "
            "with the canonical file."
        )
    _remember(path, actual)


# ----------------------------------------------------------------------------- download


def not_found(
    dataset: str, folder: Path, names: Sequence[str], mirrors: Sequence[str], reason: str
) -> DatasetNotFoundError:
    """Build the :class:`DatasetNotFoundError` for missing files: it names the files, the
    folder, where to get them and how to point advlab at another folder."""
    sources = " or ".join(mirrors) if mirrors else "the dataset's home page"
    message = (
        f"{dataset} files not found: {', '.join(names)}. Put them in {folder}/ (download from "
        f"{sources}), or point advlab at a data folder that has a '{folder.name}/' subfolder "
        f"with them, using --data-dir or the {ENV_VAR} environment variable. ({reason})"
    )
    return DatasetNotFoundError(message, files=names, folder=folder, reason=reason)


def _stream(url: str, out: BinaryIO, spec: FileSpec, timeout: float) -> str:
    """Copy ``url`` into ``out`` with a progress bar; return the MD5 of what was written."""
    response, length = open_url(url, timeout)
    digest = hashlib.md5(usedforsecurity=False)
    bar = progress(
        iter(()),
        desc=spec.name,
        total=length or spec.size,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
    )
    try:
        with response:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    finally:
        bar.close()
    return digest.hexdigest()


def download_file(
    spec: FileSpec,
    folder: Path,
    mirrors: Sequence[str],
    *,
    dataset: str,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Path:
    """Download ``spec`` into ``folder`` from the first mirror that serves the right bytes.

    Raises :class:`DataIntegrityError` if some mirror answered but every answer had the wrong
    MD5, else :class:`DatasetNotFoundError` (offline, unreachable, HTTP errors).
    """
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / spec.name
    failures: list[str] = []
    bad_md5: list[str] = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + spec.name
        logger.info("downloading %s from %s", spec.name, url)
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{spec.name}.", suffix=".part")
        tmp: Path | None = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                actual = _stream(url, out, spec, timeout)
                out.flush()
                os.fsync(out.fileno())
            if actual != spec.md5:
                bad_md5.append(actual)
                failures.append(f"{url}: MD5 {actual}, expected {spec.md5}")
                continue
            os.replace(tmp_name, dest)
            tmp = None
            _remember(dest, actual)
            return dest
        except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is an OSError
            failures.append(f"{url}: {exc}")
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    detail = "; ".join(failures) or "no mirrors configured"
    if bad_md5:
        raise DataIntegrityError(
            f"download of {dest} failed verification: expected MD5 {spec.md5}, got "
            f"{', '.join(bad_md5)} ({detail})"
        )
    raise not_found(dataset, folder, [spec.name], mirrors, f"download failed: {detail}")


def ensure_files(
    folder: Path,
    specs: Sequence[FileSpec],
    mirrors: Sequence[str],
    *,
    dataset: str,
    download: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[Path]:
    """Make sure every file in ``specs`` is in ``folder`` and verified; return their paths
    (same order as ``specs``). See the module docstring for the rules."""
    missing = [spec for spec in specs if not (folder / spec.name).is_file()]
    if missing:
        names = [spec.name for spec in missing]
        if not download:
            raise not_found(dataset, folder, names, mirrors, "download=False")
        if not is_writable_dir(folder):
            reason = f"{folder} is read-only, so nothing can be downloaded there"
            raise not_found(dataset, folder, names, mirrors, reason)
        try:
            for spec in missing:
                download_file(spec, folder, mirrors, dataset=dataset, timeout=timeout)
        except DatasetNotFoundError as exc:
            still = [name for name in names if not (folder / name).is_file()]
            raise not_found(dataset, folder, still, mirrors, exc.reason) from exc
    paths = [folder / spec.name for spec in specs]
    for path, spec in zip(paths, specs, strict=True):
        verify_file(path, spec)
    return paths
