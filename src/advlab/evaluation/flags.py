"""Named sanity and gradient-masking flags (each documented in ``docs/flags.md``) and the checks
that run before any attack.

A flag is data: ``code`` (the heading in docs/flags.md), ``severity`` (``info``, ``warning`` or
``error``), a one-line ``message`` with the numbers, and ``evidence`` (the numbers as a dict).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from advlab.models.classifier import Classifier

Severity = Literal["info", "warning", "error"]

#: every flag the evaluation can raise, with its severity (docs/flags.md has one section each)
CODES: dict[str, Severity] = {
    "inputs-out-of-bounds": "error",
    "model-in-train-mode": "info",
    "probability-outputs": "warning",
    "saturated-softmax": "warning",
    "randomized-model": "warning",
    "zero-gradients": "warning",
    "nonfinite-gradients": "error",
    "single-step-beats-iterative": "warning",
    "blackbox-beats-whitebox": "warning",
    "transfer-beats-whitebox": "warning",
    "large-eps-not-broken": "warning",
    "more-iterations-help": "warning",
    "noise-beats-attack": "warning",
    "loss-not-increasing": "warning",
    "eps-ball-violation": "error",
    "bounds-violation": "error",
    "nan-outputs": "error",
}


@dataclass(frozen=True)
class Flag:
    code: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unknown flag code {self.code!r}")

    @property
    def severity(self) -> Severity:
        return CODES[self.code]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, **asdict(self)}

    def __str__(self) -> str:
        return f"[{self.severity}] {self.code}: {self.message}"


def check_bounds(model: Classifier, x: Tensor) -> None:
    """Raise ``ValueError`` (flag ``inputs-out-of-bounds``) unless every input is a valid batch
    inside the model's bounds; attacking such inputs would measure nothing meaningful."""
    try:
        model.check_input(x)
    except ValueError as err:
        raise ValueError(f"inputs-out-of-bounds: {err}") from None


@dataclass
class Precheck:
    """Outcome of :func:`precheck`: the flags and whether the model is randomized."""

    flags: list[Flag]
    randomized: bool


def precheck(model: Classifier, x: Tensor, y: Tensor, *, was_training: bool) -> Precheck:
    """Checks on a probe batch (``x``, ``y`` already on the model's device; the model in eval
    mode, parameters frozen by the caller): output kind, determinism, input gradients."""
    flags: list[Flag] = []
    if was_training:
        flags.append(
            Flag(
                "model-in-train-mode",
                "the model was in train mode; the evaluation ran it in eval mode and restored it",
            )
        )
    if model.outputs == "probs":
        flags.append(
            Flag(
                "probability-outputs",
                "the model returns probabilities (outputs='probs'); attacks see log(p), whose "
                "gradient vanishes where p saturates",
            )
        )
    with torch.no_grad():
        a = model.logits(x, check=False).float()
        b = model.logits(x, check=False).float()
    scale = float(a.abs().max()) + 1.0
    diff = float((a - b).abs().max())
    randomized = diff > 1e-4 * scale
    if randomized:
        flags.append(
            Flag(
                "randomized-model",
                f"two forward passes on the same inputs differ (max logit difference {diff:.3g}) "
                "in eval mode; attacks use EOT over the model's randomness",
                {"max_logit_difference": diff},
            )
        )
    correct = a.argmax(1) == y
    if bool(correct.any()):
        xc, yc = x[correct], y[correct]
        with torch.enable_grad():
            xg = xc.detach().clone().requires_grad_(True)
            logits = model.logits(xg, check=False).float()
            loss = torch.nn.functional.cross_entropy(logits, yc, reduction="none")
            (grad,) = torch.autograd.grad(loss.sum(), xg)
        g = grad.reshape(grad.shape[0], -1)
        finite = torch.isfinite(g).all(1)
        zero = (g.abs().amax(1) == 0) & finite
        saturated = loss.detach() < 1e-7
        n = int(g.shape[0])
        if not bool(finite.all()):
            flags.append(
                Flag(
                    "nonfinite-gradients",
                    f"{int((~finite).sum())} of {n} correctly classified probe inputs have NaN or "
                    "infinite input gradients",
                    {"nonfinite": int((~finite).sum()), "n": n},
                )
            )
        if float(zero.float().mean()) > 0.5:
            flags.append(
                Flag(
                    "zero-gradients",
                    f"the cross-entropy input gradient is exactly zero on {int(zero.sum())} of "
                    f"{n} correctly classified probe inputs",
                    {"zero": int(zero.sum()), "n": n},
                )
            )
        if float(saturated.float().mean()) > 0.5:
            flags.append(
                Flag(
                    "saturated-softmax",
                    f"the softmax is saturated (cross-entropy < 1e-7) on {int(saturated.sum())} "
                    f"of {n} correctly classified probe inputs; cross-entropy gradients vanish "
                    "there (use margin/DLR-based attacks: the standard suite does)",
                    {"saturated": int(saturated.sum()), "n": n},
                )
            )
    return Precheck(flags, randomized)
