"""The report's figures: each a pure function of the report dict (docs/report-format.md).

Series are told apart by line style and marker as well as colour, so every figure reads in
grayscale. A figure with nothing to show (no examples, nobody broken, no transfer) is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from itertools import cycle
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from advlab.reporting.fmt import (
    Report,
    class_name,
    eps_axis_label,
    items,
    norm_name,
    num,
    pct,
    size_unit,
    table,
)
from advlab.reporting.plots import (
    annotate_cells,
    plot_adversarial_grid,
    plot_transfer_matrix,
    save_figure,
)

MAX_EXAMPLES = 8  # rows in the example grid
STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)))  # min-norm curves / histogram series
MARKERS = ("s", "^", "v", "D", "x", "P")

Paths = tuple[Path, ...]


def _bounds(interval: object) -> tuple[float | None, float | None]:
    lo_hi = items(interval)
    return (lo_hi[0], lo_hi[1]) if len(lo_hi) == 2 else (None, None)


def _sweep(report: Report) -> dict[str, list[float | None]]:
    """The ``"sweep"`` curve (eps, accuracy, ci_low, ci_high), rebuilt from ``per_eps`` when the
    report has none, with clean accuracy prepended as the eps = 0 point."""
    curve = next((c for c in items(report.get("curves")) if c.get("source") == "sweep"), None)
    if curve is None:
        robust = [(e.get("eps"), table(e.get("robust"))) for e in items(report.get("per_eps"))]
        curve = {
            "eps": [eps for eps, _ in robust],
            "accuracy": [r.get("accuracy") for _, r in robust],
            "ci_low": [_bounds(r.get("ci"))[0] for _, r in robust],
            "ci_high": [_bounds(r.get("ci"))[1] for _, r in robust],
        }
    out = {k: list(items(curve.get(k))) for k in ("eps", "accuracy", "ci_low", "ci_high")}
    clean = table(report.get("clean"))
    if clean.get("accuracy") is not None and (not out["eps"] or out["eps"][0] != 0):
        lo, hi = _bounds(clean.get("ci"))
        for key, value in zip(out, (0.0, clean["accuracy"], lo, hi), strict=True):
            out[key].insert(0, value)
    return out


def _percent(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else 100.0 * v for v in values], dtype=float)


def plot_accuracy_vs_eps(report: Report, *paths: str | os.PathLike[str]) -> Path:
    """Robust accuracy (%) vs eps: the sweep curve with its 95 % Wilson band, one dashed/dotted
    curve per minimum-norm attack, clean accuracy as a star at eps = 0. Saves to every path."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    sweep = _sweep(report)
    if any(e for e in sweep["eps"]):  # some eps > 0 beyond the clean point
        x = np.array(sweep["eps"], dtype=float)
        lo, hi = _percent(sweep["ci_low"]), _percent(sweep["ci_high"])
        if len(lo) == len(x) and len(hi) == len(x) and not np.isnan(lo + hi).all():
            ax.fill_between(x, lo, hi, color="0.8", label="95% Wilson interval (sweep)")
        ax.plot(x, _percent(sweep["accuracy"]), "-o", color="black", label="robust (sweep)")
    others = [c for c in items(report.get("curves")) if c.get("source") != "sweep"]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for curve, style, marker, color in zip(
        others, cycle(STYLES), cycle(MARKERS), cycle(colors[1:]), strict=False
    ):
        x = np.array(items(curve.get("eps")), dtype=float)
        y = _percent(items(curve.get("accuracy")))
        ax.plot(
            x,
            y,
            linestyle=style,
            marker=marker,
            markevery=max(1, len(x) // 10),
            color=color,
            label=f"{curve.get('source')} (min-norm)",
        )
    clean = table(report.get("clean")).get("accuracy")
    if clean is not None:
        ax.plot([0.0], [100.0 * clean], "*", color="black", markersize=13, label="clean")
    ax.set_xlabel(eps_axis_label(report.get("norm")))
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_xlim(left=0)
    ax.grid(True, color="0.9")
    ax.set_title(f"Accuracy vs eps ({norm_name(report.get('norm'))})")
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, *paths)


def plot_examples(report: Report, path: str | os.PathLike[str]) -> Path | None:
    """Grid of worst-case examples, *clean | amplified perturbation | adversarial*, captioned
    with prediction and confidence. Uses the examples sharing the first one's shape."""
    examples = items(report.get("examples"))
    if not examples:
        return None
    shape = items(examples[0].get("shape"))
    rows = [e for e in examples if items(e.get("shape")) == shape][:MAX_EXAMPLES]

    def stack(key: str) -> torch.Tensor:  # (N, *shape)
        return torch.tensor([e[key] for e in rows], dtype=torch.float32).reshape(-1, *shape)

    labels = [
        f"{class_name(report, e.get('clean_pred'))} ({pct(e.get('clean_confidence'), 0)}), "
        f"true {class_name(report, e.get('label'))}"
        for e in rows
    ]
    labels_adv = [
        f"{class_name(report, e.get('adv_pred'))} ({pct(e.get('adv_confidence'), 0)}), "
        f"eps {num(e.get('eps'))}"
        for e in rows
    ]
    title = f"Adversarial examples ({norm_name(report.get('norm'))}): prediction (confidence)"
    return plot_adversarial_grid(stack("x"), stack("x_adv"), labels, labels_adv, path, title=title)


def _broken_sizes(report: Report, norm: str) -> list[tuple[float, np.ndarray]]:
    """Per eps: the ``norm`` sizes of the samples an attack broke at that eps."""
    out = []
    for entry in items(table(report.get("samples")).get("per_eps")):
        broken_by, sizes = items(entry.get("broken_by")), items(entry.get(norm))
        values = [
            float(s)
            for b, s in zip(broken_by, sizes, strict=False)
            if b not in ("", "clean", None) and s is not None
        ]
        out.append((float(entry.get("eps", 0.0)), np.array(values, dtype=float)))
    return out


def plot_perturbation_sizes(report: Report, path: str | os.PathLike[str]) -> Path | None:
    """Histograms of the per-sample perturbation sizes of broken samples (Linf and L2, plus the
    report's own norm when it is L1 or L0), one step outline per eps."""
    norm = str(report.get("norm"))
    norms = ["linf", "l2"] + ([norm] if norm in ("l1", "l0") else [])
    sizes = {n: _broken_sizes(report, n) for n in norms}
    sizes = {n: s for n, s in sizes.items() if any(len(v) for _, v in s)}
    if not sizes:
        return None
    fig, axes = plt.subplots(
        1, len(sizes), figsize=(3.6 * len(sizes), 3.4), layout="constrained", squeeze=False
    )
    for ax, (n, per_eps) in zip(axes[0], sizes.items(), strict=True):
        edges = np.histogram_bin_edges(np.concatenate([v for _, v in per_eps]), bins=15)
        for (eps, values), style in zip(per_eps, cycle(("-", *STYLES)), strict=False):
            if len(values):
                ax.hist(
                    values,
                    bins=edges,
                    histtype="step",
                    linestyle=style,
                    linewidth=1.6,
                    label=f"eps {eps:.4g} (n={len(values)})",
                )
        ax.set_xlim(left=0)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"{norm_name(n)} size ({size_unit(n)})")
        ax.set_ylabel("broken samples (count)")
        ax.set_title(f"{norm_name(n)} perturbation", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Perturbation size of broken samples, per eps", fontsize=10)
    return save_figure(fig, path)


def plot_confusion(report: Report, path: str | os.PathLike[str]) -> Path | None:
    """Heatmap of counts, true label x prediction on the worst-case input, at the largest eps."""
    entries = [e for e in items(report.get("per_eps")) if items(e.get("confusion"))]
    if not entries:
        return None
    entry = max(entries, key=lambda e: float(e.get("eps", 0.0)))
    counts = np.array(entry["confusion"], dtype=float)  # (K, K)
    k = counts.shape[0]
    side = min(9.0, 2.5 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(side + 1.0, side), layout="constrained")
    im = ax.imshow(counts, cmap="Greys", vmin=0.0, vmax=max(1.0, float(counts.max())))
    if k <= 20:
        labels = [[f"{int(c)}" for c in row] for row in counts]
        annotate_cells(ax, counts / max(1.0, float(counts.max())), labels)
    names = [class_name(report, i) for i in range(k)]
    ax.set_xticks(range(k), names, rotation=45 if k > 10 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("prediction on adversarial input")
    ax.set_ylabel("true label")
    eps = float(entry.get("eps", 0.0))
    ax.set_title(f"Adversarial confusion at eps {eps:.4g} ({norm_name(report.get('norm'))})")
    bar = fig.colorbar(im, ax=ax, label="samples (count)", shrink=0.8)
    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()
    return save_figure(fig, path)


def plot_transfer(report: Report, path: str | os.PathLike[str]) -> Path | None:
    """The ``transfer`` block as a sources x targets accuracy heatmap (None when absent)."""
    t = table(report.get("transfer"))
    if not items(t.get("sources")) or not items(t.get("targets")):
        return None
    title = f"Transfer of {t.get('attack', '?')} at eps {float(t.get('eps', 0.0)):.4g}"
    return plot_transfer_matrix(t["sources"], t["targets"], t["accuracy"], path, title=title)


FIGURES: dict[str, tuple[str, Callable[[Report, Path], Path | None]]] = {
    "examples": ("Worst-case adversarial examples", plot_examples),
    "perturbation_sizes": ("Perturbation size of broken samples", plot_perturbation_sizes),
    "confusion": ("Adversarial confusion matrix at the largest eps", plot_confusion),
    "transfer": ("Transfer matrix", plot_transfer),
}
CAPTIONS = {"accuracy_vs_eps": "Accuracy vs eps"} | {k: v[0] for k, v in FIGURES.items()}


def write_figures(report: Report, fig_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write every figure the report has data for into ``fig_dir``; returns file name -> path
    (``"accuracy_vs_eps.png"``, ``"accuracy_vs_eps.svg"``, ``"examples.png"``, ...). A figure
    left over from an earlier render of the same folder that has no data now is removed."""
    d = Path(fig_dir)
    png, svg = d / "accuracy_vs_eps.png", d / "accuracy_vs_eps.svg"
    plot_accuracy_vs_eps(report, png, svg)
    out = {png.name: png, svg.name: svg}
    for stem, (_, plot) in FIGURES.items():
        path = plot(report, d / f"{stem}.png")
        if path is None:
            (d / f"{stem}.png").unlink(missing_ok=True)
        else:
            out[path.name] = path
    return out
