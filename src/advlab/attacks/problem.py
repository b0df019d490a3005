"""``Problem``: the per-call state an attack algorithm works on.

It holds the clean batch, labels, targets, bounds, a private random generator and per-sample
query/gradient counters, and offers the few operations every algorithm needs, each taking
``idx``, the (sorted, int64) indices of the samples being worked on.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advlab.attacks.losses import LossFn
from advlab.models.classifier import Classifier


class Problem:
    """One attack call: ``x (N, ...)``, ``y (N,)``, ``target (N,)`` or ``None``."""

    def __init__(
        self,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        target: Tensor | None,
        generator: torch.Generator,
    ) -> None:
        self.model = model
        self.x = x.detach()
        self.y = y
        self.target = target
        self.generator = generator
        self.num_classes = int(model.num_classes or 0)
        self.low = model.low.to(device=x.device, dtype=x.dtype)
        self.high = model.high.to(device=x.device, dtype=x.dtype)
        self.queries = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        self.gradients = torch.zeros_like(self.queries)
        self.all = torch.arange(x.shape[0], device=x.device)

    @property
    def targeted(self) -> bool:
        return self.target is not None

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def rows(self, t: Tensor, idx: Tensor) -> Tensor:
        """``t[idx]``, without a copy when ``idx`` is ``self.all`` (the whole batch)."""
        return t if idx is self.all else t[idx]

    def count(self, counter: Tensor, idx: Tensor, k: int = 1) -> None:
        """Add ``k`` to ``counter`` for every entry of ``idx``; a sample listed several times
        (several candidates of one input in one pass) counts once per listing."""
        if idx is self.all:
            counter += k
        else:
            counter.index_add_(0, idx, torch.full_like(idx, k, dtype=counter.dtype))

    def labels(self, idx: Tensor) -> tuple[Tensor, Tensor | None]:
        t = self.rows(self.target, idx) if self.target is not None else None
        return self.rows(self.y, idx), t

    def logits(self, xa: Tensor, idx: Tensor) -> Tensor:
        """Logits ``(len(idx), K)`` at ``xa``; counts one query per sample."""
        self.count(self.queries, idx)
        with torch.no_grad():
            return self.forward(xa, idx)

    def forward(self, xa: Tensor, idx: Tensor) -> Tensor:
        """The model's logits at ``xa`` (uncounted); a label-conditioned model (one with
        ``conditioned_logits(x, y)``, e.g. :func:`advlab.defenses.detection_aware`) gets the
        labels of ``idx``."""
        conditioned = getattr(self.model, "conditioned_logits", None)
        if conditioned is None:
            return self.model.logits(xa, check=False)
        out: Tensor = conditioned(xa, self.rows(self.y, idx))
        return out

    def loss_grad(self, xa: Tensor, idx: Tensor, loss: LossFn) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample ``loss (len(idx),)``, its input gradient ``(len(idx), ...)`` and the logits,
        from one forward and one backward pass (counted)."""
        self.count(self.queries, idx)
        self.count(self.gradients, idx)
        y, t = self.labels(idx)
        with torch.enable_grad():
            xg = xa.detach().requires_grad_(True)
            logits = self.forward(xg, idx)
            value = loss(logits, y, t)
            (grad,) = torch.autograd.grad(value.sum(), xg)
        return value.detach(), grad.detach(), logits.detach()

    def is_adv(self, logits: Tensor, idx: Tensor) -> Tensor:
        """``(len(idx),)`` bool: misclassified (untargeted) or at the target (targeted)."""
        pred = logits.argmax(1)
        y, t = self.labels(idx)
        return pred == t if t is not None else pred != y

    def clip(self, xa: Tensor) -> Tensor:
        """Clamp into the model's bounds (scalar or per-feature)."""
        return torch.maximum(torch.minimum(xa, self.high), self.low)

    def random_label(self, y: Tensor) -> Tensor:
        """A uniformly random class different from each ``y`` (uses the attack's generator)."""
        k = self.num_classes
        r = torch.randint(0, k - 1, y.shape, generator=self.generator, device=y.device)
        return r + (r >= y).long()
