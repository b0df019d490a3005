"""Progress bars (tqdm) that stay quiet when logging is turned down or output is not a TTY."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(
    iterable: Iterable[T],
    *,
    desc: str = "",
    total: int | None = None,
    leave: bool = False,
    disable: bool | None = None,
    **kw: Any,
) -> tqdm:
    """Wrap ``iterable`` in a tqdm bar on stderr.

    Disabled when the environment has ``ADVLAB_PROGRESS=0`` or when ``disable=True``.
    Returns the bar so callers can ``set_postfix``.
    """
    if disable is None:
        disable = os.environ.get("ADVLAB_PROGRESS", "1") == "0"
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        leave=leave,
        disable=disable,
        file=sys.stderr,
        dynamic_ncols=True,
        **kw,
    )
