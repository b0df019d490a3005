"""``advlab attack``: run one attack on a checkpoint's test data and save everything."""

from __future__ import annotations

import argparse
import csv
import io
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from advlab import attacks as alattacks
from advlab import data as aldata
from advlab import models as almodels
from advlab.attacks import AttackResult
from advlab.attacks.base import TargetSpec
from advlab.cli.common import CLIError, add_common, add_set, parse_overrides
from advlab.evaluation import attack_dataset, attack_summary
from advlab.reporting import plot_adversarial_grid
from advlab.utils.device import resolve_device
from advlab.utils.files import atomic_write_json, atomic_write_text
from advlab.utils.metrics import perturbation_norms

logger = logging.getLogger("advlab")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("attack", help="attack a checkpoint; saves examples, CSV, summary, figure")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint folder")
    p.add_argument("--attack", required=True, help="attack name (advlab list attacks)")
    p.add_argument("--eps", type=float, help="budget in pixel units (budget attacks)")
    p.add_argument("--steps", type=int)
    p.add_argument("--step-size", type=float)
    p.add_argument("--norm", choices=["linf", "l2", "l1", "l0"])
    p.add_argument("--target", help="least-likely, random, or a class index")
    p.add_argument("--n", type=int, default=1000, help="first N test images (default 1000)")
    p.add_argument("--dataset", help="default: the checkpoint's dataset")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument(
        "--queries",
        type=int,
        help="query budget per image for query-based attacks (square: n_queries, hsja: "
        "max_queries)",
    )
    p.add_argument(
        "--access",
        choices=["full", "scores", "labels"],
        default="full",
        help="what the attack may see of the model: full (white-box, default), scores or labels "
        "only (query_access: forward queries counted, gradients refused)",
    )
    p.add_argument(
        "--surrogate",
        type=Path,
        help="checkpoint of a surrogate model: craft on it, score on --checkpoint (transfer)",
    )
    p.add_argument(
        "--eot",
        type=int,
        help="attack through Expectation over Transformation with N samples per query (for "
        "randomized models; with --print-photo, over the print-and-photo simulator)",
    )
    p.add_argument(
        "--print-photo",
        action="store_true",
        help="attack and score the model behind the simulated print-and-photo channel",
    )
    add_set(p, "restarts=5")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_common(p)
    p.set_defaults(run=run)


def _attack_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {
        k: v
        for k in ("eps", "steps", "step_size", "norm", "seed")
        if (v := getattr(args, k)) is not None
    }
    kw.update(parse_overrides(args.overrides))
    return kw


def _target(spec: str | None, y: torch.Tensor) -> tuple[TargetSpec, torch.Tensor]:
    """The target spec and the mask of samples to keep (a class target drops its own class)."""
    keep = torch.ones_like(y, dtype=torch.bool)
    if spec is None or spec in ("least-likely", "random"):
        return spec, keep  # type: ignore[return-value]
    try:
        k = int(spec)
    except ValueError:
        raise CLIError(
            f"--target must be least-likely, random or a class index; got {spec!r}"
        ) from None
    keep = y != k
    return torch.full_like(y, k), keep


def _save_csv(path: Path, res: AttackResult, clean_pred: torch.Tensor, x: torch.Tensor) -> None:
    norms = perturbation_norms(res.x_adv - x)
    conf = torch.softmax(res.logits_adv.float(), 1).max(1).values
    rows: list[list[object]] = [
        [
            "index",
            "label",
            "target",
            "clean_pred",
            "adv_pred",
            "success",
            "confidence_adv",
            "l0",
            "l1",
            "l2",
            "linf",
            "queries",
            "gradients",
        ]
    ]
    adv_pred = res.logits_adv.argmax(1)
    for i in range(len(res)):
        rows.append(
            [
                i,
                int(res.y[i]),
                "" if res.target is None else int(res.target[i]),
                int(clean_pred[i]),
                int(adv_pred[i]),
                int(res.success[i]),
                f"{float(conf[i]):.6f}",
                *(f"{float(norms[k][i]):.6g}" for k in ("l0", "l1", "l2", "linf")),
                int(res.queries[i]),
                int(res.gradients[i]),
            ]
        )
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    atomic_write_text(path, buf.getvalue())


_QUERY_BUDGET = {"square": "n_queries", "hsja": "max_queries"}


def _build_attack(args: argparse.Namespace, device: torch.device) -> alattacks.Attack:
    kwargs = _attack_kwargs(args)
    if args.queries is not None:
        key = _QUERY_BUDGET.get(args.attack)
        if key is None:
            raise CLIError(
                f"--queries applies to {', '.join(sorted(_QUERY_BUDGET))}; for {args.attack} "
                "use --steps or --set"
            )
        kwargs[key] = args.queries
    atk = alattacks.build(args.attack, **kwargs)
    if args.surrogate is not None:
        atk = alattacks.TransferAttack(almodels.load(args.surrogate, device=device), atk)
    return atk


def _threat_model(args: argparse.Namespace, clf: almodels.Classifier) -> almodels.Classifier:
    """The model as the attack sees it: behind the print-and-photo channel, through EOT, or
    behind query-only access."""
    if args.print_photo:
        clf = alattacks.photographed(clf, alattacks.PrintPhoto(), seed=args.seed or 0)
    if args.eot is not None:
        if args.eot < 1:
            raise CLIError(f"--eot must be >= 1; got {args.eot}")
        clf = almodels.eot(clf, args.eot)
    if args.access != "full":
        clf = almodels.query_access(clf, args.access)
    return clf


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    atk = _build_attack(args, device)
    meta = almodels.read_meta(args.checkpoint)
    dataset = args.dataset or meta.get("dataset")
    if not dataset:
        raise CLIError("the checkpoint does not record its dataset; pass --dataset")
    if args.n < 1:
        raise CLIError(f"--n must be >= 1; got {args.n}")
    clf = _threat_model(args, almodels.load(args.checkpoint, device=device))
    test = aldata.load(dataset, args.split, data_dir=args.data_dir).subset(slice(0, args.n))
    target, keep = _target(args.target, test.y)
    x, y = test.x[keep], test.y[keep]
    if isinstance(target, torch.Tensor):
        target = target[keep]
        logger.info("target %s: skipping %d images of that class", args.target, int((~keep).sum()))
    with torch.no_grad():
        clean_pred = clf.predict(x.to(device)).cpu()
    res, seconds = attack_dataset(
        clf, atk, x, y, target=target, batch_size=args.batch_size, device=device
    )
    summary = attack_summary(res, x, clean_pred, seconds, atk)
    summary.update(
        {
            "checkpoint": str(args.checkpoint),
            "dataset": dataset,
            "split": args.split,
            "device": str(device),
            "access": args.access,
            "surrogate": None if args.surrogate is None else str(args.surrogate),
            "eot": args.eot,
            "print_photo": args.print_photo,
        }
    )
    if isinstance(clf, almodels.QueryModel):
        summary["model_queries"] = clf.queries  # every query the model answered, all batches
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "summary.json", summary)
    _save_csv(out / "samples.csv", res, clean_pred, x)
    tensors = {"x_adv": res.x_adv.contiguous(), "y": res.y, "adv_pred": res.logits_adv.argmax(1)}
    if res.target is not None:
        tensors["target"] = res.target
    save_file(tensors, str(out / "adversarial.safetensors"))
    _figure(out / "grid.png", x, res, clean_pred, clf, test.class_names, summary)
    print(
        f"{atk.name} on {len(res)} {dataset} images: clean accuracy "
        f"{100 * summary['clean_accuracy']:.1f}%, accuracy under attack "
        f"{100 * summary['accuracy_under_attack']:.1f}%, success rate "
        f"{100 * summary['attack_success_rate']:.1f}%, mean confidence "
        f"{100 * summary['mean_confidence_adv']:.1f}%, {seconds:.1f} s; wrote {out}"
    )
    return 0


def _figure(
    path: Path,
    x: torch.Tensor,
    res: AttackResult,
    clean_pred: torch.Tensor,
    clf: almodels.Classifier,
    names: tuple[str, ...],
    summary: dict[str, Any],
) -> None:
    flipped = (res.logits_adv.argmax(1) != clean_pred).nonzero().squeeze(1)
    idx = torch.cat([flipped, (res.logits_adv.argmax(1) == clean_pred).nonzero().squeeze(1)])[:6]
    with torch.no_grad():
        p_clean = torch.softmax(clf.logits(x[idx].to(clf.device)).float().cpu(), 1)
    p_adv = torch.softmax(res.logits_adv[idx].float(), 1)

    def caption(p: torch.Tensor) -> list[str]:
        return [f"{names[int(r.argmax())]} ({100 * float(r.max()):.1f}%)" for r in p]

    eps = summary["config"].get("eps")
    title = f"{summary['attack']}" + (f", eps={eps:g}" if eps is not None else "")
    plot_adversarial_grid(
        x[idx], res.x_adv[idx], caption(p_clean), caption(p_adv), path, title=title
    )
