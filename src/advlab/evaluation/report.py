"""``RobustnessReport``: the result of :func:`advlab.evaluate`, a thin view over the JSON
document described in ``docs/report-format.md`` (``schema_version`` 1)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from advlab.evaluation.flags import Flag
from advlab.utils.files import atomic_write_json

SCHEMA_VERSION = 1
KIND = "advlab-robustness-report"


class RobustnessReport:
    """Read access to a robustness report; ``to_dict()`` is the JSON document itself."""

    def __init__(self, data: dict[str, Any]) -> None:
        if data.get("kind") != KIND:
            raise ValueError(f"not an advlab robustness report (kind {data.get('kind')!r})")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"report schema_version {data.get('schema_version')!r} is not supported "
                f"(this advlab reads version {SCHEMA_VERSION})"
            )
        self._data = data

    # ------------------------------------------------------------------ numbers
    @property
    def clean_accuracy(self) -> float:
        return float(self._data["clean"]["accuracy"])

    @property
    def eps(self) -> list[float]:
        return [float(e) for e in self._data["eps"]]

    @property
    def norm(self) -> str:
        return str(self._data["norm"])

    def _at(self, eps: float) -> dict[str, Any]:
        for block in self._data["per_eps"]:
            if abs(block["eps"] - eps) <= 1e-9 * max(1.0, abs(eps)):
                return dict(block)
        raise ValueError(f"eps {eps} was not evaluated; evaluated: {self.eps}")

    def robust_accuracy(self, eps: float | None = None) -> float:
        """Accuracy under the per-sample worst case of the suite at ``eps`` (default: the
        largest evaluated eps)."""
        e = max(self.eps) if eps is None else eps
        return float(self._at(e)["robust"]["accuracy"])

    def attack_accuracy(self, attack: str, eps: float | None = None) -> float:
        """Accuracy after ``attack`` at ``eps``: that attack alone (non-cascaded suites) or
        after it and every earlier attack (cascaded suites)."""
        e = max(self.eps) if eps is None else eps
        for entry in self._at(e)["attacks"]:
            if entry["attack"] == attack:
                return float(entry["accuracy"])
        names = [a["attack"] for a in self._at(e)["attacks"]]
        raise ValueError(f"no attack {attack!r} in this report; attacks: {names}")

    @property
    def flags(self) -> list[Flag]:
        return [Flag(f["code"], f["message"], f.get("evidence", {})) for f in self._data["flags"]]

    # ------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        return self._data

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_json(path, self._data)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> RobustnessReport:
        p = Path(path)
        if p.is_dir():
            p = p / "report.json"
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise ValueError(f"no report at {p}") from None
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read the report {p}: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{p} does not hold a report object")
        return cls(data)

    def summary(self) -> str:
        """A few lines for a terminal."""
        d = self._data
        lines = [
            f"{d['model']['name']} on {d['data']['name']} ({d['data']['n']} samples), suite "
            f"{d['suite']['name']}, {d['norm']}: clean accuracy {self.clean_accuracy:.2%}"
        ]
        for block in d["per_eps"]:
            r = block["robust"]
            parts = ", ".join(f"{a['attack']} {a['accuracy']:.2%}" for a in block["attacks"])
            lines.append(
                f"  eps {block['eps']:g}: robust accuracy {r['accuracy']:.2%} "
                f"[{r['ci'][0]:.2%}, {r['ci'][1]:.2%}]  ({parts})"
            )
        lines += [f"  {f}" for f in self.flags] or ["  no flags raised"]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"RobustnessReport(model={self._data['model']['name']!r}, suite="
            f"{self._data['suite']['name']!r}, clean={self.clean_accuracy:.4f}, "
            f"robust={{{', '.join(f'{e:g}: {self.robust_accuracy(e):.4f}' for e in self.eps)}}})"
        )
