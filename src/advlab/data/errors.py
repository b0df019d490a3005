"""Exceptions raised by the data layer.

``DatasetNotFoundError`` (a ``FileNotFoundError``): the files are absent and could not be
downloaded; the message names the files, the folder to put them in, and how to point advlab at
another folder. ``DataIntegrityError`` (a ``ValueError``): a file exists but is corrupt (checksum
mismatch, truncated, malformed); the message names the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files are missing locally and were not (or could not be) downloaded.

    Besides the message, carries ``files`` (missing names), ``folder`` (where they belong) and
    ``reason`` (why they were not downloaded) for callers such as the CLI.
    """

    def __init__(
        self,
        message: str,
        *,
        files: Sequence[str] = (),
        folder: Path | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.files = tuple(files)
        self.folder = folder
        self.reason = reason

    def __str__(self) -> str:  # FileNotFoundError would format errno-style otherwise
        return str(self.args[0]) if self.args else ""


class DataIntegrityError(ValueError):
    """A dataset file exists but its content is wrong: bad checksum, truncated or malformed."""
