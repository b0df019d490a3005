"""Turn per-batch records into the numbers of ``report.json`` (docs/report-format.md)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advlab.evaluation.batch import CLEAN_WRONG, NORM_KEYS, ROBUST
from advlab.evaluation.flags import Flag
from advlab.evaluation.stats import accuracy_block, wilson
from advlab.evaluation.suites import Suite
from advlab.utils.metrics import confusion_matrix


def _stats(values: Tensor) -> dict[str, float]:
    return {
        "mean": float(values.mean()),
        "median": float(values.median()),
        "max": float(values.max()),
    }


def _names(broken_by: Tensor, titles: list[str]) -> list[str]:
    out = []
    for b in broken_by.tolist():
        out.append("" if b == ROBUST else "clean" if b == CLEAN_WRONG else titles[b])
    return out


_VIOLATIONS = {  # record key -> (flag code, what was wrong with the adversarial inputs)
    "eps_ball": ("eps-ball-violation", "lay outside the eps-ball"),
    "bounds": ("bounds-violation", "lay outside the model's bounds"),
    "nan": ("nan-outputs", "or their logits were NaN or infinite"),
}


def _violation_flags(records: list[dict[str, Any]]) -> list[Flag]:
    flags = []
    for key, (code, what) in _VIOLATIONS.items():
        count = sum(int(r["violations"][key]) for r in records)
        if count:
            message = f"{count} adversarial inputs {what}; they were not counted as successes"
            flags.append(Flag(code, message, {"count": count}))
    return flags


def _minnorm_curves(records: list[dict[str, Any]], eps: list[float]) -> list[dict[str, Any]]:
    """Accuracy-vs-eps curves of minimum-norm attacks that ran on every sample (41 points from 0
    to twice the largest eps); a cascaded run leaves gaps (NaN) and gives no curve."""
    curves = []
    grid = [2 * max(eps) * i / 40 for i in range(41)]
    for title in records[0]["minnorm"]:
        sizes = torch.cat([r["minnorm"][title] for r in records])
        if bool(sizes.isnan().any()):
            continue
        n = int(sizes.shape[0])
        counts = [int((sizes > g * (1 + 1e-6) + 1e-12).sum()) for g in grid]
        cis = [wilson(c, n) for c in counts]
        curves.append(
            {
                "source": title,
                "eps": grid,
                "accuracy": [c / n for c in counts],
                "ci_low": [c[0] for c in cis],
                "ci_high": [c[1] for c in cis],
            }
        )
    return curves


def _rejected(record: dict[str, Any]) -> Tensor:
    got = record.get("clean_rejected")  # absent in state files of advlab before detectors
    return got if got is not None else torch.zeros_like(record["label"], dtype=torch.bool)


def assemble(
    records: list[dict[str, Any]], suite: Suite, eps: list[float], k: int, n_examples: int
) -> dict[str, Any]:
    """``clean``, ``per_eps``, ``curves``, ``examples``, ``samples`` and ``violation_flags``."""
    titles = [a.title for a in suite.attacks]
    label = torch.cat([r["label"] for r in records])
    clean_pred = torch.cat([r["clean_pred"] for r in records])
    clean_conf = torch.cat([r["clean_conf"] for r in records])
    n = int(label.shape[0])
    rejected = torch.cat([_rejected(r) for r in records])
    correct = (clean_pred == label) & ~rejected
    n_correct = int(correct.sum())
    clean = accuracy_block(n_correct, n)
    clean["mean_confidence"] = float(clean_conf.mean())
    per_eps: list[dict[str, Any]] = []
    sample_eps = []
    for ei, e in enumerate(eps):
        parts = [r["per_eps"][ei] for r in records]
        broken_by = torch.cat([p["broken_by"] for p in parts])
        adv_pred = torch.cat([p["adv_pred"] for p in parts])
        adv_conf = torch.cat([p["adv_conf"] for p in parts])
        norms = torch.cat([p["norms"] for p in parts])
        broken = broken_by >= 0
        cumulative = torch.zeros_like(correct)
        attacks = []
        for j, title in enumerate(titles):
            entries = [p["attacks"][j] for p in parts]
            mask = torch.cat([en["mask"] for en in entries])
            cumulative |= mask
            ran = sum(int(en["ran"]) for en in entries)
            prev = (
                torch.cat([r["per_eps"][ei - 1]["attacks"][j]["mask"] for r in records])
                if ei > 0
                else torch.zeros_like(mask)
            )
            attacked = ran + int(prev.sum())
            gone = cumulative if suite.cascade else mask
            row = accuracy_block(int((correct & ~gone).sum()), n)
            attacks.append(
                {
                    "attack": title,
                    "attacked": attacked,
                    "broken": int(mask.sum()),
                    **row,
                    "success_rate": int(mask.sum()) / attacked if attacked else 0.0,
                    "mean_confidence_adv": sum(en["conf_sum"] for en in entries) / ran
                    if ran
                    else None,
                    "queries_mean": sum(en["queries"] for en in entries) / ran if ran else 0.0,
                    "gradients_mean": sum(en["gradients"] for en in entries) / ran if ran else 0.0,
                    "seconds": sum(en["seconds"] for en in entries),
                }
            )
        per_eps.append(
            {
                "eps": e,
                "robust": accuracy_block(int((broken_by == ROBUST).sum()), n),
                "attacks": attacks,
                "mean_confidence_adv": float(adv_conf[broken].mean()) if broken.any() else None,
                "perturbation": {key: _stats(norms[broken, i]) for i, key in enumerate(NORM_KEYS)}
                if broken.any()
                else None,
                "confusion": confusion_matrix(adv_pred, label, k).tolist(),
            }
        )
        sample_eps.append(
            {
                "eps": e,
                "adv_pred": adv_pred.tolist(),
                "adv_confidence": adv_conf.tolist(),
                "broken_by": _names(broken_by, titles),
                **{key: norms[:, i].tolist() for i, key in enumerate(NORM_KEYS)},
            }
        )
    sweep_eps = [0.0, *eps]
    sweep_correct = [n_correct] + [b["robust"]["correct"] for b in per_eps]
    cis = [wilson(c, n) for c in sweep_correct]
    curves = [
        {
            "source": "sweep",
            "eps": sweep_eps,
            "accuracy": [c / n for c in sweep_correct],
            "ci_low": [c[0] for c in cis],
            "ci_high": [c[1] for c in cis],
        },
        *_minnorm_curves(records, eps),
    ]
    examples = [ex for r in records for ex in r["examples"]][:n_examples]
    return {
        "clean": clean,
        "per_eps": per_eps,
        "curves": curves,
        "examples": examples,
        "samples": {
            "index": torch.cat([r["index"] for r in records]).tolist(),
            "label": label.tolist(),
            "clean_pred": clean_pred.tolist(),
            "clean_confidence": clean_conf.tolist(),
            "clean_rejected": rejected.tolist(),
            "per_eps": sample_eps,
        },
        "violation_flags": _violation_flags(records),
    }
