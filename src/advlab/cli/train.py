"""``advlab train``: train a zoo model on a dataset, with checkpoints and --resume.

Under ``torchrun --nproc_per_node=N -m advlab train ...`` every process runs this command: it
joins the process group (``nccl`` on CUDA, one GPU per process, else ``gloo``), trains with
``DistributedDataParallel`` (``--batch-size`` is the global batch) and leaves it at the end;
only rank 0 logs, writes ``config.json``, the checkpoints and ``eval.json``, and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from advlab import data as aldata
from advlab import models as almodels
from advlab.cli import generative
from advlab.cli.common import CLIError, add_common, add_config, resolve
from advlab.defenses.training import Recipe, TrainConfig, build_recipe, train
from advlab.utils import dist as dist_utils
from advlab.utils.files import atomic_write_json

logger = logging.getLogger("advlab")

_TRAIN_FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
DEFAULTS: dict[str, Any] = {
    "model": "lenet",
    "dataset": "mnist",
    "recipe": "standard",
    "recipe_args": {},
    "model_args": {},
    "val_fraction": 0.1,
    "limit": None,
    "data_dir": None,
    **{k: v for k, v in TrainConfig().to_dict().items()},
}
_FLAGS = [
    "model",
    "dataset",
    "recipe",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "schedule",
    "weight_decay",
    "seed",
    "device",
    "val_fraction",
    "limit",
    "data_dir",
]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("train", help="train a model; writes a checkpoint folder every epoch")
    p.add_argument("--model", help="zoo preset (advlab list models); default lenet")
    p.add_argument("--dataset", help="dataset (advlab list datasets); default mnist")
    p.add_argument(
        "--recipe",
        "--defense",
        dest="recipe",
        help="training recipe / defense (advlab list recipes), or magnet / defense-gan with "
        "--base CKPT; default standard; hyperparameters: --eps/--steps/--alpha or "
        "--set recipe_args={...}",
    )
    p.add_argument("--eps", type=float, help="recipe's perturbation budget (pixel units)")
    p.add_argument("--steps", type=int, help="recipe's attack steps")
    p.add_argument("--alpha", type=float, help="recipe's mixing weight / step (see its docs)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--optimizer", choices=["sgd", "adam"])
    p.add_argument("--schedule", choices=["none", "step", "cosine", "cyclic"])
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--val-fraction", type=float, help="held out for validation (default 0.1)")
    p.add_argument("--limit", type=int, help="use only the first N training samples")
    p.add_argument("--out", type=Path, required=True, help="output folder (the checkpoint)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    generative.add_arguments(p)
    add_common(p)
    add_config(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = resolve(DEFAULTS, args, _FLAGS)
    model_name = str(cfg["model"])
    if not isinstance(cfg["model_args"], dict):
        raise CLIError(
            f"model_args must be a table, e.g. --set 'model_args={{units=100}}'; "
            f"got {cfg['model_args']!r}"
        )
    if model_name not in almodels.models:
        raise CLIError(f"unknown model {model_name!r}; known: {', '.join(almodels.models.names())}")
    if cfg["recipe"] in generative.GENERATIVE:
        return generative.train_generative(args, cfg)
    train_cfg = TrainConfig.from_dict({k: cfg[k] for k in _TRAIN_FIELDS})
    recipe_args = cfg["recipe_args"]
    if not isinstance(recipe_args, dict):
        raise CLIError(
            f"recipe_args must be a table, e.g. --set 'recipe_args={{eps=0.3}}'; "
            f"got {recipe_args!r}"
        )
    for flag in ("eps", "steps", "alpha"):
        if getattr(args, flag) is not None:
            recipe_args[flag] = getattr(args, flag)
    recipe = build_recipe(str(cfg["recipe"]), recipe_args)
    with dist_utils.process_group(train_cfg.device):  # no-op unless launched by torchrun
        return _train(args, cfg, train_cfg, recipe)


def _train(
    args: argparse.Namespace, cfg: dict[str, Any], train_cfg: TrainConfig, recipe: Recipe
) -> int:
    model_name, dataset = str(cfg["model"]), str(cfg["dataset"])
    main = dist_utils.is_main()
    if not main:  # rank 0 speaks for the run
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    with dist_utils.main_first():  # a download happens once, on rank 0
        full = aldata.load(dataset, "train", data_dir=cfg["data_dir"])
    if cfg["limit"] is not None:
        if cfg["limit"] < 2:
            raise CLIError(f"--limit must be >= 2; got {cfg['limit']}")
        full = full.subset(slice(0, int(cfg["limit"])))
    tr, va = aldata.train_val_split(full, float(cfg["val_fraction"]), seed=train_cfg.seed)
    torch.manual_seed(train_cfg.seed)  # the model's initial weights
    clf = almodels.build(
        model_name, input_shape=full.input_shape, num_classes=full.num_classes, **cfg["model_args"]
    )
    if main:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out / "config.json", {"command": "train", **cfg})
    world = dist_utils.world_size()
    logger.info(
        "training %s on %s (%d train / %d validation%s) -> %s",
        model_name,
        dataset,
        len(tr),
        len(va),
        f", {world} processes" if world > 1 else "",
        args.out,
    )
    result = train(
        clf, tr, va, train_cfg, recipe=recipe, out=args.out, resume=args.resume, dataset=dataset
    )
    if not main:
        return 0
    test = aldata.load(dataset, "test", data_dir=cfg["data_dir"])
    from advlab.evaluation import evaluate_clean

    report = evaluate_clean(clf, test, device=dist_utils.rank_device(train_cfg.device))
    report.to_json(args.out / "eval.json")
    last = result.last
    print(
        f"{model_name} on {dataset}: train acc {last.get('train_acc', float('nan')):.4f}, "
        f"val acc {last.get('val_acc', float('nan')):.4f}, test acc {report.accuracy:.4f} "
        f"({report.n} images); checkpoint in {args.out}"
    )
    return 0
