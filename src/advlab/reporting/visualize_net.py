"""Looking inside a network: first-layer filters, per-layer activations, input-gradient saliency
and how a perturbation shifts the activations layer by layer.

Each figure is a ``compute_*`` (runs the model, returns a dict of tensors; see
:mod:`advlab.reporting.visualize_common`) and a ``plot_*`` (that dict -> ``Figure``). Models
are run in eval mode with frozen parameters and left as they were; inputs are never mutated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor, nn

from advlab.models import Classifier
from advlab.reporting.visualize_common import (
    DIVERGING,
    Data,
    as_tensor,
    channel_reduce,
    check_batch,
    colorbar,
    cpu,
    frozen,
    image_name,
    labels_or_pred,
    logits_of,
    no_ticks,
    pred_conf,
    show_input,
    signed_map,
)

# leaf modules that only reshape or are the identity in eval mode: not separate "layers"
_PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Flatten, nn.Identity)


# --------------------------------------------------------------------------------- filters
def compute_filters(clf: Classifier, *, layer: str | None = None) -> Data:
    """The weights of the first ``Conv2d`` / ``Linear`` layer of ``clf.net`` (or of the module
    named ``layer``), as images.

    Returns ``{"layer", "type", "weights" (F, C, kh, kw)}``: a ``Linear`` layer whose input
    width equals ``prod(clf.input_shape)`` is reshaped to ``(F, *input_shape)`` (an MLP's
    "templates"), any other to ``(F, 1, 1, D)``.
    """
    modules = dict(clf.net.named_modules())
    if layer is not None:
        if layer not in modules:
            known = [n for n, m in modules.items() if isinstance(m, nn.Conv2d | nn.Linear)]
            raise ValueError(f"no layer {layer!r} in the network; weight layers: {known}")
        name, mod = layer, modules[layer]
    else:
        found = [(n, m) for n, m in modules.items() if isinstance(m, nn.Conv2d | nn.Linear)]
        if not found:
            raise ValueError("the network has no Conv2d or Linear layer to show filters of")
        name, mod = found[0]
    if not isinstance(mod, nn.Conv2d | nn.Linear):
        raise ValueError(f"layer {name!r} is a {type(mod).__name__}, not Conv2d or Linear")
    w = cpu(mod.weight).float()
    if isinstance(mod, nn.Linear):
        shape = clf.input_shape
        if shape is not None and math.prod(shape) == w.shape[1] and len(shape) == 3:
            w = w.view(w.shape[0], *shape)
        else:
            w = w.view(w.shape[0], 1, 1, w.shape[1])
    return {"layer": name or "net", "type": type(mod).__name__, "weights": w}


def plot_filters(data: Data, *, max_filters: int = 64) -> Figure:
    """Grid of the filters in ``data["weights"]`` (``(F, C, kh, kw)``), at most ``max_filters``.

    One input channel: grey levels on one shared symmetric scale (mid-grey = 0, colorbar in
    weight units). Three channels: RGB, each filter rescaled around mid-grey. Other channel
    counts: the mean over input channels (said in the title).
    """
    w = as_tensor(data["weights"]).float()[:max_filters]
    f, c = int(w.shape[0]), int(w.shape[1])
    cols = max(1, math.ceil(math.sqrt(f)))
    rows = math.ceil(f / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.1 * cols + 1.2, 1.1 * rows + 0.8), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    note = ""
    if c != 3 and c != 1:
        w, note = w.mean(1, keepdim=True), f" (mean over {c} input channels)"
    vmax = float(w.abs().max()) or 1.0
    im = None
    for i, ax in enumerate(axes.flat):
        no_ticks(ax)
        if i >= f:
            ax.set_axis_off()
            continue
        if c == 3:
            scale = float(w[i].abs().max()) or 1.0
            ax.imshow((0.5 + 0.5 * w[i] / scale).permute(1, 2, 0).numpy(), interpolation="nearest")
        else:
            im = ax.imshow(w[i, 0].numpy(), cmap="gray", vmin=-vmax, vmax=vmax)
        ax.set_xlabel(f"filter {i}", fontsize=7, labelpad=1)
    if im is not None:
        colorbar(fig, im, axes, "weight (mid-grey = 0)")
    kh, kw = int(w.shape[2]), int(w.shape[3])
    fig.suptitle(
        f"First-layer filters: {data['layer']} ({data['type']}), {f} of shape {c}×{kh}×{kw}{note}",
        fontsize=9,
    )
    return fig


# ----------------------------------------------------------------------------- activations
def _layers(net: nn.Module, names: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    leaves = [
        (n or "net", m)
        for n, m in net.named_modules()
        if not any(True for _ in m.children()) and not isinstance(m, _PASS_THROUGH)
    ]
    if names is None:
        return leaves
    known = dict(leaves)
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"unknown layer(s) {missing}; layers: {list(known)}")
    return [(n, known[n]) for n in names]


def record(
    clf: Classifier, x: Tensor, layers: Sequence[str] | None = None
) -> tuple[dict[str, Tensor], dict[str, str], Tensor]:
    """Forward ``x`` once with hooks on the leaf modules of ``clf.net`` (dropout, flatten and
    identity skipped); returns ``({layer: output (N, ...)}, {layer: module type}, logits)`` in
    the order the layers ran, on the CPU. A module run twice gets ``name#2``."""
    check_batch(clf, x)
    acts: dict[str, Tensor] = {}
    types: dict[str, str] = {}

    def hook(name: str) -> Any:
        def fn(module: nn.Module, inputs: Any, out: Any) -> None:
            if isinstance(out, Tensor):
                key, k = name, 1
                while key in acts:
                    k += 1
                    key = f"{name}#{k}"
                acts[key] = cpu(out).float()  # clone: a later in-place op must not change it
                types[key] = type(module).__name__

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in _layers(clf.net, layers)]
    try:
        logits = logits_of(clf, x)
    finally:
        for h in handles:
            h.remove()
    return acts, types, cpu(logits)


def compute_activations(clf: Classifier, x: Tensor, *, layers: Sequence[str] | None = None) -> Data:
    """Outputs of every layer of ``clf.net`` (leaf modules in execution order, or the named
    ``layers``) for ``x`` ``(N, ...)``.

    Returns ``{"x" (N, ...), "layers" [names], "types" {name: module type}, "activations"
    {name: (N, ...)}, "logits" (N, K), "pred" (N,), "confidence" (N,)}``; convolutional maps
    are ``(N, C, H, W)``, dense activations ``(N, D)``.
    """
    acts, types, logits = record(clf, x, layers)
    pred, conf = pred_conf(logits)
    return {
        "x": cpu(x),
        "bounds": list(clf.bounds),
        "layers": list(acts),
        "types": types,
        "activations": acts,
        "logits": logits,
        "pred": pred,
        "confidence": conf,
    }


def _tiles(ax: Axes, maps: Tensor, slots: int, *, cmap: str, vmin: float, vmax: float) -> Any:
    """Channel maps ``(C, H, W)`` as equal squares side by side on one axes with room for
    ``slots`` of them (so rows of different layers line up), each outlined in black, channel
    indices as x ticks; returns the last image."""
    c, gap = int(maps.shape[0]), 0.25
    im: Any = None
    for j in range(c):
        x0 = j * (1 + gap)
        im = ax.imshow(maps[j].numpy(), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                       extent=(x0, x0 + 1, 1, 0))  # fmt: skip
        ax.add_patch(Rectangle((x0, 0), 1, 1, fill=False, edgecolor="black", linewidth=0.7))
    ax.set_aspect("equal")
    ax.set_xlim(-0.05, max(slots, c) * (1 + gap) - gap + 0.05)
    ax.set_ylim(1.05, -0.05)
    ax.set_xticks([j * (1 + gap) + 0.5 for j in range(c)], [str(j) for j in range(c)])
    ax.set_yticks([])
    ax.tick_params(labelsize=6, length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return im


def _layer_panel(
    fig: Figure,
    ax: Axes,
    title: str,
    t: Tensor,
    *,
    signed: bool,
    label: str,
    max_maps: int,
    slots: int,
) -> None:
    """One layer of one input on ``ax``: ``(C, H, W)`` maps as up to ``max_maps`` channel
    tiles on one scale with a labelled colorbar (``signed``: diverging around 0, else grey);
    anything else as value per unit (bars up to 64 units, else a line)."""
    if t.ndim == 3:
        c = int(t.shape[0])
        shown = t[:max_maps].float()
        vmax = float(shown.abs().max()) or 1.0
        vmin = -vmax if signed or float(shown.min()) < 0 else 0.0
        cmap = DIVERGING if signed else "gray"
        im = _tiles(ax, shown, slots, cmap=cmap, vmin=vmin, vmax=vmax)
        fig.colorbar(im, ax=ax, shrink=0.95, aspect=8).set_label(label, fontsize=7)
        ax.set_xlabel("channel", fontsize=7, labelpad=1)
        more = f", first {max_maps} of {c} channels" if c > max_maps else ""
        ax.set_title(f"{title}: {c}×{t.shape[1]}×{t.shape[2]} maps{more}", fontsize=8)
        return
    v = t.flatten().float().numpy()
    units = np.arange(v.size)
    if v.size <= 64:
        ax.bar(units, v, color="0.35", edgecolor="black", linewidth=0.4)
    else:
        ax.plot(units, v, "-", color="black", linewidth=0.8)
    ax.axhline(0, color="0.6", linewidth=0.6)
    ax.set_xlabel("unit", fontsize=7, labelpad=1)
    ax.set_ylabel(label.split(" (")[0], fontsize=7)
    ax.tick_params(labelsize=6)
    ax.set_xlim(-0.7, v.size - 0.3)
    ax.set_title(f"{title}: {v.size} units", fontsize=8)


def _layers_figure(
    rows: list[tuple[str, Tensor]], n_top: int, *, signed: bool, label: str, max_maps: int
) -> tuple[Figure, list[Axes]]:
    """A figure with ``n_top`` small axes in the first row and one full-width axes per layer
    below, drawn; returns the figure and the top axes for the caller to fill."""
    n_maps = max([min(max_maps, int(t.shape[0])) for _, t in rows if t.ndim == 3], default=6)
    heights = [1.5] + [1.15 if t.ndim == 3 else 1.0 for _, t in rows]
    fig = plt.figure(figsize=(max(6.4, 0.75 * n_maps + 1.8), sum(heights) + 0.5),
                     layout="constrained")  # fmt: skip
    grid = fig.add_gridspec(len(rows) + 1, n_top, height_ratios=heights)
    top = [fig.add_subplot(grid[0, j]) for j in range(n_top)]
    for i, (title, t) in enumerate(rows):
        ax = fig.add_subplot(grid[i + 1, :])
        _layer_panel(fig, ax, title, t, signed=signed, label=label, max_maps=max_maps, slots=n_maps)
    return fig, top


def plot_activations(
    data: Data, *, index: int = 0, max_maps: int = 12, layers: Sequence[str] | None = None
) -> Figure:
    """Input ``index`` and, one row per layer, its activations: feature maps in grey levels
    (one scale per layer, colorbar in activation units), dense layers as activation vs unit."""
    names = list(layers) if layers is not None else list(data["layers"])
    rows = [(f"{n} ({data['types'][n]})", as_tensor(data["activations"][n])[index]) for n in names]
    fig, (ax,) = _layers_figure(rows, 1, signed=False, label="activation (a.u.)",
                                max_maps=max_maps)  # fmt: skip
    show_input(ax, as_tensor(data["x"])[index], tuple(data.get("bounds", (0.0, 1.0))))
    pred, conf = int(as_tensor(data["pred"])[index]), float(as_tensor(data["confidence"])[index])
    ax.set_xlabel(f"input {image_name(data, index)}: predicted {pred} ({100 * conf:.1f}%)",
                  fontsize=8)  # fmt: skip
    fig.suptitle("Activations of every layer for one input", fontsize=10)
    return fig


# -------------------------------------------------------------------------------- saliency
def compute_saliency(
    clf: Classifier,
    x: Tensor,
    y: Tensor | None = None,
    *,
    n: int = 50,
    sigma: float = 0.15,
    seed: int = 0,
    batch_size: int = 256,
) -> Data:
    """Input-gradient saliency of the logit of class ``y`` (default: the predicted class).

    * ``gradient``: ``∂z_y/∂x`` (Simonyan et al. 2014), pixel units.
    * ``gradient_x_input``: ``x ⊙ ∂z_y/∂x`` (Shrikumar et al. 2016; baseline 0 in pixel units).
    * ``smoothgrad``: SmoothGrad (Smilkov et al. 2017): the mean of ``∂z_y/∂x`` at ``n`` points
      ``x + N(0, σ²)``, ``σ = sigma · (high - low)``; defaults ``n = 50``, ``sigma = 0.15``
      (the paper's 10-20 % noise level). As in the paper, noisy points are not clipped to the
      bounds. Noise comes from a private generator seeded by ``seed``.

    Returns ``{"x", "y", "gradient", "gradient_x_input", "smoothgrad"}`` (maps ``(N, ...)``) and
    the settings. The model's logit is differentiated per sample (eval mode, so samples in a
    batch do not interact).
    """
    check_batch(clf, x)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (SmoothGrad samples) must be an integer >= 1; got {n!r}")
    if not sigma >= 0:
        raise ValueError(f"sigma must be >= 0 (a fraction of the input range); got {sigma!r}")
    logits = logits_of(clf, x)
    y = labels_or_pred(x, y, logits)
    scale = sigma * (clf.bounds[1] - clf.bounds[0])
    gen = torch.Generator(device=x.device).manual_seed(int(seed))
    with frozen(clf):
        grad = _class_grad(clf, x, y, batch_size)
        total = torch.zeros_like(grad)
        for _ in range(n):
            noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
            total += _class_grad(clf, x + scale * noise, y, batch_size, check=False)
    return {
        "x": cpu(x),
        "bounds": list(clf.bounds),
        "y": cpu(y),
        "pred": pred_conf(logits)[0],
        "gradient": cpu(grad),
        "gradient_x_input": cpu(grad * x),
        "smoothgrad": cpu(total / n),
        "n": n,
        "sigma": float(sigma),
        "seed": int(seed),
    }


def _class_grad(
    clf: Classifier, x: Tensor, y: Tensor, batch_size: int, *, check: bool = True
) -> Tensor:
    """``∂ z_y / ∂ x`` per sample ``(N, ...)`` (the sum over a batch separates per sample)."""
    parts = []
    for i in range(0, x.shape[0], batch_size):
        xi = x[i : i + batch_size].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            z = clf.logits(xi, check=check)
            (g,) = torch.autograd.grad(z.gather(1, y[i : i + batch_size, None]).sum(), xi)
        parts.append(g.detach())
    return torch.cat(parts)


def plot_saliency(data: Data, *, max_rows: int = 6) -> Figure:
    """Rows: inputs; columns: the input, the gradient, gradient × input (signed, diverging
    colormap around 0 with labelled colorbars; channels summed) and SmoothGrad's magnitude
    (grey, max |·| over channels)."""
    x = as_tensor(data["x"])
    n = min(int(x.shape[0]), max_rows)
    titles = (
        "input",
        "gradient ∂z_y/∂x",
        "gradient × input",
        f"|SmoothGrad| (n={data['n']}, σ={data['sigma']:g})",
    )
    fig, axes = plt.subplots(
        n, 4, figsize=(9.6, 2.2 * n + 0.6), squeeze=False, layout="constrained"
    )
    bounds = tuple(data.get("bounds", (0.0, 1.0)))
    y, pred = as_tensor(data["y"]), as_tensor(data["pred"])
    for i in range(n):
        show_input(axes[i, 0], x[i], bounds)
        axes[i, 0].set_ylabel(
            f"{image_name(data, i)}: class y={int(y[i])}\n(pred {int(pred[i])})", fontsize=8
        )
        for j, key in ((1, "gradient"), (2, "gradient_x_input")):
            m = channel_reduce(as_tensor(data[key])[i].float(), "sum")
            im = signed_map(axes[i, j], m)
            fig.colorbar(im, ax=axes[i, j], shrink=0.8).set_label(
                "∂z_y/∂x (logit / pixel unit)" if j == 1 else "x·∂z_y/∂x (logit)", fontsize=7
            )
        sg = channel_reduce(as_tensor(data["smoothgrad"])[i].float(), "maxabs").numpy()
        im = axes[i, 3].imshow(sg, cmap="gray", vmin=0, vmax=float(sg.max()) or 1.0)
        no_ticks(axes[i, 3])
        fig.colorbar(im, ax=axes[i, 3], shrink=0.8).set_label(
            "|mean ∂z_y/∂x| (logit / pixel unit)", fontsize=7
        )
    for j, t in enumerate(titles):
        axes[0, j].set_title(t, fontsize=8)
    notes = ("pixel units", "signed; channels summed", "signed; channels summed",
             "max |·| over channels")  # fmt: skip
    for j, note in enumerate(notes):
        axes[n - 1, j].set_xlabel(note, fontsize=7)
    fig.suptitle("Saliency of the class logit z_y w.r.t. the input", fontsize=10)
    return fig


# ---------------------------------------------------------------------------- layer shift
def compute_layer_shift(
    clf: Classifier, x: Tensor, x_adv: Tensor, *, layers: Sequence[str] | None = None
) -> Data:
    """How ``x_adv - x`` propagates: per layer and input, the L2 norm of the activation change
    ``||a(x_adv) - a(x)||_2``, relative to ``||a(x)||_2``; the first entry is the input itself.

    Returns ``{"layers" ["input", ...], "types", "relative" (L, N), "absolute" (L, N),
    "clean_norm" (L, N), "diff" {layer: (N, ...)}, "x", "x_adv", "pred", "pred_adv"}``. An
    entry whose clean activation is all zero has relative change ``inf`` (``0`` when it does
    not change either).
    """
    check_batch(clf, x)
    check_batch(clf, x_adv, "x_adv")
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must match; got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    clean, types, logits = record(clf, x, layers)
    adv, _, logits_adv = record(clf, x_adv, layers)
    diff = {"input": cpu(x_adv - x).float()} | {k: adv[k] - clean[k] for k in clean}
    ref = {"input": cpu(x).float()} | clean
    absolute = torch.stack([diff[k].flatten(1).norm(dim=1) for k in diff])  # (L, N)
    clean_norm = torch.stack([ref[k].flatten(1).norm(dim=1) for k in diff])
    relative = torch.where(
        absolute == 0, torch.zeros_like(absolute), absolute / clean_norm.clamp_min(0.0)
    )
    return {
        "layers": list(diff),
        "types": {"input": "input"} | types,
        "relative": relative,
        "absolute": absolute,
        "clean_norm": clean_norm,
        "diff": diff,
        "x": cpu(x),
        "x_adv": cpu(x_adv),
        "bounds": list(clf.bounds),
        "pred": pred_conf(logits)[0],
        "pred_adv": pred_conf(logits_adv)[0],
    }


def plot_layer_shift(data: Data, *, title: str = "") -> Figure:
    """Relative activation change per layer: one thin dashed grey line per input and their
    mean in black with markers (log scale when the values span more than 50×). The title names
    ``data["attack"]`` and ``data["eps"]`` when the data records them (the command line does)."""
    rel = as_tensor(data["relative"]).float()  # (L, N)
    names = list(data["layers"])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(names) + 2), 4.2), layout="constrained")
    pos = np.arange(len(names))
    finite = torch.where(torch.isfinite(rel), rel, torch.nan)
    for i in range(rel.shape[1]):
        ax.plot(pos, finite[:, i].numpy(), "--", color="0.6", linewidth=0.8,
                label="single input" if i == 0 else None)  # fmt: skip
    mean = torch.nanmean(finite, dim=1).numpy()
    ax.plot(pos, mean, "-o", color="black", linewidth=1.8, label=f"mean over {rel.shape[1]}")
    positive = mean[np.isfinite(mean) & (mean > 0)]
    if positive.size and positive.max() / positive.min() > 50:
        ax.set_yscale("log")
    ax.set_xticks(pos, [f"{n}\n({data['types'].get(n, '')})" for n in names], rotation=45,
                  ha="right", fontsize=7)  # fmt: skip
    ax.set_xlabel("layer (execution order)")
    ax.set_ylabel("relative change ‖a(x′) − a(x)‖₂ / ‖a(x)‖₂")
    ax.grid(True, color="0.9")
    ax.legend(fontsize=8)
    if not title:
        title = "How the perturbation shifts activations, layer by layer"
        if data.get("attack"):
            eps = data.get("eps")
            title += f" ({data['attack']}" + (f", eps {eps:g})" if eps is not None else ")")
    ax.set_title(title, fontsize=10)
    return fig


def plot_shift_maps(data: Data, *, index: int = 0, max_maps: int = 8) -> Figure:
    """For input ``index``: clean and perturbed input and their difference, then one row per
    layer of the activation difference ``a(x′) − a(x)`` (diverging colormap around 0, labelled
    colorbar per layer; dense layers as difference vs unit)."""
    names = [n for n in data["layers"] if n != "input"]
    rows = [(f"{n} ({data['types'][n]})", as_tensor(data["diff"][n])[index]) for n in names]
    fig, axes = _layers_figure(rows, 3, signed=True, label="a(x′) − a(x) (a.u.)",
                               max_maps=max_maps)  # fmt: skip
    bounds = tuple(data.get("bounds", (0.0, 1.0)))
    x, xa = as_tensor(data["x"])[index], as_tensor(data["x_adv"])[index]
    show_input(axes[0], x, bounds)
    axes[0].set_xlabel(f"x: pred {int(as_tensor(data['pred'])[index])}", fontsize=8)
    show_input(axes[1], xa, bounds)
    axes[1].set_xlabel(f"x′: pred {int(as_tensor(data['pred_adv'])[index])}", fontsize=8)
    im = signed_map(axes[2], channel_reduce((xa - x).float(), "sum"))
    axes[2].set_xlabel("x′ − x", fontsize=8)
    fig.colorbar(im, ax=axes[2], shrink=0.9).set_label("pixel units", fontsize=7)
    fig.suptitle(
        f"Activation difference, adversarial minus clean (input {image_name(data, index)})",
        fontsize=10,
    )
    return fig


__all__ = [
    "compute_activations",
    "compute_filters",
    "compute_layer_shift",
    "compute_saliency",
    "plot_activations",
    "plot_filters",
    "plot_layer_shift",
    "plot_saliency",
    "plot_shift_maps",
    "record",
]
