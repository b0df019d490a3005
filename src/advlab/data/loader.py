"""``TensorLoader``: fast in-memory batching of a whole dataset held as tensors.

No per-sample Python work: each batch is one ``index_select`` (shuffled or sharded) or one slice
(plain order, single process) of the big tensors, which are moved to ``device`` once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from advlab.data._rng import generator
from advlab.data.tensor_data import TensorData


def _int_at_least(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int; got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}; got {value}")
    return value


class TensorLoader:
    """Iterate ``(x, y)`` batches over ``data`` (a :class:`TensorData` or an ``(x, y)`` pair of
    tensors with the same first dimension N).

    - ``batch_size``: samples per batch; ``len(loader)`` is the number of batches per epoch;
      ``drop_last`` drops a final incomplete batch.
    - ``shuffle``: the order of epoch ``e`` is ``torch.randperm`` from a local CPU generator
      seeded by a pure function of ``(seed, e)``; call :meth:`set_epoch` before each epoch (like
      ``DistributedSampler``), so a resumed run sees exactly the same batches. Without
      ``shuffle`` the order is 0..N-1.
    - ``rank`` / ``world_size``: this process takes every ``world_size``-th index of the epoch's
      order, starting at ``rank`` (as ``DistributedSampler``). The order is first made a multiple
      of ``world_size``: padded by wrapping around to its start when ``drop_last=False`` (every
      sample is seen at least once; a few twice), truncated when ``drop_last=True`` (every sample
      at most once). Shards of the same epoch are disjoint apart from that padding.
    - ``device``: the tensors are moved there once, at construction (``None``: left where they
      are).

    Batches in plain order on one process are views of the stored tensors (no copy): do not
    modify them in place.
    """

    def __init__(
        self,
        data: TensorData | tuple[Tensor, Tensor],
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        device: str | torch.device | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if isinstance(data, TensorData):
            x, y = data.x, data.y
        elif (
            isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)
        ):
            x, y = data
        else:
            raise TypeError(
                "data must be a TensorData or an (x, y) tuple of tensors; "
                f"got {type(data).__name__}"
            )
        if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x and y must share their first dimension N; got {tuple(x.shape)} and "
                f"{tuple(y.shape)}"
            )
        self.batch_size = _int_at_least("batch_size", batch_size, 1)
        self.seed = _int_at_least("seed", seed, 0)
        self.world_size = _int_at_least("world_size", world_size, 1)
        self.rank = _int_at_least("rank", rank, 0)
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}); got {rank}")
        for flag, value in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be a bool; got {value!r}")
        self.shuffle, self.drop_last = shuffle, drop_last
        if device is not None:
            x, y = x.to(device), y.to(device)
        self.x, self.y = x, y
        self.epoch = 0
        n = int(x.shape[0])
        if world_size == 1:
            self.num_samples = n  # samples this rank sees per epoch
        elif drop_last:
            self.num_samples = n // world_size
        else:
            self.num_samples = math.ceil(n / world_size)

    @property
    def device(self) -> torch.device:
        return self.x.device

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch`` (>= 0): the shuffle order depends only on (seed, epoch)."""
        self.epoch = _int_at_least("epoch", epoch, 0)

    def indices(self) -> Tensor:
        """This rank's sample indices for the current epoch, in batch order: int64 CPU
        ``(num_samples,)``."""
        n = int(self.x.shape[0])
        if self.shuffle:
            order = torch.randperm(n, generator=generator(self.seed, self.epoch))
        else:
            order = torch.arange(n)
        if self.world_size == 1:
            return order
        total = self.num_samples * self.world_size
        if total > n > 0:  # pad by wrapping around (repeatedly if world_size > n)
            order = order.repeat(math.ceil(total / n))
        return order[:total][self.rank :: self.world_size]

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        bs, stop = self.batch_size, len(self) * self.batch_size
        if not self.shuffle and self.world_size == 1:
            for start in range(0, min(stop, self.num_samples), bs):
                yield self.x[start : start + bs], self.y[start : start + bs]
            return
        order = self.indices()[:stop].to(self.x.device)
        for start in range(0, order.shape[0], bs):
            sel = order[start : start + bs]
            yield self.x.index_select(0, sel), self.y.index_select(0, sel)

    def __repr__(self) -> str:
        return (
            f"TensorLoader(n={self.x.shape[0]}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, rank={self.rank}, "
            f"world_size={self.world_size}, device={self.x.device})"
        )
