"""Shared types: bounds, norms and threat models (DESIGN §1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

Bounds = tuple[float, float]
"""Lower and upper pixel value, in input space; the default is ``(0.0, 1.0)``."""

BoundsLike = tuple[Any, Any]
"""Bounds as given by a user: floats, or per-feature sequences/tensors shaped like one input."""

Norm = Literal["linf", "l2", "l1", "l0"]
NORMS: tuple[str, ...] = get_args(Norm)


def check_norm(norm: str) -> Norm:
    """Return ``norm`` if it is one of :data:`NORMS`, else raise ``ValueError``."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {norm!r}")
    return norm  # type: ignore[return-value]


def check_bounds(bounds: Bounds) -> Bounds:
    """Validate a ``(low, high)`` pair of finite floats with ``low < high``."""
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise TypeError(f"bounds must be a pair of numbers (low, high); got {bounds!r}") from None
    if not low < high:
        raise ValueError(f"bounds must satisfy low < high; got ({low}, {high})")
    return (low, high)


@dataclass(frozen=True)
class ThreatModel:
    """A perturbation budget: ``norm`` ball of radius ``eps`` in input-space pixel units."""

    norm: Norm = "linf"
    eps: float = 0.3

    def __post_init__(self) -> None:
        check_norm(self.norm)
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0; got {self.eps}")
