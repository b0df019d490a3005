"""``AttackResult``: what every attack returns (DESIGN §3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class AttackResult:
    """The outcome of one attack call on a batch of ``N`` inputs.

    Attributes:
        x_adv: ``(N, ...)`` adversarial inputs, inside the model's bounds (and, for budget
            attacks, inside the eps-ball around ``x``), same dtype and device as ``x``.
        success: ``(N,)`` bool: ``x_adv`` is misclassified (untargeted) or classified as the
            target (targeted). A sample that was already misclassified and left unchanged counts
            as a success with norm 0.
        norms: ``(N,)`` size of ``x_adv - x`` in the attack's norm (``norm``), pixel units
            (L0: number of changed features).
        logits_adv: ``(N, K)`` logits on ``x_adv``.
        queries: ``(N,)`` int64 forward passes spent on each sample.
        gradients: ``(N,)`` int64 backward passes (input gradients) spent on each sample.
        y: ``(N,)`` true labels; ``target``: ``(N,)`` target labels, or ``None``.
        norm: ``"linf"``, ``"l2"``, ``"l1"`` or ``"l0"``.
        eps: the budget for budget attacks, ``None`` for minimum-norm attacks.
    """

    x_adv: Tensor
    success: Tensor
    norms: Tensor
    logits_adv: Tensor
    queries: Tensor
    gradients: Tensor
    y: Tensor
    target: Tensor | None
    norm: str
    eps: float | None
    attack: str

    def __len__(self) -> int:
        return int(self.success.shape[0])

    @property
    def targeted(self) -> bool:
        return self.target is not None

    @property
    def accuracy(self) -> float:
        """Fraction of ``x_adv`` classified as the true label (accuracy under attack)."""
        return float((self.logits_adv.argmax(1) == self.y).float().mean()) if len(self) else 0.0

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if len(self) else 0.0

    def accuracy_at(self, eps: float) -> float:
        """Accuracy under attack restricted to perturbations of size ``<= eps``.

        For a minimum-norm attack this is one point of the accuracy-vs-eps curve: a sample
        counts as robust unless the attack succeeded with a perturbation no larger than ``eps``.
        For a targeted result it is the accuracy against reaching that target only (an upper
        bound on the untargeted accuracy).
        """
        broken = self.success & (self.norms <= eps * (1 + 1e-6) + 1e-12)
        return float((~broken).float().mean()) if len(self) else 0.0

    def curve(self, eps: list[float]) -> list[tuple[float, float]]:
        """``[(eps, accuracy_at(eps)), ...]``."""
        return [(e, self.accuracy_at(e)) for e in eps]

    def cpu(self) -> AttackResult:
        fields = {k: (v.cpu() if isinstance(v, Tensor) else v) for k, v in vars(self).items()}
        return AttackResult(**fields)  # type: ignore[arg-type]

    def summary(self) -> dict[str, Any]:
        """JSON-ready aggregate numbers."""
        ok = self.success
        probs = torch.softmax(self.logits_adv.float(), 1)
        conf = probs.max(1).values
        return {
            "attack": self.attack,
            "n": len(self),
            "norm": self.norm,
            "eps": self.eps,
            "targeted": self.targeted,
            "accuracy": self.accuracy,
            "success_rate": self.success_rate,
            "mean_confidence_adv": float(conf.mean()) if len(self) else 0.0,
            "mean_norm_success": float(self.norms[ok].mean()) if ok.any() else None,
            "median_norm_success": float(self.norms[ok].median()) if ok.any() else None,
            "queries_mean": float(self.queries.float().mean()) if len(self) else 0.0,
            "gradients_mean": float(self.gradients.float().mean()) if len(self) else 0.0,
        }
