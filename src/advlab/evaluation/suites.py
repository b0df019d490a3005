"""Attack suites (registry ``suites``): which attacks an evaluation runs, in which order.

A suite is a list of :class:`AttackSpec` plus ``cascade``: with ``cascade=True`` each attack only
sees the samples that every earlier attack left robust (AutoAttack's protocol: same worst case,
far cheaper); with ``cascade=False`` every attack runs on every correctly classified sample, so
each attack's own accuracy is known (what the gradient-masking audit compares).

Built-in suites (``norm`` is ``"linf"`` or ``"l2"``):

* ``quick``: FGSM (FGM for L2) and PGD-20 with step 2.5·eps/20 and a random start.
* ``standard``: AutoAttack's standard ensemble (Croce & Hein 2020), in its order: APGD-CE,
  targeted APGD-DLR over 9 target classes, targeted FAB over 9 target classes, Square with 5,000
  queries; cascaded. The APGD attacks stop on a sample at its first adversarial iterate (the
  same robust accuracy, fewer gradients than AutoAttack, which runs every step).
* ``classic``: the seed decks' attacks, each on its own: FGSM, I-FGSM/BIM, RAND+FGSM
  (α = eps/2), Carlini–Wagner (L∞ with 100 steps per τ/c stage from c = 1e-3 instead of the
  paper's 1,000 from 1e-5, ~25× fewer queries; or L2 with its defaults) and DeepFool.
* ``blackbox``: Square (score-based, no gradients). Transfer attacks from source models
  (``evaluate(..., transfer_from=...)``, ``advlab eval --transfer-from``) are scored in the
  report's ``transfer`` block and compared with the white-box result by the audit.

A custom suite comes from a mapping (e.g. a TOML table)::

    name = "mine"
    cascade = true
    [[attacks]]
    attack = "pgd"
    steps = 100
    step_size = "eps/40"      # numbers may be given relative to eps: "eps", "eps/K", "K*eps"
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from advlab.attacks import Attack, BudgetAttack, attacks
from advlab.registry import Registry

_REL = re.compile(
    r"^\s*(?:(?P<a>[0-9.eE+-]+)\s*\*\s*)?eps\s*(?:(?P<op>[*/])\s*(?P<b>[0-9.eE+-]+))?\s*$"
)


def _eps_factor(text: str) -> float:
    """``"eps/4"`` -> 0.25, ``"2.5*eps"`` -> 2.5, ``"eps"`` -> 1.0."""
    m = _REL.match(text)
    if not m:
        raise ValueError(
            f"a value relative to eps must look like 'eps', 'eps/K' or 'K*eps'; got {text!r}"
        )
    try:
        factor = float(m["a"]) if m["a"] else 1.0
        if m["b"]:
            b = float(m["b"])
            factor = factor / b if m["op"] == "/" else factor * b
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"cannot read {text!r} as a multiple of eps") from None
    return factor


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a suite: registry ``name``, fixed ``kwargs``, and ``relative`` kwargs given
    as multiples of eps (e.g. ``{"step_size": 2.5 / 20}``); ``label`` names it in reports."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    relative: Mapping[str, float] = field(default_factory=dict)
    label: str = ""
    view: str = ""  # "" the evaluated model; "naive" / "adaptive": a defended model's views
    factory: type[Attack] | None = None  # an attack class outside the registry (a defense's own)

    @property
    def title(self) -> str:
        return self.label or self.name

    @property
    def budget(self) -> bool:
        """Whether the attack takes an eps (else it is a minimum-norm attack run once)."""
        factory = self.factory or attacks.get(self.name)
        return isinstance(factory, type) and issubclass(factory, BudgetAttack)

    def build(self, norm: str, eps: float | None, seed: int) -> Attack:
        kw: dict[str, Any] = {"norm": norm, "seed": seed, **self.kwargs}
        if self.budget:
            if eps is None:
                raise ValueError(f"{self.name} is a budget attack and needs an eps")
            kw["eps"] = eps
            kw.update({k: f * eps for k, f in self.relative.items()})
        if self.factory is not None:
            return self.factory(**kw)
        return attacks.build(self.name, **kw)

    def describe(self, norm: str) -> dict[str, Any]:
        """JSON-ready description (hyperparameters at eps = 1 for the relative ones)."""
        atk = self.build(norm, 1.0 if self.budget else None, 0)
        config = {k: v for k, v in atk.config().items() if k not in ("eps", "seed")}
        config.update({k: f"{f:g}*eps" for k, f in self.relative.items()})
        return {
            "name": self.title,
            "attack": self.name,
            "kind": "budget" if self.budget else "min-norm",
            "config": config,
            **({"view": self.view} if self.view else {}),
        }


@dataclass(frozen=True)
class Suite:
    name: str
    attacks: tuple[AttackSpec, ...]
    cascade: bool
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.attacks:
            raise ValueError(f"suite {self.name!r} has no attacks")
        titles = [a.title for a in self.attacks]
        if len(set(titles)) != len(titles):
            raise ValueError(f"suite {self.name!r} names an attack twice: {titles}; give labels")

    def check_norm(self, norm: str) -> None:
        for spec in self.attacks:
            try:
                spec.build(norm, 1.0 if spec.budget else None, 0)
            except ValueError as err:
                raise ValueError(f"suite {self.name!r}, attack {spec.title!r}: {err}") from None

    def describe(self, norm: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "cascade": self.cascade,
            "attacks": [a.describe(norm) for a in self.attacks],
            "notes": list(self.notes),
        }


suites: Registry[Suite] = Registry("suite")


@suites.register("quick")
def quick(norm: str = "linf") -> Suite:
    single = AttackSpec(
        "fgsm" if norm == "linf" else "fgm", label="fgsm" if norm == "linf" else "fgm"
    )
    pgd = AttackSpec("pgd", {"steps": 20}, {"step_size": 2.5 / 20}, label="pgd-20")
    return Suite("quick", (single, pgd), cascade=False)


@suites.register("standard")
def standard(norm: str = "linf") -> Suite:
    specs = [
        AttackSpec("apgd-ce", {"steps": 100, "early_stop": True}),
        AttackSpec("apgd-t", {"steps": 100, "n_target_classes": 9, "early_stop": True}),
        AttackSpec("fab-t", {"steps": 100, "n_target_classes": 9}),
    ]
    notes: list[str] = []
    if "square" in attacks.names():
        specs.append(AttackSpec("square", {"n_queries": 5000}))
    else:
        notes.append("square is not available; the suite runs without its black-box member")
    return Suite("standard", tuple(specs), cascade=True, notes=tuple(notes))


@suites.register("classic")
def classic(norm: str = "linf") -> Suite:
    if norm == "linf":
        specs = [
            AttackSpec("fgsm"),
            AttackSpec("bim"),
            AttackSpec("rand-fgsm", relative={"alpha": 0.5}),
            AttackSpec("cw-linf", {"steps": 100, "initial_const": 1e-3}),
            AttackSpec("deepfool"),
        ]
    else:
        specs = [
            AttackSpec("fgm"),
            AttackSpec("pgd", {"steps": 10, "random_start": False}, {"step_size": 0.25}, "bim-l2"),
            AttackSpec("cw-l2"),
            AttackSpec("deepfool"),
        ]
    return Suite("classic", tuple(specs), cascade=False)


@suites.register("blackbox")
def blackbox(norm: str = "linf") -> Suite:
    if "square" not in attacks.names():
        raise ValueError("the blackbox suite needs the square attack, which is not registered")
    return Suite("blackbox", (AttackSpec("square", {"n_queries": 5000}),), cascade=True)


def suite_from_config(config: Mapping[str, Any]) -> Suite:
    """A custom suite from ``{"name", "cascade", "attacks": [{"attack": NAME, ...kwargs}]}``."""
    if not isinstance(config, Mapping):
        raise ValueError(f"a custom suite must be a table; got {type(config).__name__}")
    unknown = set(config) - {"name", "cascade", "attacks"}
    if unknown:
        raise ValueError(f"unknown suite keys {sorted(unknown)}; use name, cascade, attacks")
    entries = config.get("attacks")
    if not isinstance(entries, list) or not entries:
        raise ValueError("a custom suite needs a non-empty list 'attacks' of tables")
    specs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "attack" not in entry:
            raise ValueError(f"suite attack #{i + 1} must be a table with an 'attack' name")
        fixed: dict[str, Any] = {}
        relative: dict[str, float] = {}
        for key, value in entry.items():
            if key in ("attack", "label"):
                continue
            if key in ("eps", "norm", "seed"):
                raise ValueError(f"suite attack #{i + 1}: {key} is set by the evaluation")
            if isinstance(value, str) and "eps" in value:
                relative[key] = _eps_factor(value)
            else:
                fixed[key] = value
        attacks.get(str(entry["attack"]))  # unknown names list the known ones
        specs.append(AttackSpec(str(entry["attack"]), fixed, relative, str(entry.get("label", ""))))
    return Suite(str(config.get("name", "custom")), tuple(specs), bool(config.get("cascade", True)))


def _takes(name: str, arg: str) -> bool:
    return arg in inspect.signature(attacks.get(name)).parameters


def defended_suite(
    suite: Suite, *, detector: bool = False, extra: Sequence[AttackSpec] = ()
) -> Suite:
    """The suite for a defended model (:class:`advlab.defenses.Defended`): every attack crafted
    on the defense-unaware ``naive()`` view (same titles), then every attack crafted on the
    informed ``adaptive()`` view (BPDA / EOT / detector-aware; titles end in ``(adaptive)``).
    Both are scored on the defended model, so the report shows the two side by side and the
    worst case covers both. Against a ``detector`` the adaptive attacks that take a ``loss``
    use the CW margin loss unless the suite sets one: cross-entropy saturates where the
    detector term lifts the true class, the margin keeps its gradient. They also stop each
    input at its first misclassified and undetected iterate (``early_stop``) unless the suite
    says otherwise: the objective jumps where a detector fires, so a last iterate is often
    detected although an earlier one got through. ``extra``: the defense's
    own adaptive attacks (:meth:`advlab.defenses.Defended.adaptive_attacks`), appended on the
    adaptive view."""
    naive = [replace(a, view="naive") for a in suite.attacks]
    adaptive = []
    for a in suite.attacks:
        kwargs = dict(a.kwargs)
        for arg, value in (("loss", "margin"), ("early_stop", True)):
            if detector and arg not in kwargs and _takes(a.name, arg):
                kwargs[arg] = value
        adaptive.append(replace(a, kwargs=kwargs, view="adaptive", label=f"{a.title} (adaptive)"))
    adaptive += [replace(a, view="adaptive", label=f"{a.title} (adaptive)") for a in extra]
    notes = (*suite.notes, "defended model: naive and adaptive (BPDA/EOT/detector-aware) views")
    return Suite(suite.name, (*naive, *adaptive), suite.cascade, notes)


def get_suite(suite: str | Suite | Mapping[str, Any], norm: str) -> Suite:
    """A :class:`Suite` from a registry name, a mapping (custom) or a ready ``Suite``; checks
    that every attack supports ``norm``."""
    if isinstance(suite, Suite):
        out = suite
    elif isinstance(suite, str):
        out = suites.build(suite, norm=norm)
    else:
        out = suite_from_config(suite)
    out.check_norm(norm)
    return out
