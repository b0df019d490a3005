"""Where dataset files live (DESIGN §5).

Resolution order: explicit ``data_dir`` argument (the CLI's ``--data-dir``) > environment
variable ``ADVLAB_DATA`` > ``~/.cache/advlab``. Each dataset has its own subfolder of that root:
``<root>/mnist/``, ``<root>/fashion-mnist/``, ``<root>/cifar10/``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

ENV_VAR = "ADVLAB_DATA"
DEFAULT_SUBDIR = (".cache", "advlab")


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the data root: ``data_dir`` if given, else ``$ADVLAB_DATA`` if set and non-empty,
    else ``~/.cache/advlab``. ``~`` is expanded; nothing is created."""
    if data_dir is not None:
        if not isinstance(data_dir, str | os.PathLike):
            raise TypeError(f"data_dir must be a str or path; got {type(data_dir).__name__}")
        if str(data_dir) == "":
            raise ValueError("data_dir must be a non-empty path; got ''")
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return Path.home().joinpath(*DEFAULT_SUBDIR)


def is_writable_dir(path: Path) -> bool:
    """Whether files may be created in ``path`` (or, if it does not exist yet, in its nearest
    existing ancestor).

    A folder with no write permission bit at all counts as read-only even for root, who could
    write there anyway: shared reference copies are marked that way and must never be modified.
    """
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    if not probe.is_dir():
        return False
    mode = probe.stat().st_mode
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return False
    return os.access(probe, os.W_OK)
