"""One batch of a robustness evaluation: every attack of a suite at every eps, the per-sample
worst case, and the numbers the report needs (kept small: no adversarial images except a few
examples)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from advlab.attacks import AttackResult, get_norm
from advlab.evaluation.suites import Suite
from advlab.models.classifier import Classifier
from advlab.utils.metrics import perturbation_norms

ROBUST, CLEAN_WRONG = -2, -1  # codes of ``broken_by`` besides an attack's position
NORM_KEYS = ("linf", "l2", "l1", "l0")
_TOL = 1e-6


def within(size: Tensor, eps: float) -> Tensor:
    """``size <= eps`` up to float rounding (the tolerance every budget check in advlab uses)."""
    return size <= eps * (1 + _TOL) + _TOL


def attack_seed(seed: int, batch: int, eps_index: int, attack_index: int) -> int:
    """The seed of one attack call: fixed by the batch's position, so a resumed or sharded run
    draws exactly what a single uninterrupted run draws."""
    return (seed * 1_000_003 + batch * 10_007 + attack_index * 101 + eps_index) % (2**62)


@dataclass
class BatchJob:
    model: Classifier
    suite: Suite
    norm: str
    eps: list[float]  # ascending
    seed: int
    n_examples: int
    views: Mapping[str, Classifier] = field(default_factory=dict)  # AttackSpec.view -> crafter
    reject: Callable[[Tensor], Tensor] | None = None  # a detector's reject mask

    def rejected(self, x: Tensor) -> Tensor:
        if self.reject is None:
            return torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        with torch.no_grad():
            return self.reject(x).to(device=x.device, dtype=torch.bool)

    def crafter(self, view: str) -> Classifier:
        return self.views.get(view, self.model) if view else self.model

    def score(self, crafter: Classifier, xa: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        """Logits of the evaluated model at ``xa`` (re-computed when the attack ran on another
        view) and the reject mask there."""
        if crafter is not self.model:
            with torch.no_grad():
                logits = self.model.logits(xa, check=False).float()
        return logits, self.rejected(xa)


def _valid(model: Classifier, xa: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample masks: ``x_adv`` and its logits are finite; ``x_adv`` is inside the bounds."""
    finite = torch.isfinite(xa.reshape(xa.shape[0], -1)).all(1) & torch.isfinite(logits).all(1)
    low = model.low.to(xa.device, xa.dtype)
    high = model.high.to(xa.device, xa.dtype)
    inside = ((xa >= low - _TOL) & (xa <= high + _TOL)).reshape(xa.shape[0], -1).all(1)
    return finite, inside


class _Worst:
    """The per-sample worst case so far at one eps: the first attack (in suite order) that broke
    each sample, its adversarial input and logits; clean values for robust samples."""

    def __init__(self, correct: Tensor, x: Tensor, logits: Tensor) -> None:
        self.broken = ~correct
        self.broken_by = torch.full(correct.shape, ROBUST, dtype=torch.long, device=x.device)
        self.broken_by[~correct] = CLEAN_WRONG
        self.x = x.clone()
        self.logits = logits.clone()

    def take(self, k: int, mask: Tensor, adv_x: Tensor, adv_logits: Tensor) -> None:
        new = mask & ~self.broken
        self.broken_by[new] = k
        self.x[new] = adv_x[new]
        self.logits[new] = adv_logits[new]
        self.broken |= new


def run_batch(job: BatchJob, index: Tensor, x: Tensor, y: Tensor, batch: int) -> dict[str, Any]:
    """Evaluate one batch (tensors on the model's device); returns a record of CPU tensors and
    plain numbers (what the state file stores and :func:`advlab.evaluation.runner` assembles)."""
    model, suite, lp = job.model, job.suite, get_norm(job.norm)
    with torch.no_grad():
        clean_logits = model.logits(x, check=False).float()
    clean_prob = torch.softmax(clean_logits, 1).max(1)
    clean_rejected = job.rejected(x)  # a rejected clean input is an error (false positive)
    correct = (clean_prob.indices == y) & ~clean_rejected
    n_att = len(suite.attacks)
    masks = [torch.zeros_like(correct) for _ in range(n_att)]  # broken by attack k (carried)
    adv_x = [x.clone() for _ in range(n_att)]
    adv_logits = [clean_logits.clone() for _ in range(n_att)]
    cache: list[dict[str, Tensor] | None] = [None] * n_att  # min-norm results, run once
    violations = {"eps_ball": 0, "bounds": 0, "nan": 0}
    per_eps: list[dict[str, Any]] = []
    examples: list[dict[str, Any]] = []
    for ei, eps in enumerate(job.eps):
        worst = _Worst(correct, x, clean_logits)
        for k in range(n_att):  # samples broken at a smaller eps stay broken (same x_adv)
            worst.take(k, masks[k], adv_x[k], adv_logits[k])
        stats = []
        for k, spec in enumerate(suite.attacks):
            cand = correct & ~masks[k]
            if suite.cascade:
                cand &= ~worst.broken
            idx = cand.nonzero().squeeze(1)
            entry: dict[str, Any] = {
                "ran": int(idx.numel()),
                "queries": 0,
                "gradients": 0,
                "seconds": 0.0,
                "conf_sum": 0.0,
            }
            if idx.numel():
                seed = attack_seed(job.seed, batch, ei, k)
                crafter = job.crafter(spec.view)
                t0 = time.perf_counter()
                if spec.budget:
                    res = spec.build(job.norm, eps, seed)(crafter, x[idx], y[idx])
                    xa = res.x_adv
                    logits, rejected = job.score(crafter, xa, res.logits_adv.float())
                    ok = within(lp.size(xa - x[idx]), eps)
                    violations["eps_ball"] += int((~ok).sum())
                    counted: AttackResult | None = res
                else:
                    c = cache[k]
                    if c is None:
                        c = cache[k] = {
                            "done": torch.zeros_like(correct),
                            "x": x.clone(),
                            "logits": clean_logits.clone(),
                            "rejected": clean_rejected.clone(),
                        }
                    todo = idx[~c["done"][idx]]
                    counted = None
                    if todo.numel():
                        counted = spec.build(job.norm, None, seed)(crafter, x[todo], y[todo])
                        c["x"][todo] = counted.x_adv
                        got, rej = job.score(crafter, counted.x_adv, counted.logits_adv.float())
                        c["logits"][todo] = got
                        c["rejected"][todo] = rej
                        c["done"][todo] = True
                    xa, logits, rejected = c["x"][idx], c["logits"][idx], c["rejected"][idx]
                    ok = within(lp.size(xa - x[idx]), eps)
                if x.device.type == "cuda":
                    torch.cuda.synchronize(x.device)
                entry["seconds"] = time.perf_counter() - t0
                finite, inside = _valid(model, xa, logits)
                violations["nan"] += int((~finite).sum())
                violations["bounds"] += int((~inside).sum())
                success = (logits.argmax(1) != y[idx]) & ~rejected & ok & finite & inside
                safe = torch.where(torch.isfinite(logits), logits, torch.zeros_like(logits))
                entry["conf_sum"] = float(torch.softmax(safe, 1).max(1).values.sum())
                if counted is not None:
                    entry["queries"] = int(counted.queries.sum())
                    entry["gradients"] = int(counted.gradients.sum())
                hit = idx[success]
                masks[k][hit] = True
                adv_x[k][hit] = xa[success]
                adv_logits[k][hit] = logits[success]
                worst.take(k, masks[k], adv_x[k], adv_logits[k])
            entry["mask"] = masks[k].cpu().clone()
            stats.append(entry)
        broken_by = worst.broken_by
        adv_prob = torch.softmax(worst.logits, 1).max(1)
        sizes = perturbation_norms(worst.x - x)
        per_eps.append(
            {
                "adv_pred": adv_prob.indices.cpu(),
                "adv_conf": adv_prob.values.cpu(),
                "broken_by": broken_by.cpu(),
                "norms": torch.stack([sizes[key] for key in NORM_KEYS], 1).cpu(),
                "attacks": stats,
            }
        )
        if ei == len(job.eps) - 1:
            for i in (broken_by >= 0).nonzero().squeeze(1)[: job.n_examples].tolist():
                examples.append(
                    {
                        "index": int(index[i]),
                        "eps": eps,
                        "attack": suite.attacks[int(broken_by[i])].title,
                        "label": int(y[i]),
                        "clean_pred": int(clean_prob.indices[i]),
                        "clean_confidence": float(clean_prob.values[i]),
                        "adv_pred": int(adv_prob.indices[i]),
                        "adv_confidence": float(adv_prob.values[i]),
                        "shape": list(x.shape[1:]),
                        "x": x[i].flatten().cpu().tolist(),
                        "x_adv": worst.x[i].flatten().cpu().tolist(),
                    }
                )
    minnorm = {}
    for k, c in enumerate(cache):
        if c is not None:  # sizes of adversarial results; inf: failed; nan: not run; 0: clean wrong
            size = lp.size(c["x"] - x).float()
            finite, inside = _valid(model, c["x"], c["logits"])
            adv = (c["logits"].argmax(1) != y) & ~c["rejected"] & finite & inside
            size = torch.where(adv, size, torch.full_like(size, float("inf")))
            size[~c["done"]] = float("nan")
            size[~correct] = 0.0
            minnorm[suite.attacks[k].title] = size.cpu()
    return {
        "batch": batch,
        "minnorm": minnorm,
        "index": index.cpu(),
        "label": y.cpu(),
        "clean_pred": clean_prob.indices.cpu(),
        "clean_conf": clean_prob.values.cpu(),
        "clean_rejected": clean_rejected.cpu(),
        "per_eps": per_eps,
        "violations": violations,
        "examples": examples,
    }
