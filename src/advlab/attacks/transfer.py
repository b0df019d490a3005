"""Transfer attack (DESIGN §3, "a surrogate model plus an attack"): craft white-box on a surrogate,
score on the target with forward queries only.

``TransferAttack(surrogate, attack)(target, x, y)`` runs ``attack`` on ``surrogate`` (gradients
there) and evaluates the crafted points on ``target``: one forward query per sample, never a
gradient, so the target may be query-only (``advlab.models.query_access(clf, "labels")``). The
transferability of adversarial examples between models was observed by Szegedy et al. 2014 and
Goodfellow et al. 2015; Papernot et al. 2017 ("Practical black-box attacks against machine
learning", AsiaCCS) turned it into a black-box attack with a trained substitute (see
:mod:`advlab.evaluation.substitute`).

Not registered in ``advlab.attacks.attacks``: it needs a surrogate *model object*, which a
registry name and keyword hyperparameters (CLI, config files, the contract tests) cannot carry.
Build it directly, or with :meth:`TransferAttack.from_name` from an attack name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import torch
from torch import Tensor

from advlab.attacks.base import Attack, ModelMode, TargetSpec
from advlab.attacks.problem import Problem
from advlab.attacks.registry import attacks
from advlab.attacks.result import AttackResult
from advlab.models.classifier import Classifier


def _describe(model: Classifier) -> str:
    return model.preset or type(model.net).__name__


class TransferAttack(Attack):
    """Adversarial inputs crafted by ``attack`` on ``surrogate``, scored on the attacked model.

    Args:
        surrogate: the model the attacker holds (white-box): ``attack`` runs on it in eval mode
            (its mode and parameters' ``requires_grad`` flags are restored afterwards).
        attack: any advlab attack (budget or minimum-norm). Its norm, eps, seed and targeting
            rules are the transfer attack's: ``x_adv`` lies in its eps-ball around ``x``.

    Calling ``atk(target_model, x, y, target=None)`` returns an :class:`AttackResult` about the
    *target*: ``success``/``logits_adv`` are the target's outputs on ``x_adv``, ``queries`` is 1
    per sample (the scoring forward pass) and ``gradients`` 0; ``attack`` reads
    ``"transfer:<inner name>"``. The surrogate's cost (its own queries and gradients) and its
    white-box success are in the second result of :meth:`run`.

    Details and choices:

    * ``x`` must lie inside both models' bounds; ``x_adv`` is the surrogate's point clamped into
      the target's bounds too (clamping towards a point inside the box never leaves the eps-ball).
    * Targets: a label tensor or ``"random"`` as for any attack; ``"least-likely"`` is resolved
      on the *surrogate* (a transfer attacker has no target scores, and it spends no target
      query). With ``target=None`` the inner attack's default target (e.g. ILLC's least-likely
      class) applies, resolved the same way, and success on the target is measured against it.
    * ``model_mode`` applies to the target's scoring pass; the surrogate always runs in eval.
    * :meth:`craft` returns ``x_adv`` without querying the target at all (e.g. for ensemble
      adversarial training with static pre-trained models, Tramèr et al. 2018).
    """

    name = "transfer"

    def __init__(self, surrogate: Classifier, attack: Attack) -> None:
        if not isinstance(surrogate, Classifier):
            raise TypeError(
                f"surrogate must be an advlab Classifier; got {type(surrogate).__name__}"
            )
        if not isinstance(attack, Attack):
            raise TypeError(
                f"attack must be an advlab Attack (e.g. advlab.attacks.build('fgsm', eps=0.3)); "
                f"got {type(attack).__name__}"
            )
        super().__init__(norm=attack.norm, seed=attack.seed)
        self._surrogate = surrogate
        self._inner = attack

    @classmethod
    def from_name(cls, surrogate: Classifier, attack: str, **kwargs: Any) -> TransferAttack:
        """``TransferAttack(surrogate, advlab.attacks.build(attack, **kwargs))``."""
        return cls(surrogate, attacks.build(attack, **kwargs))

    @property
    def surrogate(self) -> Classifier:
        return self._surrogate

    @property
    def attack(self) -> Attack:
        return self._inner

    def budget(self) -> float | None:
        return self._inner.budget()

    def config(self) -> dict[str, Any]:
        return {
            "surrogate": _describe(self._surrogate),
            "attack": self._inner.name,
            "attack_config": self._inner.config(),
        }

    # ------------------------------------------------------------------ calls
    def run(
        self,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        *,
        target: TargetSpec = None,
        model_mode: ModelMode = "eval",
    ) -> tuple[AttackResult, AttackResult]:
        """``(on_target, on_surrogate)``: the result ``self(model, x, y, ...)`` returns, and the
        inner attack's own result on the surrogate (its white-box success, queries, gradients;
        tensors on the surrogate's device)."""
        with self._problem(model, x, y, target, model_mode) as p:
            x_adv, src = self._transfer(p)
            logits = p.logits(x_adv, p.all)
        return self._result(p, x_adv, logits), src

    def craft(
        self,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        *,
        target: TargetSpec = None,
        model_mode: ModelMode = "eval",
    ) -> Tensor:
        """``x_adv (N, ...)`` only, crafted on the surrogate: the target is validated against
        but never queried (except for ``num_classes`` if the target does not know it yet)."""
        with self._problem(model, x, y, target, model_mode) as p:
            x_adv, _ = self._transfer(p)
        return x_adv.detach()

    # ------------------------------------------------------------------ internals
    def _check(self, model: Classifier, x: Tensor, y: Tensor) -> Tensor:
        y = super()._check(model, x, y)
        k_target, k_source = model.num_classes, self._surrogate.num_classes
        if k_source is None:
            with torch.no_grad():
                self._surrogate.logits(x[:1].to(self._surrogate.low.device))
            k_source = self._surrogate.num_classes
        if k_source != k_target:
            raise ValueError(
                f"surrogate and target disagree on the number of classes: surrogate has "
                f"{k_source}, target has {k_target}"
            )
        try:
            self._surrogate.check_input(x.to(self._surrogate.low.device))
        except ValueError as err:
            raise ValueError(f"x is not a valid input of the surrogate: {err}") from None
        return y

    def _resolve_target(self, p: Problem, target: TargetSpec) -> Tensor | None:
        # the inner attack's default target (a ClassVar str such as "least-likely") applies
        spec = target if target is not None else cast(TargetSpec, self._inner.default_target)
        if spec is None:
            return None
        if not self._inner.supports_targeted:
            raise ValueError(f"{self._inner.name} is untargeted; do not pass target=")
        if isinstance(spec, str) and spec == "least-likely":
            with torch.no_grad():  # least likely among classes != y, by the surrogate
                logits = self._surrogate.logits(self._to_source(p.x), check=False).float()
            return logits.to(p.x.device).scatter(1, p.y.view(-1, 1), float("inf")).argmin(1)
        return super()._resolve_target(p, spec)

    def _to_source(self, t: Tensor) -> Tensor:
        return t.to(self._surrogate.low.device)

    def _transfer(self, p: Problem) -> tuple[Tensor, AttackResult]:
        """``x_adv (N, ...)`` on ``p.x``'s device (inside both models' bounds), and the inner
        attack's result on the surrogate."""
        t = self._to_source(p.target) if p.target is not None else None
        src = self._inner(
            self._surrogate,
            self._to_source(p.x),
            self._to_source(p.y),
            target=t,
            model_mode="eval",
        )
        return p.clip(src.x_adv.to(device=p.x.device, dtype=p.x.dtype)), src

    def _attack(self, p: Problem) -> tuple[Tensor, Tensor | None]:
        x_adv, _ = self._transfer(p)
        return x_adv, p.logits(x_adv, p.all)

    def _result(self, p: Problem, x_adv: Tensor, logits: Tensor | None) -> AttackResult:
        res = super()._result(p, x_adv, logits)
        return dataclasses.replace(res, attack=f"{self.name}:{self._inner.name}")
