"""Figures (matplotlib, Agg backend): pure functions of saved data, readable in grayscale."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor


def _image(t: Tensor) -> tuple[np.ndarray, str | None]:
    """``(C, H, W)`` or ``(D,)`` tensor -> array for imshow and its colormap."""
    a = t.detach().float().cpu().numpy()
    if a.ndim == 1:  # feature vector: show as a 1-row strip
        return a[None, :], "gray"
    if a.shape[0] == 1:
        return a[0], "gray"
    return np.clip(np.transpose(a[:3], (1, 2, 0)), 0, 1), None


def plot_adversarial_grid(
    x: Tensor,
    x_adv: Tensor,
    labels: Sequence[str],
    labels_adv: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    class_names: Sequence[str] | None = None,
) -> Path:
    """Rows of *clean | amplified perturbation | adversarial*, one row per input.

    ``x``, ``x_adv``: ``(N, ...)`` in pixel units; ``labels``/``labels_adv``: captions under the
    clean and adversarial images (e.g. "7 (99.1%)"). The perturbation is shown rescaled to the
    full grey range around mid-grey (0 = grey) with its Linf size in the caption. Saves a PNG.
    """
    n = int(x.shape[0])
    if n == 0 or x.shape != x_adv.shape or len(labels) != n or len(labels_adv) != n:
        raise ValueError("x, x_adv, labels and labels_adv must describe the same N >= 1 inputs")
    fig, axes = plt.subplots(n, 3, figsize=(6.6, 2.3 * n), squeeze=False)
    for i in range(n):
        delta = x_adv[i] - x[i]
        scale = float(delta.abs().max())
        amp = 0.5 + 0.5 * delta / scale if scale > 0 else delta + 0.5
        panels = [
            (x[i], f"clean: {labels[i]}"),
            (amp, f"perturbation (×{0.5 / scale:.0f}), Linf {scale:.3f}" if scale else "none"),
            (x_adv[i], f"adversarial: {labels_adv[i]}"),
        ]
        for ax, (img, caption) in zip(axes[i], panels, strict=True):
            arr, cmap = _image(img)
            ax.imshow(arr, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(caption, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i][0].set_ylabel(f"#{i}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
