"""Robustness evaluation (issue 5): suites, worst case, report round trip, resume, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from advlab import models
from advlab.cli.main import main
from advlab.data import TensorData
from advlab.evaluation import (
    RobustnessReport,
    evaluate,
    get_suite,
    suite_from_config,
    suites,
    transfer_matrix,
    wilson,
)
from advlab.evaluation import batch as batch_module
from advlab.evaluation import runner as runner_module
from advlab.evaluation.assemble import assemble
from advlab.evaluation.batch import ROBUST
from advlab.models import Classifier
from advlab.reporting import render

EPS = [0.05, 0.15]


def test_wilson_known_values() -> None:
    # reference values (z = 1.96): Brown, Cai & DasGupta 2001 / statsmodels proportion_confint
    for (k, n), (lo, hi) in {
        (0, 10): (0.0, 0.2775),
        (5, 10): (0.2366, 0.7634),
        (10, 10): (0.7225, 1.0),
        (81, 263): (0.2553, 0.3662),
    }.items():
        got = wilson(k, n)
        assert got == pytest.approx((lo, hi), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson(3, 2)


def _record(batch: int, masks: list[list[bool]], correct: list[bool]) -> dict[str, Any]:
    """A one-eps batch record whose attack k broke exactly ``masks[k]``."""
    n = len(correct)
    label = torch.zeros(n, dtype=torch.long)
    clean_pred = torch.tensor([0 if c else 1 for c in correct])
    broken_by = torch.full((n,), ROBUST)
    broken_by[~torch.tensor(correct)] = -1
    for k, m in enumerate(masks):
        hit = torch.tensor(m) & (broken_by == ROBUST)
        broken_by[hit] = k
    adv_pred = torch.where(broken_by == ROBUST, label, torch.ones_like(label))
    attacks = [
        {
            "ran": n,
            "queries": n,
            "gradients": n,
            "seconds": 0.1,
            "conf_sum": 0.5 * n,
            "mask": torch.tensor(m),
        }
        for m in masks
    ]
    return {
        "batch": batch,
        "minnorm": {},
        "index": torch.arange(n) + batch * n,
        "label": label,
        "clean_pred": clean_pred,
        "clean_conf": torch.full((n,), 0.9),
        "per_eps": [
            {
                "adv_pred": adv_pred,
                "adv_conf": torch.full((n,), 0.8),
                "broken_by": broken_by,
                "norms": torch.full((n, 4), 0.1),
                "attacks": attacks,
            }
        ],
        "violations": {"eps_ball": 1 - batch, "bounds": batch, "nan": batch},
        "examples": [],
    }


@pytest.mark.parametrize("cascade", [False, True])
def test_worst_case_aggregation(cascade: bool) -> None:
    correct = [True, True, True, True, False]
    a = [True, False, False, False, False]
    b = [False, True, False, False, False]
    records = [_record(0, [a, b], correct), _record(1, [a, b], correct)]
    suite = get_suite(
        {
            "name": "t",
            "cascade": cascade,
            "attacks": [{"attack": "fgsm"}, {"attack": "pgd", "label": "pgd"}],
        },
        "linf",
    )
    doc = assemble(records, suite, [0.1], 2, 8)
    block = doc["per_eps"][0]
    assert doc["clean"]["correct"] == 8 and doc["clean"]["n"] == 10
    assert block["robust"]["correct"] == 4  # samples 2 and 3 of each batch
    first, second = block["attacks"]
    assert first["correct"] == 6  # a broke one per batch
    # cascade: accuracy after attacks 1..k; independent: attack k alone
    assert second["correct"] == (4 if cascade else 6)
    assert second["broken"] == 2 and second["success_rate"] == pytest.approx(2 / 10)
    assert doc["samples"]["per_eps"][0]["broken_by"][:5] == ["fgsm", "pgd", "", "", "clean"]
    assert block["robust"]["ci"] == pytest.approx(list(wilson(4, 10)))
    codes = [f.code for f in doc["violation_flags"]]
    assert codes == ["eps-ball-violation", "bounds-violation", "nan-outputs"]


def test_suites_build_and_custom_config() -> None:
    assert {"quick", "standard", "classic", "blackbox"} <= set(suites.names())
    for name in suites.names():
        for norm in ("linf", "l2"):
            get_suite(name, norm)
    s = suite_from_config(
        {
            "name": "mine",
            "attacks": [
                {"attack": "pgd", "steps": 7, "step_size": "eps/4"},
                {"attack": "deepfool", "label": "df"},
            ],
        }
    )
    atk = s.attacks[0].build("linf", 0.2, 0)
    assert atk.config()["steps"] == 7 and atk.config()["step_size"] == pytest.approx(0.05)
    assert s.cascade and s.attacks[1].title == "df" and not s.attacks[1].budget
    with pytest.raises(ValueError, match="known"):
        suite_from_config({"attacks": [{"attack": "nope"}]})
    with pytest.raises(ValueError, match="eps"):
        suite_from_config({"attacks": [{"attack": "pgd", "step_size": "eps//"}]})
    with pytest.raises(ValueError, match="set by the evaluation"):
        suite_from_config({"attacks": [{"attack": "pgd", "eps": 0.3}]})
    with pytest.raises(ValueError, match="supports norm"):
        get_suite({"attacks": [{"attack": "fgsm"}]}, "l2")


@pytest.fixture(scope="module")
def quick_report(digits_model: tuple[Classifier, TensorData]) -> RobustnessReport:
    clf, test = digits_model
    clf.eval()  # the session model, in the mode other tests must leave it in
    return evaluate(clf, test, eps=EPS, suite="quick", n=120, batch_size=50, audit_n=60)


def test_quick_report_numbers(
    quick_report: RobustnessReport, digits_model: tuple[Classifier, TensorData]
) -> None:
    r = quick_report
    d = r.to_dict()
    assert d["data"]["n"] == 120 and r.eps == EPS
    assert r.clean_accuracy > 0.85
    lo, hi = r.robust_accuracy(EPS[0]), r.robust_accuracy(EPS[1])
    assert hi <= lo <= r.clean_accuracy
    for e in EPS:
        worst = r.robust_accuracy(e)
        assert worst <= r.attack_accuracy("fgsm", e) and worst <= r.attack_accuracy("pgd-20", e)
        assert worst == pytest.approx(
            min(r.attack_accuracy(a, e) for a in ("fgsm", "pgd-20")), abs=0.1
        )
    assert r.flags == []  # a normally trained model, attacked properly: nothing to flag
    assert set(d["audit"]["probes"]) >= {"fgsm", "pgd-20", "pgd-100 (ce+margin)", "noise", "square"}
    block = d["per_eps"][-1]
    assert sum(map(sum, block["confusion"])) == 120
    assert block["perturbation"]["linf"]["max"] <= EPS[-1] * (1 + 1e-6)
    samples = d["samples"]["per_eps"][-1]
    assert len(samples["broken_by"]) == 120
    broken = [b not in ("", "clean") for b in samples["broken_by"]]
    assert sum(broken) == 120 - block["robust"]["correct"] - (120 - d["clean"]["correct"])
    assert d["examples"] and len(d["examples"][0]["x"]) == 64
    with pytest.raises(ValueError, match="not evaluated"):
        r.robust_accuracy(0.5)
    assert "robust accuracy" in r.summary()


def test_report_round_trip_and_render(quick_report: RobustnessReport, tmp_path: Path) -> None:
    path = quick_report.to_json(tmp_path / "report.json")
    again = RobustnessReport.from_json(tmp_path)
    assert again.to_dict() == json.loads(path.read_text())
    assert again.robust_accuracy() == quick_report.robust_accuracy()
    written = render(again, tmp_path)
    assert (tmp_path / "report.html").is_file() and (tmp_path / "report.md").is_file()
    assert written
    bad = dict(quick_report.to_dict(), schema_version=99)
    with pytest.raises(ValueError, match="schema_version"):
        RobustnessReport(bad)


def _untimed(per_eps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**b, "attacks": [{k: v for k, v in a.items() if k != "seconds"} for a in b["attacks"]]}
        for b in per_eps
    ]


def test_resume_after_interrupt_gives_same_numbers(
    digits_model: tuple[Classifier, TensorData], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clf, test = digits_model
    kw: dict[str, Any] = {
        "eps": [0.1],
        "suite": "quick",
        "n": 100,
        "batch_size": 25,
        "audit": False,
    }
    full = evaluate(clf, test, **kw).to_dict()
    calls: list[int] = []
    real = batch_module.run_batch

    def flaky(job: Any, index: Any, x: Any, y: Any, b: int) -> dict[str, Any]:
        calls.append(b)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job, index, x, y, b)

    monkeypatch.setattr(runner_module, "run_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        evaluate(clf, test, state_dir=tmp_path, **kw)
    assert sorted(p.name for p in tmp_path.glob("batch_*.pt")) == [
        "batch_00000.pt",
        "batch_00001.pt",
    ]
    calls.clear()
    resumed = evaluate(clf, test, state_dir=tmp_path, **kw).to_dict()
    assert calls == [2, 3]  # only the unfinished batches ran
    assert _untimed(resumed["per_eps"]) == _untimed(full["per_eps"])
    assert resumed["samples"] == full["samples"]
    with pytest.raises(ValueError, match="different run"):
        evaluate(clf, test, state_dir=tmp_path, **{**kw, "eps": [0.2]})


def test_classic_suite_gives_min_norm_curves(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    suite = {
        "name": "mini-classic",
        "cascade": False,
        "attacks": [{"attack": "fgsm"}, {"attack": "deepfool", "steps": 20}],
    }
    r = evaluate(clf, test, eps=[0.1], suite=suite, n=60, audit=False).to_dict()
    sources = [c["source"] for c in r["curves"]]
    assert sources == ["sweep", "deepfool"]
    curve = r["curves"][1]
    assert curve["accuracy"][0] == pytest.approx(r["clean"]["accuracy"])
    assert all(a >= b for a, b in zip(curve["accuracy"], curve["accuracy"][1:], strict=False))


def test_bad_arguments(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    with pytest.raises(ValueError, match="eps"):
        evaluate(clf, test, eps=[])
    with pytest.raises(ValueError, match="eps"):
        evaluate(clf, test, eps=[-0.1])
    with pytest.raises(ValueError, match="unknown suite"):
        evaluate(clf, test, eps=0.1, suite="nope")
    with pytest.raises(ValueError, match="inputs-out-of-bounds"):
        evaluate(clf, (test.x * 3, test.y), eps=0.1)
    with pytest.raises(TypeError):
        evaluate(torch.nn.Linear(2, 2), test, eps=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labels"):
        evaluate(clf, (test.x[:10], test.y[:10] + 20), eps=0.1)


def test_transfer_matrix(digits_model: tuple[Classifier, TensorData]) -> None:
    clf, test = digits_model
    other = models.build("mlp", input_shape=(1, 8, 8), num_classes=10)
    x, y = test.x[:40], test.y[:40]
    out = transfer_matrix({"a": clf, "b": other}, {"a": clf}, x, y, eps=0.15)
    assert out["sources"] == ["a", "b"] and out["targets"] == ["a"] and out["n"] == 40
    white = evaluate(clf, (x, y), eps=0.15, audit=False).robust_accuracy()
    assert out["accuracy"][0][0] == pytest.approx(white, abs=0.05)  # diagonal: white-box


def test_cli_eval_and_report(
    digits_model: tuple[Classifier, TensorData], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clf, _ = digits_model
    ckpt = tmp_path / "ckpt"
    models.save(clf, ckpt, dataset="digits")
    out = tmp_path / "eval"
    code = main(
        [
            "-q",
            "eval",
            "--checkpoint",
            str(ckpt),
            "--eps",
            "0.1,0.2",
            "--n",
            "60",
            "--audit-n",
            "30",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "robust accuracy" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["eps"] == [0.1, 0.2] and report["data"]["name"] == "digits"
    assert (out / "report.html").is_file() and (out / "samples.csv").is_file()
    (out / "report.html").unlink()
    assert main(["-q", "report", str(out)]) == 0
    assert (out / "report.html").is_file()
    code = main(["-q", "eval", "--checkpoint", str(ckpt), "--eps", "x", "--out", str(out)])
    assert code == 2 and "--eps" in capsys.readouterr().err
