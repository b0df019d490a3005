"""Confidence intervals for accuracies (binomial proportions)."""

from __future__ import annotations

import math
from typing import Any

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``correct`` successes out of ``n`` trials (95% by default).

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 and ``n``
    (Wilson 1927; Brown, Cai & DasGupta 2001 recommend it). ``n = 0`` gives ``(0, 1)``.
    """
    if n < 0 or correct < 0 or correct > n:
        raise ValueError(f"need 0 <= correct <= n; got correct={correct}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_block(correct: int, n: int) -> dict[str, Any]:
    """``{"accuracy", "correct", "n", "ci"}`` as used throughout ``report.json``."""
    lo, hi = wilson(correct, n)
    return {
        "accuracy": correct / n if n else 0.0,
        "correct": int(correct),
        "n": int(n),
        "ci": [lo, hi],
    }
