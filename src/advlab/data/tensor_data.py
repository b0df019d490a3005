"""``TensorData``: a whole labelled dataset held as two tensors (DESIGN §1, §5)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

Index = int | slice | Sequence[int] | Tensor


@dataclass(frozen=True, eq=False)
class TensorData:
    """Inputs and labels of one dataset split, in input space (DESIGN §1).

    - ``x``: floating tensor ``(N, C, H, W)`` images (or ``(N, D)`` features) in input space:
      the image loaders produce float32 pixels in ``[0, 1]``; feature data may use other
      (per-feature) bounds, which the model's ``Classifier`` checks. Not normalized.
    - ``y``: int64 tensor ``(N,)`` with labels in ``[0, num_classes)``.
    - ``num_classes``: number of classes (>= 1); ``class_names``: one name per class
      (default ``"0"``, ``"1"``, ...).
    - ``mean`` / ``std``: the dataset's standard per-channel normalization statistics (one value
      per channel ``x.shape[1]``, or a single value for all), for model wrappers to use
      optionally. Loaders pass the published values (e.g. MNIST ``(0.1307,)``, ``(0.3081,)``);
      left empty, they are computed from ``x`` per channel (4 decimals; a zero std becomes 1).
    - ``name``: dataset name, e.g. ``"mnist"``.

    Validated at construction: ``ValueError``/``TypeError`` say what was expected and what came.
    """

    x: Tensor
    y: Tensor
    num_classes: int
    name: str = "custom"
    class_names: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        x, y = self.x, self.y
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError(
                f"x and y must be torch tensors; got {type(x).__name__}, {type(y).__name__}"
            )
        if x.ndim < 2 or not x.is_floating_point():
            raise ValueError(
                f"x must be a float tensor (N, C, H, W) or (N, D); got {x.dtype} {tuple(x.shape)}"
            )
        if y.ndim != 1 or y.dtype != torch.int64:
            raise ValueError(f"y must be an int64 tensor (N,); got {y.dtype} {tuple(y.shape)}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y disagree on N: x has {x.shape[0]}, y has {y.shape[0]}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise TypeError(f"num_classes must be an int; got {self.num_classes!r}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1; got {self.num_classes}")
        if x.numel() > 0 and not bool(torch.isfinite(x).all()):
            raise ValueError("x must be finite (no NaN or inf values)")
        if y.numel() > 0:
            y_lo, y_hi = int(y.min()), int(y.max())
            if y_lo < 0 or y_hi >= self.num_classes:
                raise ValueError(
                    f"labels must be in [0, {self.num_classes}); got values in [{y_lo}, {y_hi}]"
                )
        names = tuple(self.class_names) or tuple(str(i) for i in range(self.num_classes))
        if len(names) != self.num_classes:
            raise ValueError(
                f"class_names must have num_classes={self.num_classes} entries; got {len(names)}"
            )
        object.__setattr__(self, "class_names", names)
        channels = x.shape[1]
        if not self.mean and not self.std:
            mean, std = _channel_stats(x)
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "std", std)
        for field, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise ValueError(
                    f"{field} must have 1 or {channels} (channel count) values; got {len(values)}"
                )
            object.__setattr__(self, field, tuple(float(v) for v in values))
        if any(not s > 0 for s in self.std):
            raise ValueError(f"std values must be > 0; got {self.std}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(1, 28, 28)`` for MNIST."""
        return tuple(self.x.shape[1:])

    @property
    def tensors(self) -> tuple[Tensor, Tensor]:
        """``(x, y)``, the form ``advlab.evaluate`` and ``TensorLoader`` also accept."""
        return self.x, self.y

    @property
    def device(self) -> torch.device:
        return self.x.device

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: Index) -> TensorData:
        """A new ``TensorData`` with the selected samples (metadata kept).

        ``index``: an int (one sample, kept as a batch of 1), a slice, a sequence of ints, or an
        int64 index / bool mask tensor.
        """
        if isinstance(index, bool):
            raise TypeError("subset index must be an int, slice, sequence or tensor; got bool")
        if isinstance(index, int):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"index {index} out of range for {n} samples")
            sel: slice | Tensor = slice(index % n, index % n + 1)
        elif isinstance(index, slice):
            sel = index
        elif isinstance(index, Tensor):
            if index.dtype not in (torch.int64, torch.int32, torch.bool):
                raise TypeError(f"index tensor must be integer or bool; got {index.dtype}")
            sel = index.to(self.x.device)
        else:
            sel = torch.as_tensor(list(index), dtype=torch.int64, device=self.x.device)
        return dataclasses.replace(self, x=self.x[sel], y=self.y[sel])

    def to(self, device: str | torch.device) -> TensorData:
        """The same data on ``device`` (``self`` if it is already there)."""
        device = torch.device(device)
        if self.x.device == device and self.y.device == device:
            return self
        return dataclasses.replace(self, x=self.x.to(device), y=self.y.to(device))

    def __repr__(self) -> str:
        return (
            f"TensorData(name={self.name!r}, n={len(self)}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, device={self.x.device})"
        )


def _channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``x`` (N, C, ...) over every other dimension."""
    if x.numel() == 0:
        return (0.0,) * x.shape[1], (1.0,) * x.shape[1]
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double()  # (C, N*H*W)
    mean = tuple(round(float(v), 4) for v in flat.mean(dim=1))
    std = tuple(round(float(v), 4) or 1.0 for v in flat.std(dim=1, correction=0))
    return mean, std
