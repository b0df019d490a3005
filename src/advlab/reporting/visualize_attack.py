"""Pictures of attacks: the *x + amplified perturbation = x_adv* triptych, grids over eps,
fooling images grown from noise, the linearity picture of Goodfellow et al. 2015, and robustness
curves of several models on one figure.

Each figure is a ``compute_*`` (runs the model and, where needed, an advlab attack; returns a
dict of tensors, numbers and strings) and a ``plot_*`` (that dict -> ``Figure``). Attacks leave
the model's mode and parameters as they were; inputs are never mutated.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from itertools import cycle
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import Tensor

from advlab import attacks as alattacks
from advlab.attacks import Attack
from advlab.attacks.base import TargetSpec
from advlab.evaluation.report import RobustnessReport
from advlab.models import Classifier
from advlab.reporting.fmt import eps_axis_label, norm_name
from advlab.reporting.visualize_common import (
    MARKERS,
    STYLES,
    Data,
    amplified,
    as_tensor,
    check_batch,
    cpu,
    frozen,
    image_name,
    labels_or_pred,
    logits_of,
    pred_conf,
    show_input,
)

AttackSpec = str | Callable[[float], Attack]


def _build(attack: AttackSpec, eps: float, kwargs: Mapping[str, Any] | None) -> Attack:
    if callable(attack) and not isinstance(attack, str):
        return attack(eps)
    return alattacks.build(attack, eps=eps, **dict(kwargs or {}))


def _caption(pred: int, conf: float) -> str:
    return f"{pred} ({100 * conf:.1f}%)"


# -------------------------------------------------------------------------------- triptych
def compute_triptych(
    clf: Classifier,
    x: Tensor,
    y: Tensor,
    attack: Attack,
    *,
    target: TargetSpec = None,
) -> Data:
    """Run ``attack`` on ``x`` ``(N, ...)`` with labels ``y`` (targeted when ``target`` is
    given) and keep what the triptych shows: ``{"x", "x_adv", "y", "target", "pred",
    "confidence", "pred_adv", "confidence_adv", "attack", "eps", "norm", "linf", "success"}``
    (predictions and softmax confidences on the clean and adversarial inputs)."""
    if not isinstance(attack, Attack):
        raise TypeError(f"attack must be an advlab Attack; got {type(attack).__name__}")
    check_batch(clf, x)
    pred, conf = pred_conf(logits_of(clf, x))
    res = attack(clf, x, y, target=target)
    pred_adv, conf_adv = pred_conf(res.logits_adv)
    return {
        "x": cpu(x),
        "x_adv": cpu(res.x_adv),
        "bounds": list(clf.bounds),
        "y": cpu(res.y),
        "target": None if res.target is None else cpu(res.target),
        "pred": pred,
        "confidence": conf,
        "pred_adv": pred_adv,
        "confidence_adv": conf_adv,
        "success": cpu(res.success),
        "linf": cpu((res.x_adv - x).flatten(1).abs().amax(1)),
        "attack": res.attack,
        "eps": res.eps,
        "norm": res.norm,
    }


def _symbol(ax: Axes, text: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=22, transform=ax.transAxes)


def plot_triptych(data: Data, *, max_rows: int = 4) -> Figure:
    """Rows of ``x + amplified perturbation = x_adv``: captions give the true label, the
    prediction and its confidence; the perturbation is rescaled around mid-grey (0 = grey) by
    the factor stated under it, with its Linf size."""
    x, xa = as_tensor(data["x"]), as_tensor(data["x_adv"])
    n = min(int(x.shape[0]), max_rows)
    fig = plt.figure(figsize=(7.6, 2.5 * n + 0.5), layout="constrained")
    grid = fig.add_gridspec(n, 5, width_ratios=[1, 0.28, 1, 0.28, 1])
    bounds = tuple(data.get("bounds", (0.0, 1.0)))
    y = as_tensor(data["y"])
    tgt = data.get("target")
    for i in range(n):
        ax_x, ax_d, ax_a = (fig.add_subplot(grid[i, j]) for j in (0, 2, 4))
        _symbol(fig.add_subplot(grid[i, 1]), "+")
        _symbol(fig.add_subplot(grid[i, 3]), "=")
        show_input(ax_x, x[i], bounds)
        clean = _caption(int(as_tensor(data["pred"])[i]), float(as_tensor(data["confidence"])[i]))
        ax_x.set_title(f"x: “{clean}”", fontsize=9)
        ax_x.set_xlabel(f"true label {int(y[i])}", fontsize=8)
        ax_x.set_ylabel(image_name(data, i), fontsize=8)
        amp, factor = amplified((xa[i] - x[i]).float())
        show_input(ax_d, amp, (0.0, 1.0))
        linf = float((xa[i] - x[i]).abs().max())
        ax_d.set_title(f"perturbation ×{factor:.3g}" if factor else "no perturbation", fontsize=9)
        ax_d.set_xlabel(f"Linf {linf:.3g} (pixel units)", fontsize=8)
        show_input(ax_a, xa[i], bounds)
        pa, ca = as_tensor(data["pred_adv"])[i], as_tensor(data["confidence_adv"])[i]
        adv = _caption(int(pa), float(ca))
        ax_a.set_title(f"x_adv: “{adv}”", fontsize=9)
        ax_a.set_xlabel(
            "target " + str(int(as_tensor(tgt)[i])) if tgt is not None else "untargeted", fontsize=8
        )
    eps = data.get("eps")
    budget = f", {norm_name(data.get('norm'))} eps {eps:g}" if eps is not None else ""
    fig.suptitle(
        f"{data['attack']}{budget}: prediction (confidence); the perturbation is amplified "
        "for display (mid-grey = 0)",
        fontsize=9,
    )
    return fig


# -------------------------------------------------------------------------------- eps grid
def compute_eps_grid(
    clf: Classifier,
    x: Tensor,
    y: Tensor,
    attack: AttackSpec,
    eps: Sequence[float],
    *,
    attack_kwargs: Mapping[str, Any] | None = None,
    target: TargetSpec = None,
) -> Data:
    """Run the attack at each eps (an attack name built with ``advlab.attacks.build(name,
    eps=e, **attack_kwargs)``, or a function ``eps -> Attack``).

    Returns ``{"x" (N, ...), "y", "eps" (E,), "x_adv" (N, E, ...), "pred" (N, E),
    "confidence" (N, E), "pred_clean", "confidence_clean", "attack", "norm"}``.
    """
    check_batch(clf, x)
    eps_list = [float(e) for e in eps]
    if not eps_list or any(not e >= 0 for e in eps_list):
        raise ValueError(f"eps must be a non-empty list of numbers >= 0; got {list(eps)}")
    pred0, conf0 = pred_conf(logits_of(clf, x))
    advs, preds, confs, name, norm = [], [], [], "", ""
    for e in eps_list:
        res = _build(attack, e, attack_kwargs)(clf, x, y, target=target)
        p, c = pred_conf(res.logits_adv)
        advs.append(cpu(res.x_adv))
        preds.append(p)
        confs.append(c)
        name, norm = res.attack, res.norm
    return {
        "x": cpu(x),
        "bounds": list(clf.bounds),
        "y": cpu(y),
        "eps": torch.tensor(eps_list),
        "x_adv": torch.stack(advs, 1),
        "pred": torch.stack(preds, 1),
        "confidence": torch.stack(confs, 1),
        "pred_clean": pred0,
        "confidence_clean": conf0,
        "attack": name,
        "norm": norm,
    }


def _mark(ax: Axes, p: int, c: float, wrong: bool) -> None:
    """Caption a cell; a misclassified one gets a leading ✗, bold text and a thick dashed
    frame (a plain black frame would vanish against the black border of a digit)."""
    ax.set_xlabel(("✗ " if wrong else "") + _caption(p, c), fontsize=7, labelpad=1,
                  fontweight="bold" if wrong else "normal")  # fmt: skip
    for spine in ax.spines.values():
        spine.set_linewidth(2.5 if wrong else 0.5)
        spine.set_linestyle((0, (2, 1)) if wrong else "-")
        spine.set_edgecolor("0.45" if wrong else "black")


def plot_eps_grid(data: Data, *, max_rows: int = 8) -> Figure:
    """Rows: inputs; columns: clean, then the attack at each eps. Each cell is captioned with
    the prediction (confidence); a misclassified cell is marked ✗ with a thick dashed frame."""
    x, xa = as_tensor(data["x"]), as_tensor(data["x_adv"])
    eps = as_tensor(data["eps"]).tolist()
    n, cols = min(int(x.shape[0]), max_rows), len(eps) + 1
    fig, axes = plt.subplots(
        n, cols, figsize=(1.55 * cols + 0.8, 1.75 * n + 0.7), squeeze=False, layout="constrained"
    )
    bounds = tuple(data.get("bounds", (0.0, 1.0)))
    y, pred, conf = as_tensor(data["y"]), as_tensor(data["pred"]), as_tensor(data["confidence"])
    p0, c0 = as_tensor(data["pred_clean"]), as_tensor(data["confidence_clean"])
    for i in range(n):
        cells = [(x[i], int(p0[i]), float(c0[i]))] + [
            (xa[i, j], int(pred[i, j]), float(conf[i, j])) for j in range(len(eps))
        ]
        for j, (img, p, c) in enumerate(cells):
            ax = axes[i, j]
            show_input(ax, img, bounds)
            _mark(ax, p, c, p != int(y[i]))
        axes[i, 0].set_ylabel(f"{image_name(data, i)} (true {int(y[i])})", fontsize=8)
    for j, e in enumerate(eps):
        axes[0, j + 1].set_title(f"eps = {e:g}", fontsize=8)
    axes[0, 0].set_title("clean", fontsize=8)
    fig.suptitle(
        f"{data['attack']}, columns: {eps_axis_label(data.get('norm'))}; caption: prediction "
        "(confidence); ✗ and dashed frame = misclassified",
        fontsize=8,
    )
    return fig


# --------------------------------------------------------------------------- fooling images
def compute_fooling_images(
    clf: Classifier,
    *,
    classes: Sequence[int] | None = None,
    per_class: int = 1,
    noise: str = "uniform",
    attack: str = "bim",
    eps: float = 0.5,
    steps: int = 50,
    step_size: float = 0.02,
    attack_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> Data:
    """Fooling images from noise (Goodfellow et al. 2015, Fig. 7 "rubbish class examples";
    Nguyen et al. 2015): start from noise and run a targeted iterative attack towards each
    class, then report the model's confidence in it.

    Noise: ``"uniform"`` over the bounds, or ``"gaussian"`` (mid-range mean, std a quarter of
    the range, clipped), from a private generator seeded by ``seed``. The attack is
    ``advlab.attacks.build(attack, eps=eps, steps=steps, step_size=step_size,
    **attack_kwargs)`` ("bim" or "pgd"), targeted, with a large default eps (0.5, 50 steps of
    0.02) so that the image can change a lot. Deviation: Goodfellow et al. used one FGSM step,
    Nguyen et al. an evolutionary search; an iterative gradient attack reaches high confidence
    on more classes.

    Returns ``{"x_noise" (M, ...), "x_fool" (M, ...), "target" (M,), "noise_pred",
    "noise_confidence", "pred", "confidence" (of pred), "target_confidence", ...}`` with
    ``M = len(classes) · per_class``.
    """
    shape = clf.input_shape
    k = clf.num_classes
    if shape is None or k is None:
        raise ValueError("the model's input_shape and num_classes must be known (run it once)")
    cls = list(range(k)) if classes is None else [int(c) for c in classes]
    if not cls or any(not 0 <= c < k for c in cls):
        raise ValueError(f"classes must be class indices in [0, {k}); got {classes!r}")
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an integer >= 1; got {per_class!r}")
    if noise not in ("uniform", "gaussian"):
        raise ValueError(f"noise must be 'uniform' or 'gaussian'; got {noise!r}")
    device = clf.device
    gen = torch.Generator().manual_seed(int(seed))
    m = len(cls) * per_class
    low, high = clf.low.cpu(), clf.high.cpu()
    if noise == "uniform":
        x0 = low + (high - low) * torch.rand((m, *shape), generator=gen)
    else:
        x0 = (low + high) / 2 + (high - low) / 4 * torch.randn((m, *shape), generator=gen)
        x0 = torch.maximum(torch.minimum(x0, high), low)
    x0 = x0.to(device)
    target = torch.tensor([c for c in cls for _ in range(per_class)], device=device)
    noise_pred, noise_conf = pred_conf(logits_of(clf, x0))
    # y only names "the current class" for the attack's checks; with a target the targeted loss
    # ignores it. Where the noise is already classified as the target, any other class serves.
    y = torch.where(noise_pred.to(device) == target, (target + 1) % k, noise_pred.to(device))
    kw = {"steps": steps, "step_size": step_size} | dict(attack_kwargs or {})
    res = alattacks.build(attack, eps=eps, **kw)(clf, x0, y, target=target)
    probs = torch.softmax(res.logits_adv.float(), 1).cpu()
    pred, conf = pred_conf(res.logits_adv)
    return {
        "x_noise": cpu(x0),
        "x_fool": cpu(res.x_adv),
        "bounds": list(clf.bounds),
        "target": cpu(target),
        "noise_pred": noise_pred,
        "noise_confidence": noise_conf,
        "pred": pred,
        "confidence": conf,
        "target_confidence": probs.gather(1, target.cpu()[:, None]).squeeze(1),
        "noise": noise,
        "attack": res.attack,
        "eps": float(eps),
        "steps": int(steps),
        "step_size": float(step_size),
        "seed": int(seed),
    }


def plot_fooling_images(data: Data, *, max_images: int = 20) -> Figure:
    """Top row: the starting noise (prediction, confidence); bottom row: the image after the
    targeted attack, captioned with the target and the model's confidence in it."""
    x0, xf = as_tensor(data["x_noise"]), as_tensor(data["x_fool"])
    m = min(int(x0.shape[0]), max_images)
    fig, axes = plt.subplots(
        2, m, figsize=(1.35 * m + 1.0, 3.7), squeeze=False, layout="constrained"
    )
    bounds = tuple(data.get("bounds", (0.0, 1.0)))
    tgt, tconf = as_tensor(data["target"]), as_tensor(data["target_confidence"])
    npred, nconf = as_tensor(data["noise_pred"]), as_tensor(data["noise_confidence"])
    for j in range(m):
        show_input(axes[0, j], x0[j], bounds)
        axes[0, j].set_xlabel(_caption(int(npred[j]), float(nconf[j])), fontsize=7, labelpad=1)
        show_input(axes[1, j], xf[j], bounds)
        axes[1, j].set_title(f"target {int(tgt[j])}", fontsize=8)
        axes[1, j].set_xlabel(f"p = {100 * float(tconf[j]):.1f}%", fontsize=7, labelpad=1)
    axes[0, 0].set_ylabel(f"{data['noise']} noise\n(pred, conf.)", fontsize=8)
    axes[1, 0].set_ylabel(f"after targeted\n{data['attack']}", fontsize=8)
    fig.suptitle(
        f"Fooling images from noise: targeted {data['attack']}, Linf eps {data['eps']:g}, "
        f"{data['steps']} steps of {data['step_size']:g}; p = model's confidence in the target",
        fontsize=8,
    )
    return fig


# ------------------------------------------------------------------------------- linearity
def compute_linearity(
    clf: Classifier,
    x: Tensor,
    y: Tensor | None = None,
    *,
    eps: float = 0.5,
    n_points: int = 41,
    clip: bool = False,
) -> Data:
    """Goodfellow et al. 2015, Fig. 4 (seed 001): the logits along the FGSM direction.

    For each input, ``d = sign(∇_x J(x, y))`` (cross-entropy, ``y`` default: the prediction)
    and the logits of ``x + e·d`` for ``n_points`` (odd, so ``e = 0`` is on the grid) values of
    ``e`` evenly spaced in ``[-eps, eps]`` (pixel units). As in the paper the points are not
    clipped to the bounds unless ``clip=True`` (clipping bends the path at the box's faces).

    Returns ``{"x", "y", "eps" (P,), "logits" (N, P, K), "direction" (N, ...), "clip"}``.
    """
    check_batch(clf, x)
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 3:
        raise ValueError(f"n_points must be an odd integer >= 3; got {n_points!r}")
    if n_points % 2 == 0:
        raise ValueError(f"n_points must be odd so that eps = 0 is sampled; got {n_points}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0; got {eps!r}")
    logits0 = logits_of(clf, x)
    y = labels_or_pred(x, y, logits0)
    half = n_points // 2
    steps = float(eps) * torch.arange(-half, half + 1, dtype=torch.float64) / half  # (P,)
    with frozen(clf):
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(clf.logits(xg), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, xg)
        d = grad.sign()
        n, p = x.shape[0], steps.numel()
        shape = (1, p, *([1] * (x.ndim - 1)))
        pts = x[:, None] + steps.to(x.dtype).to(x.device).view(shape) * d[:, None]  # (N, P, ...)
        pts = pts.flatten(0, 1)
        if clip:
            pts = torch.maximum(torch.minimum(pts, clf.high), clf.low)
        with torch.no_grad():
            z = clf.logits(pts, check=False).view(n, p, -1)
    return {
        "x": cpu(x),
        "bounds": list(clf.bounds),
        "y": cpu(y),
        "eps": steps.float(),
        "logits": cpu(z).float(),
        "direction": cpu(d),
        "clip": bool(clip),
    }


def plot_linearity(data: Data, *, index: int = 0) -> Figure:
    """Input ``index`` and the FGSM direction, beside its ``K`` logits vs eps along that
    direction: one line style/marker per class, the true class thick black and solid."""
    eps = as_tensor(data["eps"]).numpy()
    z = as_tensor(data["logits"])[index].numpy()  # (P, K)
    y = int(as_tensor(data["y"])[index])
    fig = plt.figure(figsize=(9.0, 4.4), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 3.6])
    ax_x, ax_d = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0])
    show_input(ax_x, as_tensor(data["x"])[index], tuple(data.get("bounds", (0.0, 1.0))))
    ax_x.set_title(f"x {image_name(data, index)} (true class {y})", fontsize=8)
    amp, _ = amplified(as_tensor(data["direction"])[index].float())
    show_input(ax_d, amp, (0.0, 1.0))
    ax_d.set_title("sign(∇ₓJ): black −1, white +1", fontsize=8)
    ax = fig.add_subplot(grid[:, 1])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    every = max(1, len(eps) // 8)
    others = [k for k in range(z.shape[1]) if k != y]
    for k, style, marker, color in zip(
        others, cycle(STYLES[1:]), cycle(MARKERS), cycle(colors), strict=False
    ):
        ax.plot(eps, z[:, k], linestyle=style, marker=marker, markevery=every, markersize=4,
                color=color, linewidth=1.1, label=f"class {k}")  # fmt: skip
    ax.plot(eps, z[:, y], "-", color="black", linewidth=2.8, label=f"class {y} (true)")
    ax.axvline(0.0, color="0.5", linestyle=":", linewidth=1.0)
    ax.set_xlabel("eps along sign(∇ₓJ(x, y)) (pixel units; 0 = clean input)")
    ax.set_ylabel("logit (pre-softmax score)")
    ax.grid(True, color="0.92")
    ax.legend(fontsize=7, ncol=2 if z.shape[1] > 6 else 1, loc="best")
    clip = "clipped to the bounds" if data.get("clip") else "not clipped to the bounds"
    ax.set_title(f"Logits along the fast gradient sign direction ({clip})", fontsize=9)
    return fig


# ------------------------------------------------------------------------ robustness curves
CurveSource = RobustnessReport | str | os.PathLike[str] | Mapping[str, Any]


def _curve(source: CurveSource) -> dict[str, Any]:
    if isinstance(source, Mapping) and "accuracy" in source and "eps" in source:
        eps = [float(e) for e in as_tensor(source["eps"], torch.float64).flatten().tolist()]
        acc = [float(a) for a in as_tensor(source["accuracy"], torch.float64).flatten().tolist()]
        if len(eps) != len(acc) or not eps:
            raise ValueError(f"a raw curve needs eps and accuracy of one length >= 1; got {source}")
        if any(not 0 <= a <= 1 for a in acc):
            raise ValueError("raw curve accuracy must be fractions in [0, 1]")
        return {"label": str(source.get("label", "curve")), "norm": str(source.get("norm", "linf")),
                "eps": eps, "accuracy": acc}  # fmt: skip
    if isinstance(source, Mapping):
        report = RobustnessReport(dict(source))
        label = ""
    elif isinstance(source, RobustnessReport):
        report, label = source, ""
    else:
        report, label = RobustnessReport.from_json(source), Path(source).stem
    d = report.to_dict()
    label = str((d.get("model") or {}).get("name") or label or "model")
    eps = sorted(report.eps)
    points = [(0.0, report.clean_accuracy)] + [(e, report.robust_accuracy(e)) for e in eps if e]
    return {"label": label, "norm": report.norm, "eps": [p[0] for p in points],
            "accuracy": [p[1] for p in points]}  # fmt: skip


def compute_robustness_curves(
    sources: Sequence[CurveSource], *, labels: Sequence[str] | None = None
) -> Data:
    """Accuracy vs eps for several models, from robustness reports (``RobustnessReport``
    objects, report JSON paths or dicts: clean accuracy at eps 0, then ``robust_accuracy`` at
    each evaluated eps) and/or raw curves (``{"label", "eps", "accuracy" (fractions),
    "norm"}``). ``labels`` overrides the names (default: the report's model name).

    Returns ``{"curves": [{"label", "norm", "eps", "accuracy"}, ...]}`` (lists: JSON-savable).
    """
    if not sources:
        raise ValueError("compute_robustness_curves needs at least one report or curve")
    curves = [_curve(s) for s in sources]
    if labels is not None:
        if len(labels) != len(curves):
            raise ValueError(f"got {len(labels)} labels for {len(curves)} curves")
        for c, lab in zip(curves, labels, strict=True):
            c["label"] = str(lab)
    seen: dict[str, int] = {}
    for c in curves:  # same model name twice: number them
        seen[c["label"]] = seen.get(c["label"], 0) + 1
        if seen[c["label"]] > 1:
            c["label"] = f"{c['label']} ({seen[c['label']]})"
    return {"curves": curves}


def plot_robustness_curves(data: Data, *, title: str = "") -> Figure:
    """All curves on one axis: accuracy (%) vs eps, told apart by line style and marker as well
    as colour; the norm goes into the axis label (or into each label when they differ)."""
    curves = list(data["curves"])
    norms = {c["norm"] for c in curves}
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for c, style, marker, color in zip(
        curves, cycle(STYLES), cycle(MARKERS), cycle(["black", *colors]), strict=False
    ):
        label = c["label"] if len(norms) == 1 else f"{c['label']} ({norm_name(c['norm'])})"
        eps = np.asarray(c["eps"], dtype=float)
        ax.plot(eps, 100 * np.asarray(c["accuracy"], dtype=float), linestyle=style,
                marker=marker, color=color, linewidth=1.6, label=label)  # fmt: skip
    ax.set_xlabel(eps_axis_label(norms.pop()) if len(norms) == 1 else "eps (pixel units)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.set_xlim(left=0)
    ax.grid(True, color="0.9")
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "Robust accuracy vs eps (eps 0 = clean accuracy)", fontsize=10)
    return fig
