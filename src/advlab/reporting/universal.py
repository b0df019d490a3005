"""Figure of a universal adversarial perturbation (matplotlib, Agg), a pure function of the
saved tensor."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor

from advlab.reporting.plots import save_figure


def plot_perturbation(perturbation: Tensor, path: str | os.PathLike[str], title: str = "") -> Path:
    """Save a PNG (or the format of the suffix) of ``perturbation`` (one input's shape:
    ``(C, H, W)``, ``(H, W)`` or a feature vector ``(D,)``, pixel units).

    The perturbation is rescaled to the full grey range around mid-grey (``0`` = grey,
    ``±max|v|`` = black/white; colour images per RGB channel), and the caption gives the
    amplification and its Linf and L2 norms, so the figure reads in grayscale.
    """
    if not isinstance(perturbation, Tensor) or perturbation.numel() == 0:
        raise ValueError("plot_perturbation needs a non-empty perturbation tensor")
    v = perturbation.detach().float().cpu()
    if v.ndim not in (1, 2, 3):
        raise ValueError(
            f"perturbation must be (C, H, W), (H, W) or (D,); got shape {tuple(v.shape)}"
        )
    linf, l2 = float(v.abs().max()), float(v.norm())
    amp = 0.5 + 0.5 * v / linf if linf > 0 else v + 0.5  # in [0, 1], 0 -> mid-grey
    a = amp.numpy()
    cmap: str | None = "gray"
    if a.ndim == 1:  # feature vector: a 1-row strip
        a = a[None, :]
    elif a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    elif a.ndim == 3 and a.shape[0] >= 3:
        a, cmap = np.transpose(a[:3], (1, 2, 0)), None
    elif a.ndim == 3:  # 2 channels: show the first
        a = a[0]
    fig, ax = plt.subplots(figsize=(3.4, 3.6), layout="constrained")
    ax.imshow(a, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    scale = f"×{0.5 / linf:.3g}" if linf > 0 else "zero"
    ax.set_xlabel(f"rescaled ({scale}); Linf {linf:.4g}, L2 {l2:.4g}", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
