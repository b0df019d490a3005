"""Accuracy-vs-eps curves for the page, on a fixed subset of the test split, computed once per
model and cached (memory, and ``<model folder>/curve-<hash>.json`` when the model has a cache
folder).

Undefended models: FGSM, PGD (cross-entropy) and PGD (margin loss) on the model itself.

Defended models (:class:`advlab.defenses.Defended`): FGSM and PGD crafted on the defense's
``naive()`` view (the classifier alone) and PGD with the margin loss, no random start, crafted
on its ``adaptive()`` view (detection-aware for MagNet, BPDA for Defense-GAN), every
adversarial input scored on the defended model itself. As in the evaluation layer
(:mod:`advlab.evaluation.batch`): an image counts as defended when its clean version is
classified correctly *and* accepted by the detector, and its adversarial version is classified
correctly *or rejected* (a rejected adversarial input counts as defended; a rejected clean
input counts as an error), and an image broken at a smaller eps stays broken at the larger ones
(its adversarial input is inside the larger ball too; the per-sample worst case of the
evaluation layer). Without that carry-over the curves of a detector are not monotone: large
perturbations are easier to detect than small ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from advlab import attacks
from advlab.data import TensorData
from advlab.defenses import Defended
from advlab.models import Classifier
from advlab.serve.models import DemoModel
from advlab.utils.files import atomic_write_json

logger = logging.getLogger(__name__)

DEFENDED_NOTE = (
    "Naive: crafted on the classifier alone; adaptive: on the defense's adaptive view (margin "
    "loss, no random start, early stop); all scored on the defended model. A rejected "
    "adversarial input counts as defended, a rejected clean input as an error; an image broken "
    "at a smaller eps counts as broken at larger ones."
)
UNDETECTED_NOTE = (
    "Naive: crafted on the classifier alone; adaptive: on the defense's adaptive view (margin "
    "loss, no random start, early stop); all scored on the defended model. An image broken at a "
    "smaller eps counts as broken at larger ones."
)


def curve_note(model: DemoModel) -> str | None:
    """The sentence under a defended model's curve (``None`` when undefended)."""
    if model.defense is None:
        return None
    return DEFENDED_NOTE if model.defense.detects else UNDETECTED_NOTE


@dataclass(frozen=True)
class CurveConfig:
    """``n`` test images (the first ones), eps grid ``0, step, ..., <= eps_max``, PGD with
    ``pgd_steps`` steps of 2.5·eps/steps, a random start (seed 0) and early stop (an image
    leaves the loop at its first misclassified iterate: the accuracy can only be lower than
    with the last iterate, and at large eps most of the cost is saved). Defended models'
    adaptive PGD runs ``adaptive_steps`` steps (a detector-aware attack needs more than a
    plain one: at eps 0.3 on the MNIST MagNet, 10 steps leave 82% defended, 20 steps 33%).
    A model's ``curve_limits`` (Defense-GAN: every forward pass is a projection) cap them."""

    n: int = 200
    eps_step: float = 0.05
    pgd_steps: int = 10
    adaptive_steps: int = 20

    def grid(self, eps_max: float) -> list[float]:
        k = round(eps_max / self.eps_step)
        return [round(i * self.eps_step, 6) for i in range(k + 1)]

    def for_model(self, model: DemoModel) -> CurveConfig:
        """This config within ``model.curve_limits``."""
        lim = model.curve_limits
        if lim is None:
            return self
        return dataclasses.replace(
            self,
            n=min(self.n, lim.n),
            eps_step=max(self.eps_step, lim.eps_step),
            pgd_steps=min(self.pgd_steps, lim.pgd_steps),
            adaptive_steps=min(self.adaptive_steps, lim.adaptive_steps),
        )

    def key(self, model: DemoModel, data: TensorData) -> str:
        parts: list[Any] = [
            self.n,
            self.eps_step,
            self.pgd_steps,
            model.eps_max,
            data.name,
            len(data),
            1,
        ]
        if model.defense is not None:  # undefended keys stay what they were (valid caches)
            parts += [f"{model.defense.name}-3", self.adaptive_steps]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:10]


def curve_labels(model: DemoModel, pgd_steps: int, adaptive_steps: int = 20) -> dict[str, str]:
    """Legend text of each curve of ``model``."""
    if model.defense is None:
        return {
            "fgsm": "FGSM",
            "pgd": f"PGD-{pgd_steps}",
            "pgd-margin": f"PGD-{pgd_steps} margin",
        }
    return {  # short: the legend is 130 px wide (the margin loss is named in NOTE)
        "fgsm": "FGSM naive",
        "pgd": f"PGD-{pgd_steps} naive",
        "pgd-adaptive": f"PGD-{adaptive_steps} adaptive",
    }


def _defended_ok(clf: Classifier, x_adv: Tensor, y: Tensor) -> Tensor:
    """Per image: ``x_adv`` is classified as ``y`` by the defended ``clf`` or rejected."""
    with torch.no_grad():
        ok = clf.predict(x_adv) == y
        if isinstance(clf, Defended) and clf.detects:
            ok |= clf.reject(x_adv)
    return ok


def compute_curve(model: DemoModel, data: TensorData, cfg: CurveConfig) -> dict[str, Any]:
    """``{"model", "eps": [...], "curves": {name: [...]}, "labels": {name: legend}, "note",
    "n", "pgd_steps", "seconds"}``: accuracies (fractions) on the first ``n`` test images
    (``cfg`` within the model's limits); see the module docstring for the defended curves."""
    cfg = cfg.for_model(model)
    t0 = time.perf_counter()
    clf = model.clf
    device = clf.device
    n = min(cfg.n, len(data))
    x, y = data.x[:n].to(device), data.y[:n].to(device)
    grid = cfg.grid(model.eps_max)
    s = cfg.pgd_steps
    stop = {"early_stop": True}  # fooled images stop costing gradients
    defense = model.defense
    with torch.no_grad():
        correct = clf.predict(x) == y
        if defense is not None and defense.detects:
            correct &= ~defense.reject(x)
    clean = round(float(correct.float().mean()), 4)
    labels = curve_labels(model, s, cfg.adaptive_steps)
    curves: dict[str, list[float]] = {name: [clean] for name in labels}
    broken = {name: ~correct for name in labels}  # defended: broken at a smaller eps stays so
    for eps in grid[1:]:
        step = 2.5 * eps / s
        if defense is None:
            runs = {
                "fgsm": (clf, attacks.build("fgsm", eps=eps)),
                "pgd": (clf, attacks.build("pgd", eps=eps, steps=s, step_size=step, **stop)),
                "pgd-margin": (
                    clf,
                    attacks.build("pgd", eps=eps, steps=s, step_size=step, loss="margin", **stop),
                ),
            }
        else:
            naive, adaptive = model.view(False), model.view(True)
            runs = {
                "fgsm": (naive, attacks.build("fgsm", eps=eps)),
                "pgd": (naive, attacks.build("pgd", eps=eps, steps=s, step_size=step, **stop)),
                "pgd-adaptive": (
                    adaptive,
                    attacks.build(
                        "pgd",
                        eps=eps,
                        steps=cfg.adaptive_steps,
                        step_size=2.5 * eps / cfg.adaptive_steps,
                        loss="margin",
                        random_start=False,  # against detectors (docs/defenses/magnet.md)
                        **stop,
                    ),
                ),
            }
        for name, (target, atk) in runs.items():
            if defense is None:
                acc = atk(clf, x, y).accuracy
            else:
                res = atk(target, x, y)
                broken[name] |= ~_defended_ok(clf, res.x_adv, y)
                acc = float((~broken[name]).float().mean())
            curves[name].append(round(acc, 4))
    seconds = time.perf_counter() - t0
    logger.info(
        "curve for %s: %d eps x %d attacks on %d images, %.1f s",
        model.name,
        len(grid),
        len(labels),
        n,
        seconds,
    )
    return {
        "model": model.name,
        "eps": grid,
        "curves": curves,
        "labels": labels,
        "note": curve_note(model),
        "n": n,
        "pgd_steps": s,
        "adaptive_steps": cfg.adaptive_steps if defense is not None else None,
        "seconds": round(seconds, 2),
    }


def cached_curve(model: DemoModel, data: TensorData, cfg: CurveConfig) -> dict[str, Any]:
    """:func:`compute_curve`, read from / written to the model's cache folder when it has one
    (a damaged cache file is recomputed; ``labels`` and ``note`` are presentation, always
    this version's)."""
    cfg = cfg.for_model(model)
    file = None
    if model.folder is not None:
        file = model.folder / f"curve-{cfg.key(model, data)}.json"
        if file.is_file():
            try:
                cached: dict[str, Any] = json.loads(file.read_text())
                steps = int(cached["pgd_steps"])  # legend and note: always this version's
                cached["labels"] = curve_labels(model, steps, cfg.adaptive_steps)
                cached["note"] = curve_note(model)
                return cached
            except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
                logger.warning("ignoring unreadable curve cache %s", file)
    curve = compute_curve(model, data, cfg)
    if file is not None:
        try:
            atomic_write_json(file, curve)
        except OSError as e:
            logger.warning("cannot cache the curve in %s: %s", file, e)
    return curve
