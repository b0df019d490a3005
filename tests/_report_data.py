"""Synthetic robustness reports (docs/report-format.md, schema_version 1) for the reporting
tests: self-consistent counts, Wilson intervals and per-sample data, no attack run."""

from __future__ import annotations

import math
from typing import Any

N, K, SIDE = 12, 3, 8  # samples, classes, image side (1 x 8 x 8)
CLASS_NAMES = ["cat", "dog", "ship"]
LABELS = [i % K for i in range(N)]
CLEAN_PRED = [*LABELS[:-1], (LABELS[-1] + 1) % K]  # the last sample is misclassified
# eps -> {sample: attack that broke it}; deepfool only sees what apgd-ce left (cascade)
BROKEN = {
    0.1: {0: "apgd-ce", 1: "apgd-ce", 2: "deepfool"},
    0.3: {
        0: "apgd-ce",
        1: "apgd-ce",
        2: "apgd-ce",
        3: "apgd-ce",
        4: "deepfool",
        5: "deepfool",
        6: "deepfool",
        7: "deepfool",
        8: "deepfool",
    },
}


def wilson(k: int, n: int, z: float = 1.959964) -> list[float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def acc(k: int, n: int = N) -> dict[str, Any]:
    return {"accuracy": k / n, "correct": k, "n": n, "ci": wilson(k, n)}


def _image(i: int, shift: float = 0.0) -> list[float]:
    return [((i * 7 + j) % 11) / 10.0 * (1 - shift) + shift / 2 for j in range(SIDE * SIDE)]


def _sizes(i: int, eps: float, broken: bool) -> dict[str, float]:
    if not broken:
        return {"linf": 0.0, "l2": 0.0, "l1": 0.0, "l0": 0}
    s = eps * (0.5 + 0.04 * i)
    return {"linf": s, "l2": 3 * s, "l1": 20 * s, "l0": 30 + i}


def _per_eps(eps: float, broken: dict[int, str], attacks: list[str]) -> dict[str, Any]:
    clean_ok = [p == y for p, y in zip(CLEAN_PRED, LABELS, strict=True)]
    robust = [ok and i not in broken for i, ok in enumerate(clean_ok)]
    rows, still = [], sum(clean_ok)
    for name in attacks:
        hits = sum(1 for a in broken.values() if a == name)
        rows.append(
            {
                "attack": name,
                "attacked": still,
                "broken": hits,
                **acc(still - hits),
                "success_rate": hits / still if still else 0.0,
                "mean_confidence_adv": 0.8 if hits else None,
                "queries_mean": 21.0,
                "gradients_mean": 20.0,
                "seconds": 0.5,
            }
        )
        still -= hits
    confusion = [[0] * K for _ in range(K)]
    preds = []
    for i, y in enumerate(LABELS):
        pred = (y + 1) % K if i in broken or not clean_ok[i] else y
        confusion[y][pred] += 1
        preds.append(pred)
    sizes = [_sizes(i, eps, i in broken) for i in range(N)]

    def stats(norm: str) -> dict[str, float]:
        v = sorted(sizes[i][norm] for i in broken)
        return {"mean": sum(v) / len(v), "median": v[len(v) // 2], "max": v[-1]}

    return {
        "eps": eps,
        "robust": acc(sum(robust)),
        "attacks": rows,
        "mean_confidence_adv": 0.75 if broken else None,
        "perturbation": {n: stats(n) for n in ("linf", "l2", "l1", "l0")} if broken else None,
        "confusion": confusion,
        "_samples": {
            "eps": eps,
            "adv_pred": preds,
            "adv_confidence": [0.7 if i in broken else 0.95 for i in range(N)],
            "broken_by": [broken.get(i, "" if clean_ok[i] else "clean") for i in range(N)],
            **{n: [s[n] for s in sizes] for n in ("linf", "l2", "l1", "l0")},
        },
    }


def make_report(*, minimal: bool = False) -> dict[str, Any]:
    """A complete report (2 eps, 2 attacks, flags, audit, transfer, curves, examples), or with
    ``minimal=True`` a min-norm-only suite at one eps where nothing is broken and every optional
    part is empty or null."""
    attacks = ["deepfool"] if minimal else ["apgd-ce", "deepfool"]
    broken = {0.1: {}} if minimal else BROKEN
    per_eps = [_per_eps(eps, b, attacks) for eps, b in broken.items()]
    samples = {
        "index": list(range(N)),
        "label": LABELS,
        "clean_pred": CLEAN_PRED,
        "clean_confidence": [0.9 + 0.005 * i for i in range(N)],
        "per_eps": [e.pop("_samples") for e in per_eps],
    }
    clean = {**acc(N - 1), "mean_confidence": 0.93}
    report: dict[str, Any] = {
        "schema_version": 1,
        "kind": "advlab-robustness-report",
        "created": "2026-11-22T03:00:00+00:00",
        "model": {
            "name": "tiny-mlp",
            "checkpoint": None,
            "num_classes": K,
            "bounds": [0.0, 1.0],
            "input_shape": [1, SIDE, SIDE],
        },
        "data": {"name": "synthetic", "split": "test", "n": N, "class_names": CLASS_NAMES},
        "suite": {
            "name": "minnorm" if minimal else "standard",
            "cascade": True,
            "attacks": [
                {
                    "name": a,
                    "kind": "min-norm" if a == "deepfool" else "budget",
                    "config": {"steps": 10},
                }
                for a in attacks
            ],
        },
        "norm": "linf",
        "eps": list(broken),
        "clean": clean,
        "per_eps": per_eps,
        "curves": [],
        "flags": [],
        "audit": None,
        "transfer": None,
        "examples": [],
        "samples": samples,
        "timing": {"seconds": 3.5},
        "config": {"seed": 0, "batch_size": 64, "device": "cpu"},
        "environment": {
            "advlab_version": "0.1.0",
            "torch_version": "2.13.0+cpu",
            "python": "3.11.9",
            "platform": "Linux",
            "device": "cpu",
        },
    }
    if minimal:
        return report
    report["curves"] = [
        {
            "source": "sweep",
            "eps": [0.0, 0.1, 0.3],
            "accuracy": [clean["accuracy"]] + [e["robust"]["accuracy"] for e in per_eps],
            "ci_low": [clean["ci"][0]] + [e["robust"]["ci"][0] for e in per_eps],
            "ci_high": [clean["ci"][1]] + [e["robust"]["ci"][1] for e in per_eps],
        },
        {
            "source": "deepfool",
            "eps": [0.0, 0.05, 0.1, 0.2, 0.3, 0.4],
            "accuracy": [0.92, 0.83, 0.75, 0.5, 0.33, 0.1],
        },
    ]
    report["flags"] = [
        {
            "code": "single-step-beats-iterative",
            "severity": "warning",
            "message": "FGSM accuracy 0.41 < PGD accuracy 0.62 at eps 0.3",
            "evidence": {"fgsm": 0.41, "pgd": 0.62},
        },
        {
            "code": "accuracy-not-zero",
            "severity": "error",
            "message": "accuracy 25% at the largest eps <script>",
            "evidence": {},
        },
    ]
    report["audit"] = {"n": N, "probes": {"fgsm": 0.41, "pgd-20": 0.62}}
    report["transfer"] = {
        "attack": "pgd",
        "eps": 0.3,
        "n": N,
        "sources": ["a", "b"],
        "targets": ["c", "d"],
        "accuracy": [[0.7, 0.55], [0.8, None]],
    }
    report["examples"] = [
        {
            "index": i,
            "eps": 0.3,
            "attack": BROKEN[0.3][i],
            "label": LABELS[i],
            "clean_pred": CLEAN_PRED[i],
            "clean_confidence": 0.95,
            "adv_pred": (LABELS[i] + 1) % K,
            "adv_confidence": 0.7,
            "shape": [1, SIDE, SIDE],
            "x": _image(i),
            "x_adv": _image(i, 0.3),
        }
        for i in (0, 4, 7)
    ]
    return report
