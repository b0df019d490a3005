"""Accuracy-vs-eps curves for the page: FGSM, PGD (cross-entropy) and PGD (margin loss) on a
fixed subset of the test split, computed once per model and cached (memory, and
``<model folder>/curve-<hash>.json`` when the model has a cache folder)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from advlab import attacks
from advlab.data import TensorData
from advlab.serve.models import DemoModel
from advlab.utils.files import atomic_write_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CurveConfig:
    """``n`` test images (the first ones), eps grid ``0, step, ..., <= eps_max``, PGD with
    ``pgd_steps`` steps of 2.5·eps/steps, a random start (seed 0) and early stop (an image
    leaves the loop at its first misclassified iterate: the accuracy can only be lower than
    with the last iterate, and at large eps most of the cost is saved)."""

    n: int = 200
    eps_step: float = 0.05
    pgd_steps: int = 10

    def grid(self, eps_max: float) -> list[float]:
        k = round(eps_max / self.eps_step)
        return [round(i * self.eps_step, 6) for i in range(k + 1)]

    def key(self, model: DemoModel, data: TensorData) -> str:
        text = json.dumps(
            [self.n, self.eps_step, self.pgd_steps, model.eps_max, data.name, len(data), 1]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def compute_curve(model: DemoModel, data: TensorData, cfg: CurveConfig) -> dict[str, Any]:
    """``{"model", "eps": [...], "curves": {"fgsm": [...], "pgd": [...], "pgd-margin": [...]},
    "n", "pgd_steps", "seconds"}``: accuracies (fractions) on the first ``cfg.n`` test images."""
    t0 = time.perf_counter()
    clf = model.clf
    device = clf.device
    n = min(cfg.n, len(data))
    x, y = data.x[:n].to(device), data.y[:n].to(device)
    grid = cfg.grid(model.eps_max)
    with torch.no_grad():
        clean = round(float((clf.predict(x) == y).float().mean()), 4)
    curves: dict[str, list[float]] = {"fgsm": [clean], "pgd": [clean], "pgd-margin": [clean]}
    stop = {"early_stop": True}  # fooled images stop costing gradients
    for eps in grid[1:]:
        s = cfg.pgd_steps
        runs = {
            "fgsm": attacks.build("fgsm", eps=eps),
            "pgd": attacks.build("pgd", eps=eps, steps=s, step_size=2.5 * eps / s, **stop),
            "pgd-margin": attacks.build(
                "pgd", eps=eps, steps=s, step_size=2.5 * eps / s, loss="margin", **stop
            ),
        }
        for name, atk in runs.items():
            curves[name].append(round(atk(clf, x, y).accuracy, 4))
    seconds = time.perf_counter() - t0
    logger.info(
        "curve for %s: %d eps x 3 attacks on %d images, %.1f s", model.name, len(grid), n, seconds
    )
    return {
        "model": model.name,
        "eps": grid,
        "curves": curves,
        "n": n,
        "pgd_steps": cfg.pgd_steps,
        "seconds": round(seconds, 2),
    }


def cached_curve(model: DemoModel, data: TensorData, cfg: CurveConfig) -> dict[str, Any]:
    """:func:`compute_curve`, read from / written to the model's cache folder when it has one
    (a damaged cache file is recomputed)."""
    file = None
    if model.folder is not None:
        file = model.folder / f"curve-{cfg.key(model, data)}.json"
        if file.is_file():
            try:
                cached: dict[str, Any] = json.loads(file.read_text())
                return cached
            except (OSError, json.JSONDecodeError):
                logger.warning("ignoring unreadable curve cache %s", file)
    curve = compute_curve(model, data, cfg)
    if file is not None:
        try:
            atomic_write_json(file, curve)
        except OSError as e:
            logger.warning("cannot cache the curve in %s: %s", file, e)
    return curve
