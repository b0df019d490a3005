"""Feature squeezing (Xu, Evans & Qi 2018, "Feature Squeezing: Detecting adversarial examples in
deep neural networks"): a detector that compares the model's prediction on an input with its
predictions on squeezed copies of it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from advlab.attacks import Attack
from advlab.defenses.base import Defended, GradientStory, bpda, defenses, detection_aware
from advlab.defenses.preprocess._common import check_float, check_int, match_mode
from advlab.defenses.preprocess.filters import median_filter
from advlab.defenses.preprocess.quantize import reduce_bit_depth
from advlab.defenses.squeeze_attack import JointSqueezeAttack, SqueezeAware
from advlab.models.classifier import Classifier
from advlab.utils.modes import restored_modes


class NotFittedError(RuntimeError):
    """A detector was asked to reject inputs before its threshold was fitted."""


class _Classify(nn.Module):
    def __init__(self, base: Classifier) -> None:
        super().__init__()
        self.base = base

    def forward(self, x: Tensor) -> Tensor:
        return self.base.logits(x, check=False)


class FeatureSqueezing(Defended):
    """Feature-squeezing detector around ``base`` (Xu, Evans & Qi 2018).

    Score of an input ``x``: ``max_i || softmax(f(x)) - softmax(f(s_i(x))) ||_1`` over the
    squeezers ``s_i``; an input is rejected when its score exceeds a threshold fitted on clean
    validation data for a target false-positive rate (:meth:`fit`, the paper's 5% by default).
    Squeezers (the paper's MNIST configuration by default): bit-depth reduction to ``bits`` bits
    (default 1) and a ``median x median`` median filter (default 2, i.e. 2x2, scipy-style window
    and reflect border); pass ``None`` to drop one. Classification is the base model's.

    The threshold, the target rate and a fitted flag are persistent buffers, so
    ``defenses.build("feature-squeezing", base, **defense_args())`` plus ``load_state_dict``
    restores a fitted detector; an unfitted one raises :class:`NotFittedError` in ``reject``
    and ``adaptive``.

    Deviations: no non-local-means squeezer (the paper's CIFAR-10/ImageNet configurations add
    one); the threshold is the ``(1 - fpr)`` empirical quantile of the validation scores (the
    paper picks the threshold reaching 5% FPR on its validation set: the same rule).

    Gradient story ``"bpda"``: ``naive()`` is the model itself (an attacker ignoring the
    detector sees the base's exact gradient). ``adaptive()`` is the joint detector-aware view
    :class:`~advlab.defenses.squeeze_attack.SqueezeAware`: per wrong class the lowest
    log-probability over the plain and squeezed branches, so an attack pushes every branch to
    the same wrong class (He et al. 2017; Sharma & Chen 2018), with the true class lifted where
    the detector fires; BPDA (exact forward, identity backward) through bit-depth reduction,
    autograd through the median. ``score_aware()`` is the earlier, weaker view (the score folded
    in with :func:`advlab.defenses.detection_aware`). Use a margin loss for attacks on either.
    The strongest attack advlab has on this detector is
    :class:`~advlab.defenses.squeeze_attack.JointSqueezeAttack` (not in the attack registry;
    call it on the detector; ``advlab.evaluate`` runs it too), which fixes the bit-depth branch
    first and then matches the other branches to it (docs/defenses/preprocessing.md has the
    MNIST numbers).
    """

    name: ClassVar[str] = "feature-squeezing"
    gradient: ClassVar[GradientStory] = "bpda"
    detects: ClassVar[bool] = True

    threshold: Tensor
    fitted: Tensor
    target_fpr: Tensor

    def __init__(self, base: Classifier, *, bits: int | None = 1, median: int | None = 2) -> None:
        if not isinstance(base, Classifier):
            raise TypeError(f"a defense needs an advlab Classifier as its base; got {base!r}")
        self.bits = None if bits is None else check_int("bits", bits, 1, 8)
        self.median = None if median is None else check_int("median", median, 2)
        if self.bits is None and self.median is None:
            raise ValueError("feature squeezing needs at least one squeezer (bits or median)")
        if self.median is not None and (
            base.input_shape is not None and len(base.input_shape) != 3
        ):
            raise ValueError(f"the median squeezer needs images (C, H, W); got {base.input_shape}")
        super().__init__(_Classify(base), [base])
        self.register_buffer("threshold", torch.tensor(math.nan))
        self.register_buffer("fitted", torch.tensor(False))
        self.register_buffer("target_fpr", torch.tensor(math.nan))
        match_mode(self, [base])

    # ---------------------------------------------------------------------------- squeezers
    def squeezers(self) -> list[tuple[str, Callable[[Tensor], Tensor]]]:
        """``(name, function)`` for each squeezer, in score order."""
        out: list[tuple[str, Callable[[Tensor], Tensor]]] = []
        if self.bits is not None:
            bits = self.bits
            out.append(
                (f"bit-depth-{bits}", lambda x: reduce_bit_depth(x, bits, self.low, self.high))
            )
        if self.median is not None:
            k = self.median
            out.append((f"median-{k}x{k}", lambda x: median_filter(x, k)))
        return out

    def _scores(self, x: Tensor, *, through: bool) -> Tensor:
        """Scores ``(N,)``; ``through=True`` passes gradients through the squeezers with BPDA."""
        p = torch.softmax(self.base.logits(x, check=False).float(), 1)
        best: Tensor | None = None
        for _, squeeze in self.squeezers():
            with torch.no_grad():
                real = squeeze(x.detach())
            xs = bpda(real, x) if through else real
            q = torch.softmax(self.base.logits(xs, check=False).float(), 1)
            d = (p - q).abs().sum(1)
            best = d if best is None else torch.maximum(best, d)
        if best is None:  # unreachable: __init__ requires at least one squeezer
            raise RuntimeError("feature squeezing has no squeezer")
        return best

    def score(self, x: Tensor, *, batch_size: int = 1024) -> Tensor:
        """Detection scores ``(N,)`` (max L1 distance between softmax outputs), no gradient."""
        self.check_input(x)
        with torch.no_grad():
            parts = [
                self._scores(x[i : i + batch_size], through=False)
                for i in range(0, x.shape[0], batch_size)
            ]
        return torch.cat(parts) if parts else torch.empty(0, device=x.device)

    # ----------------------------------------------------------------------------- fitting
    def fit(self, x_val: Tensor, fpr: float = 0.05, *, batch_size: int = 1024) -> Tensor:
        """Set the threshold so that a fraction ``fpr`` (at most) of the clean validation inputs
        ``x_val`` would be rejected: the ``ceil(n (1 - fpr))``-th smallest score. The model runs
        in eval mode for this (modes are restored afterwards). Returns the threshold."""
        check_float("fpr", fpr, low=0.0, high=1.0, high_open=True)
        if not isinstance(x_val, Tensor) or x_val.ndim < 2 or x_val.shape[0] == 0:
            raise ValueError("fit needs a non-empty batch of clean validation inputs (N, ...)")
        with restored_modes(self):
            self.eval()
            s = self.score(x_val, batch_size=batch_size)
        k = max(1, math.ceil(s.numel() * (1.0 - fpr)))
        t = s.sort().values[k - 1]
        self.threshold.fill_(float(t))
        self.target_fpr.fill_(float(fpr))
        self.fitted.fill_(True)
        return self.threshold.clone()

    def _require_fitted(self) -> None:
        if not bool(self.fitted):
            raise NotFittedError(
                "the feature-squeezing detector has no threshold yet: call "
                "fit(x_val, fpr=0.05) on clean validation inputs (or load a fitted state_dict)"
            )

    # ----------------------------------------------------------------------- defense views
    def reject(self, x: Tensor) -> Tensor:
        self._require_fitted()
        return self.score(x) > self.threshold.to(x.device)

    def adaptive(self) -> Classifier:
        """The joint, detector-aware view :class:`~advlab.defenses.squeeze_attack.SqueezeAware`
        (every branch pushed to the same wrong class; the true class lifted where the detector
        fires). For the strongest attack advlab has on this detector, run
        :class:`~advlab.defenses.squeeze_attack.JointSqueezeAttack` on it (``advlab.evaluate``
        does, see :meth:`adaptive_attacks`)."""
        self._require_fitted()
        with restored_modes(self):
            return SqueezeAware(self)

    def adaptive_attacks(self) -> tuple[type[Attack], ...]:
        """:class:`~advlab.defenses.squeeze_attack.JointSqueezeAttack` (Linf), which
        ``advlab.evaluate`` runs on the adaptive view besides the suite's attacks."""
        return (JointSqueezeAttack,)

    def score_aware(self, *, weight: float = 10.0, margin: float = 20.0) -> Classifier:
        """The earlier, weaker adaptive view: :func:`advlab.defenses.detection_aware` with score
        ``score(x) - threshold`` (BPDA through both squeezers), the base's logits elsewhere."""
        self._require_fitted()

        def excess(x: Tensor) -> Tensor:
            return self._scores(x, through=True) - self.threshold.to(x.device)

        with restored_modes(self):
            return detection_aware(self, excess, weight=weight, margin=margin)

    def defense_args(self) -> dict[str, Any]:
        return {"bits": self.bits, "median": self.median}

    def extra_repr(self) -> str:
        fitted = f"threshold={float(self.threshold):.4g}" if bool(self.fitted) else "unfitted"
        return f"{super().extra_repr()}, {fitted}"


defenses.register(FeatureSqueezing.name, FeatureSqueezing)

__all__ = ["FeatureSqueezing", "NotFittedError"]
