"""The ``Classifier`` wrapper: bounds, normalization and output checks around any logits net."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from advlab.types import BoundsLike

Outputs = Literal["logits", "probs"]
_TOL = 1e-6  # slack for inputs that are at the bounds up to float rounding


def _bound_tensors(bounds: BoundsLike) -> tuple[Tensor, Tensor]:
    try:
        low, high = bounds
        lo = torch.as_tensor(low, dtype=torch.float32).clone()
        hi = torch.as_tensor(high, dtype=torch.float32).clone()
        torch.broadcast_shapes(lo.shape, hi.shape)  # type: ignore[no-untyped-call]
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"bounds must be a pair (low, high) of numbers or of per-feature tensors of one "
            f"input's shape; got {bounds!r}"
        ) from None
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ValueError(f"bounds must be finite; got {bounds!r}")
    if not (lo < hi).all():
        raise ValueError(f"bounds must satisfy low < high everywhere; got {bounds!r}")
    return lo, hi


def _stat(value: float | Sequence[float] | None, what: str) -> Tensor | None:
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.float32).flatten()
    if t.numel() == 0 or not torch.isfinite(t).all():
        raise ValueError(f"{what} must be finite numbers; got {value!r}")
    if what == "std" and (t <= 0).any():
        raise ValueError(f"std must be > 0; got {value!r}")
    return t


class Classifier(nn.Module):
    """A classifier in input space (DESIGN §1).

    Wraps ``net`` (any ``nn.Module`` mapping a normalized batch to logits ``(N, K)``) so that
    callers always work in pixel units inside ``bounds``: ``forward(x)`` takes ``x`` of shape
    ``(N, *input_shape)`` in ``bounds``, applies ``(x - mean) / std`` per channel (dimension 1)
    when ``mean``/``std`` are given, and returns logits ``(N, num_classes)``.

    Args:
        net: the network; it must return logits (unnormalized scores), never probabilities.
        bounds: ``(low, high)`` pixel range, default ``(0.0, 1.0)``; either may be a tensor of
            one input's shape for per-feature bounds (tabular or malware-style features). The
            tensors are ``clf.low`` and ``clf.high``; ``clf.bounds`` is the overall float range.
        mean, std: per-channel normalization (a float or one value per channel) or ``None``.
        num_classes: number of classes; inferred from the first forward when ``None``.
        input_shape: shape of one input, e.g. ``(1, 28, 28)``; inferred on first forward if
            ``None`` and checked on every later checked forward.
        outputs: ``"logits"`` (default). A net that returns probabilities is refused on the first
            forward with a ``ValueError``, because gradient attacks on softmax outputs are silently
            weak; pass ``outputs="probs"`` to accept it explicitly, and the wrapper then returns
            ``log(p)``, which are valid logits (``softmax(log p) == p``).

    ``forward`` validates its input (float dtype, shape, no NaN, inside bounds); inner loops that
    have already validated their data call ``logits(x, check=False)`` to skip the checks.
    """

    preset: str | None
    preset_args: dict[str, Any]
    mean: Tensor | None
    std: Tensor | None
    low: Tensor
    high: Tensor

    def __init__(
        self,
        net: nn.Module,
        *,
        bounds: BoundsLike = (0.0, 1.0),
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        num_classes: int | None = None,
        input_shape: Sequence[int] | None = None,
        outputs: Outputs = "logits",
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module; got {type(net).__name__}")
        if isinstance(net, Classifier):
            raise TypeError("net is already a Classifier; wrap the inner network instead")
        if outputs not in ("logits", "probs"):
            raise ValueError(f"outputs must be 'logits' or 'probs'; got {outputs!r}")
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
            raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
        self.net = net
        low, high = _bound_tensors(bounds)
        self.register_buffer("low", low, persistent=False)
        self.register_buffer("high", high, persistent=False)
        self.bounds = (float(low.min()), float(high.max()))
        self.per_feature_bounds = low.ndim > 0 or high.ndim > 0
        self.outputs: Outputs = outputs
        self.num_classes = num_classes
        self.input_shape = tuple(int(d) for d in input_shape) if input_shape else None
        mean_t, std_t = _stat(mean, "mean"), _stat(std, "std")
        if (mean_t is None) != (std_t is None):
            raise ValueError("give both mean and std, or neither")
        self.register_buffer("mean", mean_t, persistent=mean_t is not None)
        self.register_buffer("std", std_t, persistent=std_t is not None)
        self.preset = None
        self.preset_args = {}
        self._outputs_checked = False

    # ------------------------------------------------------------------ checks
    def check_input(self, x: Tensor) -> None:
        """Raise ``TypeError``/``ValueError`` unless ``x`` is a valid batch for this model."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a float tensor in pixel units; got dtype {x.dtype}")
        if x.ndim < 2:
            raise ValueError(f"x must be a batch (N, ...); got shape {tuple(x.shape)}")
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"expected inputs of shape (N, {', '.join(map(str, self.input_shape))}); "
                f"got {tuple(x.shape)}"
            )
        if x.numel() == 0:
            return
        xd = x.detach()
        lo, hi = torch.aminmax(xd)
        low, high = self.bounds
        lo_v, hi_v = float(lo), float(hi)
        if lo_v != lo_v or hi_v != hi_v:  # NaN
            raise ValueError("x contains NaN")
        if self.per_feature_bounds:
            try:
                below = bool((xd < self.low - _TOL).any())
                above = bool((xd > self.high + _TOL).any())
            except RuntimeError:
                raise ValueError(
                    f"per-feature bounds of shape {tuple(self.low.shape)} do not fit inputs of "
                    f"shape {tuple(x.shape)}"
                ) from None
            if below or above:
                raise ValueError("x is outside the model's per-feature bounds (clf.low, clf.high)")
        elif lo_v < low - _TOL or hi_v > high + _TOL:
            raise ValueError(
                f"x is outside the model's bounds [{low}, {high}]: min {lo_v:.4g}, max "
                f"{hi_v:.4g}; scale inputs to pixel units (normalization belongs in the "
                "Classifier's mean/std)"
            )

    def _check_outputs(self, out: Tensor, n: int) -> None:
        if out.ndim != 2 or out.shape[0] != n:
            raise ValueError(f"net must return logits of shape (N, K); got {tuple(out.shape)}")
        if self.num_classes is not None and out.shape[1] != self.num_classes:
            raise ValueError(
                f"net returned {out.shape[1]} scores per input; num_classes is {self.num_classes}"
            )
        if self.outputs == "logits" and not self._outputs_checked and n > 0:
            o = out.detach().float()
            looks_like_probs = bool(
                (o >= 0).all() and torch.allclose(o.sum(1), torch.ones_like(o[:, 0]), atol=1e-3)
            )
            if looks_like_probs:
                raise ValueError(
                    "net appears to return probabilities (non-negative rows summing to 1), not "
                    "logits; gradient attacks on probabilities are silently weak. Remove the final "
                    "softmax, or wrap with Classifier(net, outputs='probs') to accept it"
                )
            self._outputs_checked = True

    # ----------------------------------------------------------------- forward
    def normalize(self, x: Tensor) -> Tensor:
        """Map pixel-unit ``x`` to the net's input: ``(x - mean) / std`` along dimension 1."""
        if self.mean is None or self.std is None:
            return x
        shape = (1, -1, *([1] * (x.ndim - 2)))
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def logits(self, x: Tensor, *, check: bool = True) -> Tensor:
        """Logits ``(N, num_classes)`` for ``x`` ``(N, *input_shape)`` in pixel units."""
        if check:
            self.check_input(x)
        out: Tensor = self.net(self.normalize(x))
        if self.outputs == "probs":
            out = torch.log(out.clamp_min(1e-12))
        if check or self.num_classes is None:
            self._check_outputs(out, x.shape[0])
        if self.num_classes is None:
            self.num_classes = int(out.shape[1])
        if self.input_shape is None:
            self.input_shape = tuple(x.shape[1:])
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(x)

    @torch.no_grad()
    def predict(self, x: Tensor, *, batch_size: int = 1024) -> Tensor:
        """Predicted labels ``(N,)`` (int64), computed in batches without gradients."""
        self.check_input(x)
        parts = [
            self.logits(x[i : i + batch_size], check=False).argmax(1)
            for i in range(0, x.shape[0], batch_size)
        ]
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long, device=x.device)

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        return torch.device("cpu")

    def extra_repr(self) -> str:
        b = "per-feature" if self.per_feature_bounds else self.bounds
        parts = [f"bounds={b}", f"num_classes={self.num_classes}"]
        if self.input_shape is not None:
            parts.append(f"input_shape={self.input_shape}")
        if self.mean is not None and self.std is not None:
            parts.append(f"mean={tuple(self.mean.tolist())}, std={tuple(self.std.tolist())}")
        if self.preset:
            parts.append(f"preset={self.preset!r}")
        return ", ".join(parts)


def wrap_like(model: Classifier, net: nn.Module, cls: type[Classifier] = Classifier) -> Classifier:
    """A ``cls`` around ``net`` (which calls ``model`` inside) with ``model``'s bounds, classes,
    input shape, preset name and train/eval mode: how EOT and query-access views are built."""
    wrapped = cls(
        net,
        bounds=(model.low, model.high),
        num_classes=model.num_classes,
        input_shape=model.input_shape,
    )
    wrapped.preset = model.preset
    wrapped.train(model.training)
    return wrapped
