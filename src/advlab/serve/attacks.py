"""The web demo's attack menu: registry attacks that answer fast on one image, each with how
the page's two knobs (``eps``, ``steps``) map onto its hyperparameters.

All are Linf except DeepFool (minimum-norm, Linf variant: it ignores ``eps`` and finds the
smallest perturbation it can, within ``steps`` iterations). Every attack is deterministic
(``seed=0``). The attacked label is the model's own prediction on the input (a drawn digit
has no true label), so "success" means the prediction changed (or, with a target, became the
target).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from advlab import attacks
from advlab.attacks import Attack


@dataclass(frozen=True)
class AttackSpec:
    """One menu entry. ``build(eps, steps, **overrides)`` makes the attack (``overrides``: extra
    hyperparameters of a budget attack, e.g. ``early_stop=True``, which the app sets for
    adaptive attacks on a detector); ``steps`` is ``(min, max, default)`` or ``None`` when the
    attack has no step count (FGSM); ``steps_label`` names what the steps count (iterations,
    queries)."""

    name: str
    label: str
    description: str
    build: Callable[..., Attack]
    steps: tuple[int, int, int] | None = (1, 200, 20)
    steps_label: str = "iterations"
    uses_eps: bool = True

    @property
    def targeted(self) -> bool:
        steps = 1 if self.steps is None else self.steps[2]
        return type(self.build(0.1, steps)).supports_targeted

    def info(self) -> dict[str, Any]:
        """The JSON object ``GET /api/attacks`` lists for this attack."""
        steps = None
        if self.steps is not None:
            lo, hi, default = self.steps
            steps = {"min": lo, "max": hi, "default": default, "label": self.steps_label}
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "uses_eps": self.uses_eps,
            "steps": steps,
            "targeted": self.targeted,
        }


def _pgd(eps: float, steps: int, **kw: Any) -> Attack:
    return attacks.build("pgd", eps=eps, steps=steps, step_size=2.5 * eps / steps, **kw)


def _pgd_margin(eps: float, steps: int, **kw: Any) -> Attack:
    return attacks.build(
        "pgd", eps=eps, steps=steps, step_size=2.5 * eps / steps, loss="margin", **kw
    )


MENU: dict[str, AttackSpec] = {
    s.name: s
    for s in (
        AttackSpec(
            "fgsm",
            "FGSM",
            "Fast gradient sign method (Goodfellow et al. 2015): one step of eps·sign(∇loss).",
            lambda eps, steps, **kw: attacks.build("fgsm", eps=eps, **kw),
            steps=None,
        ),
        AttackSpec(
            "pgd",
            "PGD",
            "Projected gradient descent (Madry et al. 2018), cross-entropy loss, random start, "
            "step 2.5·eps/steps.",
            _pgd,
        ),
        AttackSpec(
            "pgd-margin",
            "PGD, margin loss",
            "PGD on the Carlini-Wagner logit margin instead of the cross-entropy: not fooled "
            "by a saturated softmax (e.g. the distilled model).",
            _pgd_margin,
        ),
        AttackSpec(
            "bim",
            "BIM / I-FGSM",
            "Basic iterative method (Kurakin et al. 2017): no random start, step 1.25·eps/steps.",
            lambda eps, steps, **kw: attacks.build(
                "bim", eps=eps, steps=steps, step_size=1.25 * eps / steps, **kw
            ),
        ),
        AttackSpec(
            "mi-fgsm",
            "MI-FGSM",
            "Momentum iterative FGSM (Dong et al. 2018): momentum 1, step eps/steps.",
            lambda eps, steps, **kw: attacks.build("mi-fgsm", eps=eps, steps=steps, **kw),
            steps=(1, 200, 10),
        ),
        AttackSpec(
            "apgd-ce",
            "APGD-CE",
            "Auto-PGD with cross-entropy (Croce & Hein 2020): adaptive step size, no tuning.",
            lambda eps, steps, **kw: attacks.build("apgd-ce", eps=eps, steps=steps, **kw),
            steps=(1, 200, 20),
        ),
        AttackSpec(
            "apgd-dlr",
            "APGD-DLR",
            "Auto-PGD with the scale-invariant difference-of-logits-ratio loss (Croce & Hein "
            "2020).",
            lambda eps, steps, **kw: attacks.build("apgd-dlr", eps=eps, steps=steps, **kw),
            steps=(1, 200, 20),
        ),
        AttackSpec(
            "square",
            "Square (black-box)",
            "Square attack (Andriushchenko et al. 2020): random square updates, model scores "
            "only, no gradients; steps = queries.",
            lambda eps, steps, **kw: attacks.build("square", eps=eps, n_queries=steps, **kw),
            steps=(10, 2000, 500),
            steps_label="queries",
        ),
        AttackSpec(
            "deepfool",
            "DeepFool (min-norm)",
            "DeepFool, Linf (Moosavi-Dezfooli et al. 2016): the smallest step to the "
            "linearized decision boundary, repeated; ignores eps.",
            lambda eps, steps, **kw: attacks.build("deepfool", norm="linf", steps=steps, **kw),
            steps=(1, 100, 50),
            uses_eps=False,
        ),
    )
}
