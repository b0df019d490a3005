"""A model ensemble as a defense: several Classifiers with one input space, outputs averaged."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, cast

import torch
from torch import Tensor, nn

from advlab.defenses.base import Defended, GradientStory, defenses
from advlab.defenses.preprocess._common import match_mode
from advlab.models.classifier import Classifier

Combine = Literal["logits", "probs"]


class _Average(nn.Module):
    def __init__(self, members: list[Classifier], combine: Combine) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.combine = combine

    def forward(self, x: Tensor) -> Tensor:
        outs = torch.stack([cast(Classifier, m).logits(x, check=False) for m in self.members])
        if self.combine == "logits":
            return outs.mean(0)
        # log of the mean probability, computed stably: logsumexp(log p_m) - log M
        return torch.logsumexp(torch.log_softmax(outs, 2), 0) - math.log(len(self.members))


class ModelEnsemble(Defended):
    """An ensemble of classifiers as one defended model.

    Members are advlab Classifiers with the same bounds, number of classes and input shape (each
    keeps its own normalization). ``combine="logits"`` (default) returns the mean of the
    members' logits; ``combine="probs"`` returns ``log(mean softmax)``, valid logits whose
    softmax is the averaged probability. Goodfellow, Shlens & Szegedy 2015 report that an
    ensemble (of maxout networks) is little more robust than its members; Tramèr et al. 2018 and
    He et al. 2017 ("Adversarial example defenses: ensembles of weak defenses are not strong")
    make the same point for ensembles and ensembled detectors.

    Gradient story ``"exact"``: the average is differentiable, so autograd through the ensemble is
    the honest gradient; ``naive()`` and ``adaptive()`` are the ensemble itself.
    """

    name: ClassVar[str] = "ensemble"
    gradient: ClassVar[GradientStory] = "exact"

    def __init__(self, *members: Classifier, combine: Combine = "logits") -> None:
        if combine not in ("logits", "probs"):
            raise ValueError(f"combine must be 'logits' or 'probs'; got {combine!r}")
        if len(members) < 2:
            raise ValueError(
                f"an ensemble needs at least two member Classifiers; got {len(members)}"
            )
        for i, m in enumerate(members):
            if not isinstance(m, Classifier):
                raise TypeError(
                    f"ensemble member {i} is not an advlab Classifier: {type(m).__name__}"
                )
        first = members[0]
        if first.num_classes is None:
            raise ValueError("ensemble members must know their num_classes")
        for i, m in enumerate(members[1:], start=1):
            if m.num_classes != first.num_classes:
                raise ValueError(
                    f"ensemble members disagree on num_classes: member 0 has {first.num_classes}, "
                    f"member {i} has {m.num_classes}"
                )
            same_bounds = (
                m.low.shape == first.low.shape
                and m.high.shape == first.high.shape
                and bool(torch.equal(m.low.cpu(), first.low.cpu()))
                and bool(torch.equal(m.high.cpu(), first.high.cpu()))
            )
            if not same_bounds:
                raise ValueError(
                    f"ensemble members disagree on bounds: member 0 has {first.bounds}, member {i} "
                    f"has {m.bounds}"
                )
            if (
                None not in (m.input_shape, first.input_shape)
                and m.input_shape != first.input_shape
            ):
                raise ValueError(
                    f"ensemble members disagree on input shape: member 0 takes "
                    f"{first.input_shape}, member {i} takes {m.input_shape}"
                )
        self.combine: Combine = combine
        super().__init__(_Average(list(members), combine), list(members))
        if self.input_shape is None:
            self.input_shape = next((m.input_shape for m in members if m.input_shape), None)
        match_mode(self, list(members))

    @property
    def members(self) -> list[Classifier]:
        return self.bases

    def defense_args(self) -> dict[str, Any]:
        return {"combine": self.combine}


defenses.register(ModelEnsemble.name, ModelEnsemble)

__all__ = ["ModelEnsemble"]
