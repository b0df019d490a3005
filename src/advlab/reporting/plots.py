"""Figures (matplotlib, Agg backend): pure functions of saved data, readable in grayscale."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from advlab.utils.files import atomic_write_bytes


def save_figure(fig: Figure, *paths: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Save ``fig`` atomically to each path, in the format its suffix names (``.png``, ``.svg``),
    then close it. Returns the first path."""
    if not paths:
        raise ValueError("save_figure needs at least one path")
    try:
        for path in paths:
            buf = io.BytesIO()
            fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
            atomic_write_bytes(path, buf.getvalue())
    finally:
        plt.close(fig)
    return Path(paths[0])


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
    return save_figure(fig, path)


def annotate_cells(ax: Axes, values: np.ndarray, labels: Sequence[Sequence[str]]) -> None:
    """Write ``labels[i][j]`` on cell ``(i, j)`` of a ``Greys`` heatmap of ``values`` (in [0, 1]
    after normalisation), white on dark cells and black on light ones."""
    for i, row in enumerate(labels):
        for j, text in enumerate(row):
            dark = bool(values[i, j] > 0.55)
            ax.text(
                j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black"
            )


def plot_transfer_matrix(
    sources: Sequence[str],
    targets: Sequence[str],
    accuracy: Sequence[Sequence[float | None]],
    path: str | os.PathLike[str],
    *,
    title: str = "Transfer: accuracy of target models on adversarial examples from sources",
) -> Path:
    """Heatmap of ``accuracy[i][j]`` (fraction in [0, 1]; ``None`` = not measured): accuracy of
    target model ``j`` on adversarial examples crafted on source model ``i``. Cells are annotated
    in percent, so the figure reads in grayscale. Saves a PNG (or the format of the suffix)."""
    if not sources or not targets:
        raise ValueError("plot_transfer_matrix needs at least one source and one target")
    if len(accuracy) != len(sources) or any(len(row) != len(targets) for row in accuracy):
        raise ValueError(
            f"accuracy must be {len(sources)} x {len(targets)} (sources x targets); got rows of "
            f"lengths {[len(row) for row in accuracy]}"
        )
    acc = np.array(  # (S, T) in percent, NaN where not measured
        [[np.nan if v is None else 100.0 * float(v) for v in row] for row in accuracy], dtype=float
    )
    fig, ax = plt.subplots(
        figsize=(2.2 + 0.9 * len(targets), 1.6 + 0.6 * len(sources)), layout="constrained"
    )
    im = ax.imshow(acc, cmap="Greys", vmin=0.0, vmax=100.0, aspect="auto")
    labels = [["n/a" if np.isnan(v) else f"{v:.1f}" for v in row] for row in acc]
    annotate_cells(ax, np.nan_to_num(acc) / 100.0, labels)
    ax.set_xticks(range(len(targets)), [str(t) for t in targets], rotation=30, ha="right")
    ax.set_yticks(range(len(sources)), [str(s) for s in sources])
    ax.set_xlabel("target model (evaluated)")
    ax.set_ylabel("source model (attacked)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    return save_figure(fig, path)
