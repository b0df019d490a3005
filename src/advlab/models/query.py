"""Query access (black-box threat models): a Classifier that answers forward queries only.

``query_access(clf, "scores")`` exposes the model's scores and ``query_access(clf, "labels")``
only its top-1 label (as logits that are 0 for the predicted class and -1e4 elsewhere, so every
attack's success test still works). Each input answered counts one query (``.queries``), and any
attempt to differentiate through the wrapper raises :class:`GradientAccessError`, so an attack
that succeeds on it provably used no gradients.
"""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from advlab.models.classifier import Classifier, wrap_like

Access = Literal["scores", "labels"]


class GradientAccessError(RuntimeError):
    """A gradient was requested from a model that only answers queries."""


class _Refuse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, out: Tensor) -> Tensor:
        return out.clone()

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> Any:
        raise GradientAccessError(
            "this model is query-only (advlab.models.query_access): it answers forward queries "
            "and refuses gradients; use a black-box attack (square, hsja, one-pixel, pgd with "
            "gradient='spsa' or 'nes') or a transfer attack"
        )


class _Oracle(nn.Module):
    def __init__(self, model: Classifier, access: Access) -> None:
        super().__init__()
        self.model = model
        self.access = access
        self.queries = 0

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            out = self.model.logits(x.detach(), check=False).float()
            if self.access == "labels":
                hot = torch.full_like(out, -1e4)
                out = hot.scatter_(1, out.argmax(1, keepdim=True), 0.0)
        self.queries += int(x.shape[0])
        if torch.is_grad_enabled() and x.requires_grad:
            return cast(Tensor, _Refuse.apply(x, out))  # type: ignore[no-untyped-call]
        return out


class QueryModel(Classifier):
    """A :class:`Classifier` over an oracle; ``queries`` counts the inputs it has answered."""

    @property
    def _oracle(self) -> _Oracle:
        return cast(_Oracle, self.net)

    @property
    def queries(self) -> int:
        return self._oracle.queries

    def reset_queries(self) -> None:
        self._oracle.queries = 0

    @property
    def access(self) -> Access:
        return self._oracle.access


def query_access(model: Classifier, access: Access = "scores") -> QueryModel:
    """Wrap ``model`` so that only forward queries (``"scores"`` or ``"labels"``) are possible."""
    if not isinstance(model, Classifier):
        raise TypeError(f"model must be an advlab Classifier; got {type(model).__name__}")
    if access not in ("scores", "labels"):
        raise ValueError(f"access must be 'scores' or 'labels'; got {access!r}")
    return cast(QueryModel, wrap_like(model, _Oracle(model, access), QueryModel))
