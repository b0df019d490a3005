"""``advlab visualize KIND``: draw one kind of figure for a checkpoint (or an untrained zoo
preset) and save the PNG (SVG too for line plots) and the data it was drawn from.

    advlab visualize triptych --checkpoint runs/lenet --attack fgsm --eps 0.25 --out figs/
    advlab visualize curves --reports a/report.json b/report.json --out figs/
    advlab visualize triptych --from figs/data.pt --out figs2/     # redraw, nothing re-run
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from advlab import attacks as alattacks
from advlab import data as aldata
from advlab import models as almodels
from advlab.cli.common import CLIError, add_common, add_set, parse_overrides
from advlab.reporting import visualize as vis
from advlab.reporting.plots import save_figure
from advlab.utils.device import resolve_device

# kind -> (compute function, default number of images, figures: [(file stem, plot, svg?)])
Plot = Callable[[dict[str, Any]], Figure]
KINDS: dict[str, tuple[Callable[..., dict[str, Any]], int, list[tuple[str, Plot, bool]]]] = {
    "filters": (vis.compute_filters, 0, [("filters", vis.plot_filters, False)]),
    "activations": (vis.compute_activations, 1, [("activations", vis.plot_activations, False)]),
    "saliency": (vis.compute_saliency, 4, [("saliency", vis.plot_saliency, False)]),
    "shift": (
        vis.compute_layer_shift,
        8,
        [("shift", vis.plot_layer_shift, True), ("shift_maps", vis.plot_shift_maps, False)],
    ),
    "triptych": (vis.compute_triptych, 3, [("triptych", vis.plot_triptych, False)]),
    "eps-grid": (vis.compute_eps_grid, 5, [("eps_grid", vis.plot_eps_grid, False)]),
    "fooling": (vis.compute_fooling_images, 0, [("fooling", vis.plot_fooling_images, False)]),
    "linearity": (vis.compute_linearity, 1, [("linearity", vis.plot_linearity, True)]),
    "curves": (vis.compute_robustness_curves, 0, [("curves", vis.plot_robustness_curves, True)]),
}
ATTACK_KINDS = ("shift", "triptych", "eps-grid", "fooling")
DEFAULT_ATTACK = {"shift": "fgsm", "triptych": "fgsm", "eps-grid": "fgsm", "fooling": "bim"}
DEFAULT_EPS_GRID = [0.05, 0.1, 0.2, 0.3]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "visualize",
        help="draw filters, activations, saliency, attack triptychs, eps grids, fooling images, "
        "the linearity picture or robustness curves; saves PNG + data",
        description="Draw one figure kind; writes KIND.png (and .svg for line plots) and the "
        "data it was drawn from (data.pt, or data.json for curves) to --out.",
    )
    p.add_argument("kind", choices=list(KINDS), metavar="KIND", help=", ".join(KINDS))
    model = p.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", type=Path, help="checkpoint folder")
    model.add_argument(
        "--model", help="zoo preset, untrained (randomly initialised from --seed): a demo"
    )
    p.add_argument(
        "--data", help="dataset (digits, mnist, ...); default: the checkpoint's, or digits"
    )
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--index", type=int, default=0, help="first image of the split (default 0)")
    p.add_argument("--n", type=int, help="number of images (default depends on KIND)")
    p.add_argument("--attack", help="attack name (default fgsm; fooling: bim)")
    p.add_argument(
        "--eps",
        type=float,
        nargs="+",
        help="pixel units; eps-grid: the columns (default 0.05 0.1 0.2 0.3); linearity: the "
        "half-range (default 0.5); triptych/shift/fooling: the budget",
    )
    p.add_argument("--target", help="triptych/eps-grid: least-likely, random or a class index")
    p.add_argument("--reports", type=Path, nargs="+", help="curves: report JSON files/folders")
    p.add_argument("--labels", nargs="+", help="curves: one legend label per report")
    p.add_argument("--from", dest="from_data", type=Path, help="redraw from a saved data file")
    p.add_argument("--svg", action="store_true", help="also write SVG for the image figures")
    add_set(p, "sigma=0.2 (a compute_* option, else an attack hyperparameter)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_common(p)
    p.set_defaults(run=run)


def _model(args: argparse.Namespace, device: torch.device) -> tuple[almodels.Classifier, str]:
    if args.checkpoint is not None:
        clf = almodels.load(args.checkpoint, device=device)
        dataset = args.data or almodels.read_meta(args.checkpoint).get("dataset") or ""
        return clf, dataset
    if args.model is None:
        raise CLIError(f"{args.kind} needs a model: pass --checkpoint DIR or --model PRESET")
    dataset = args.data or "digits"
    sample = aldata.load(dataset, args.split, data_dir=args.data_dir)
    with torch.random.fork_rng(devices=[]):  # the demo's initial weights, global RNG untouched
        torch.manual_seed(args.seed or 0)
        clf = almodels.build(
            args.model, input_shape=tuple(sample.x.shape[1:]), num_classes=sample.num_classes
        )
    return clf.eval().to(device), dataset


def _images(
    args: argparse.Namespace, dataset: str, n_default: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images ``--index`` .. ``--index + n - 1`` of the split, their labels and indices."""
    if not dataset:
        raise CLIError("the checkpoint does not record its dataset; pass --data")
    n = n_default if args.n is None else args.n
    if n < 1 or args.index < 0:
        raise CLIError(f"--n must be >= 1 and --index >= 0; got --n {n}, --index {args.index}")
    split = aldata.load(dataset, args.split, data_dir=args.data_dir)
    if args.index + n > len(split.y):
        raise CLIError(
            f"--index {args.index} + --n {n} is past the end of {dataset}/{args.split} "
            f"({len(split.y)} images)"
        )
    part = split.subset(slice(args.index, args.index + n))
    return part.x.to(device), part.y.to(device), torch.arange(args.index, args.index + n)


def _split_overrides(
    args: argparse.Namespace, compute: Callable[..., Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` keys that are options of the compute function, and the rest (attack options)."""
    known = [
        k
        for k, prm in inspect.signature(compute).parameters.items()
        if prm.kind is inspect.Parameter.KEYWORD_ONLY and k != "attack_kwargs"
    ]
    own: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in parse_overrides(args.overrides).items():
        (own if key in known else rest)[key] = value
    if rest and args.kind not in ATTACK_KINDS:
        raise CLIError(
            f"unknown option(s) {', '.join(sorted(rest))} for {args.kind}; known: "
            f"{', '.join(known) or 'none'}"
        )
    return own, rest


def _target(spec: str | None) -> Any:
    if spec is None or spec in ("least-likely", "random"):
        return spec
    try:
        return int(spec)
    except ValueError:
        raise CLIError(
            f"--target must be least-likely, random or a class index; got {spec!r}"
        ) from None


def _one_eps(args: argparse.Namespace) -> dict[str, float]:
    if args.eps is None:
        return {}
    if len(args.eps) != 1:
        raise CLIError(f"{args.kind} takes one --eps; got {len(args.eps)}")
    return {"eps": args.eps[0]}


def _compute(args: argparse.Namespace) -> dict[str, Any]:
    compute, n_default, _ = KINDS[args.kind]
    own, attack_kw = _split_overrides(args, compute)
    if args.kind == "curves":
        if not args.reports:
            raise CLIError("curves needs --reports a.json [b.json ...]")
        return vis.compute_robustness_curves(args.reports, labels=args.labels, **own)
    device = resolve_device(args.device)
    clf, dataset = _model(args, device)
    seed = args.seed if args.seed is not None else 0
    attack: str = args.attack or DEFAULT_ATTACK.get(args.kind, "fgsm")
    if args.kind == "filters":
        return vis.compute_filters(clf, **own)
    if args.kind == "fooling":
        kw: dict[str, Any] = {"attack": attack, "seed": seed, **_one_eps(args)}
        return vis.compute_fooling_images(clf, attack_kwargs=attack_kw, **(kw | own))
    x, y, idx = _images(args, dataset, n_default, device)
    tag = {"dataset": dataset, "split": args.split}
    if args.kind == "activations":
        return vis.compute_activations(clf, x, **own) | tag | {"indices": idx}
    if args.kind == "saliency":
        return vis.compute_saliency(clf, x, y, **({"seed": seed} | own)) | tag | {"indices": idx}
    if args.kind == "linearity":
        return vis.compute_linearity(clf, x, y, **(_one_eps(args) | own)) | tag | {"indices": idx}
    target = _target(args.target)
    if isinstance(target, int):
        keep = y != target
        if not bool(keep.any()):
            raise CLIError(f"every selected image is of class {target}; pick other images")
        x, y, idx = x[keep], y[keep], idx[keep.cpu()]
        target = torch.full_like(y, target)
    tag["indices"] = idx
    if args.kind == "eps-grid":
        eps = args.eps or DEFAULT_EPS_GRID
        kw = {"seed": seed} | attack_kw
        return vis.compute_eps_grid(clf, x, y, attack, eps, attack_kwargs=kw, target=target) | tag
    atk = alattacks.build(attack, **({"seed": seed} | _one_eps(args) | attack_kw))
    if args.kind == "triptych":
        return vis.compute_triptych(clf, x, y, atk, target=target) | tag
    x_adv = atk(clf, x, y, target=target).x_adv  # shift
    made_by = {"attack": atk.name, "eps": getattr(atk, "eps", None)}
    return vis.compute_layer_shift(clf, x, x_adv, **own) | tag | made_by


def run(args: argparse.Namespace) -> int:
    _, _, figures = KINDS[args.kind]
    out: Path = args.out
    written: list[Path] = []
    if args.from_data is not None:
        data = vis.load_data(args.from_data)
        if data.get("kind", args.kind) != args.kind:
            raise CLIError(
                f"{args.from_data} holds data of a {data['kind']} figure, not {args.kind}"
            )
    else:
        data = {"kind": args.kind} | _compute(args)
        out.mkdir(parents=True, exist_ok=True)
        name = "data.json" if args.kind == "curves" else "data.pt"
        written.append(vis.save_data(data, out / name))
    out.mkdir(parents=True, exist_ok=True)
    for stem, plot, svg in figures:
        try:
            fig = plot(data)
        except (KeyError, IndexError) as e:
            raise CLIError(f"the data does not fit a {args.kind} figure (missing {e})") from None
        paths = [out / f"{stem}.png"] + ([out / f"{stem}.svg"] if svg or args.svg else [])
        save_figure(fig, *paths)
        written += paths
    for path in written:
        print(path)
    return 0
