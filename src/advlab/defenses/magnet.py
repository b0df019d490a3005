"""MagNet [``magnet``]: autoencoder detectors and an autoencoder reformer in front of a classifier.

Meng & Chen 2017, "MagNet: a Two-Pronged Defense against Adversarial Examples" (CCS), and the
authors' code (``Trevillie/MagNet``: ``defensive_models.py``, ``worker.py``). Broken by
Carlini & Wagner 2017, "MagNet and 'Efficient Defenses Against Adversarial Attacks' are Not
Robust to Adversarial Examples": a white-box attack that knows the autoencoders and folds the
detectors into its loss (here :meth:`MagNet.adaptive`).

Pipeline, for an input ``x``:

- *detectors* each compute a score and reject ``x`` when it exceeds a threshold picked on clean
  validation data for a target false-positive rate: the reconstruction error
  ``mean |x - AE(x)|^p`` over pixels (``"l1"``: p = 1, ``"l2"``: p = 2, the authors' mean of
  squares, no root), or the probability divergence ``JSD(softmax(f(x)/T), softmax(f(AE(x))/T))``
  of the classifier ``f`` (``"jsd@T"``);
- the *reformer* replaces ``x`` by ``AE(x)`` before the classifier: ``logits = f(AE(x))``.

The paper's MNIST setup (the defaults, :data:`MNIST_DETECTORS`): autoencoder ``"I"`` is the
reformer and the L2 detector, autoencoder ``"II"`` the L1 detector; false-positive rate 0.001.
Its CIFAR-10 setup (:data:`CIFAR_DETECTORS`): one three-layer autoencoder (``"II"`` with three
channels) as reformer, L1 detector and two JSD detectors at T = 10 and 40; rate 0.005.

Gray-box variant (:class:`GrayBoxMagNet`, ``pool > 1``; the paper's "diversity" defense against
gray-box attacks, where it trains eight autoencoders): ``pool`` separately initialized copies of
every autoencoder; each input gets one copy drawn at random (a private generator seeded by
``seed``, fresh draws at every call) for the reformer and the detectors. ``forward`` and
``reject`` draw separately. Its ``gradient`` story is ``"eot"``.

Checkpoints: everything learned (autoencoder weights, thresholds, the ``trained`` flag) lives in
the state dict; architecture choices are :meth:`MagNet.defense_args`, so
``magnet(base, **m.defense_args())`` followed by ``load_state_dict(m.state_dict())`` rebuilds
``m``. Training is :func:`advlab.defenses.magnet_fit.fit_magnet`. Defaults, deviations from the
paper and measured numbers (MNIST, digits): ``docs/defenses/magnet.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from advlab.defenses.base import Defended, GradientStory, defenses, detection_aware
from advlab.defenses.magnet_ae import (
    ARCHS,
    CIFAR_DETECTORS,
    MNIST_DETECTORS,
    AutoEncoder,
    Detector,
    jsd,
)
from advlab.models.classifier import Classifier, wrap_like

__all__ = [
    "ARCHS",
    "CIFAR_DETECTORS",
    "MNIST_DETECTORS",
    "AutoEncoder",
    "Detector",
    "GrayBoxMagNet",
    "MagNet",
    "jsd",
    "magnet",
]
_TINY = 1e-12


class _MagNetNet(nn.Module):
    """The pipeline: holds the base, the autoencoders (``aes[arch][member]``), the thresholds
    ``(pool, detectors)`` and the ``trained`` flag; computes reforms and detector marks."""

    thresholds: Tensor
    trained: Tensor

    def __init__(
        self,
        base: Classifier,
        reformer: str,
        detectors: Sequence[Detector],
        pool: int,
        channels: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.base = base
        self.reformer = reformer
        self.detectors = list(detectors)
        self.pool = pool
        self.archs = list(dict.fromkeys([reformer, *(d.arch for d in detectors)]))
        self.aes = nn.ModuleDict(
            {
                a: nn.ModuleList(
                    AutoEncoder(a, channels, seed=seed * 10_007 + 101 * i + m) for m in range(pool)
                )
                for i, a in enumerate(self.archs)
            }
        )
        self.register_buffer("thresholds", torch.full((pool, len(self.detectors)), math.nan))
        self.register_buffer("trained", torch.zeros((), dtype=torch.bool))
        self.low, self.high = float(base.low.min()), float(base.high.max())
        self.generator = torch.Generator().manual_seed(int(seed))

    # --------------------------------------------------------------- pieces
    def members(self, n: int, device: torch.device) -> Tensor:
        """One pool member per input: fresh draws from the private generator (zeros if pool 1)."""
        if self.pool == 1:
            return torch.zeros(n, dtype=torch.long, device=device)
        return torch.randint(self.pool, (n,), generator=self.generator).to(device)

    def ae(self, arch: str, member: int) -> AutoEncoder:
        ae = self.aes[arch][member]  # type: ignore[index]
        if not isinstance(ae, AutoEncoder):
            raise TypeError(
                f"pool entry {arch}[{member}] is a {type(ae).__name__}, not an AutoEncoder"
            )
        return ae

    def require_trained(self) -> None:
        if not bool(self.trained):
            raise RuntimeError(
                "this MagNet's autoencoders are untrained: build it with "
                "advlab.defenses.magnet_fit.fit_magnet(base, train_data, val_data, ...), or load "
                "a fitted model's state with load_state_dict"
            )

    def require_calibrated(self) -> None:
        self.require_trained()
        if not bool(torch.isfinite(self.thresholds).all()):
            raise RuntimeError(
                "this MagNet's detectors are not calibrated: call calibrate(val_x, fpr=...) "
                "(fit_magnet does) or load a fitted model's state with load_state_dict"
            )

    def unit(self, x: Tensor) -> Tensor:
        return (x - self.low) / (self.high - self.low)

    def pixels(self, u: Tensor) -> Tensor:
        return self.low + (self.high - self.low) * u

    def reform(self, arch: str, u: Tensor, members: Tensor) -> Tensor:
        """``AE_member(u)`` per input, in unit scale."""
        if self.pool == 1:
            return self.ae(arch, 0).reconstruct(u)[0]
        out = torch.zeros_like(u)
        for m in range(self.pool):
            idx = (members == m).nonzero().flatten()
            if idx.numel():
                out = out.index_copy(0, idx, self.ae(arch, m).reconstruct(u[idx])[0])
        return out

    def marks(self, x: Tensor, members: Tensor) -> Tensor:
        """Detector marks ``(N, len(detectors))`` of pixel-unit ``x`` with the given members."""
        u = self.unit(x)
        recon = {a: self.reform(a, u, members) for a in {d.arch for d in self.detectors}}
        clean_logits: Tensor | None = None
        cols = []
        for d in self.detectors:
            r = recon[d.arch]
            if d.kind == "jsd":
                if clean_logits is None:
                    clean_logits = self.base.logits(x, check=False)
                ref_logits = self.base.logits(self.pixels(r), check=False)
                cols.append(jsd(clean_logits / d.T, ref_logits / d.T))
            else:
                p = 1 if d.kind == "l1" else 2
                cols.append((u - r).abs().pow(p).flatten(1).mean(1))
        return torch.stack(cols, 1)

    def score(self, x: Tensor, members: Tensor) -> Tensor:
        """``max_d (mark_d - thr_d) / thr_d`` ``(N,)``: positive exactly where some detector
        rejects."""
        thr = self.thresholds[members]
        return ((self.marks(x, members) - thr) / thr.clamp_min(_TINY)).amax(1)

    def logits_with(self, x: Tensor, members: Tensor) -> Tensor:
        r = self.reform(self.reformer, self.unit(x), members)
        return self.base.logits(self.pixels(r), check=False)

    def forward(self, x: Tensor) -> Tensor:
        self.require_trained()
        return self.logits_with(x, self.members(x.shape[0], x.device))


class _PoolExpectation(nn.Module):
    """Exact expectation over a uniform pool draw: mean over members of ``log_softmax`` logits."""

    def __init__(self, net: _MagNetNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        total = x.new_zeros(())
        for m in range(self.net.pool):
            members = torch.full((n,), m, dtype=torch.long, device=x.device)
            total = total + torch.log_softmax(self.net.logits_with(x, members).float(), 1)
        return total / self.net.pool


class MagNet(Defended):
    """MagNet (Meng & Chen 2017) around ``base``; see the module docstring.

    ``forward(x) = base(AE_reformer(x))``; ``reject(x)``: any detector over its threshold.
    ``naive()`` is ``base`` itself (the paper's threat model: attacks crafted on the classifier
    alone, unaware of the defense). ``adaptive()`` is the white-box attack of Carlini & Wagner
    2017: ``detection_aware`` over ``base(AE(x))`` with score
    ``max_d (error_d - threshold_d) / threshold_d`` (positive iff rejected). For ``pool > 1`` it
    attacks the exact expectation over the uniform pool draw (mean ``log_softmax`` over the
    members, the EOT objective computed without sampling) with the score maximized over members,
    i.e. it asks for inputs that no member rejects; it is deterministic, so no extra EOT wrapper
    is needed (``advlab.models.eot`` of a detection-aware view keeps its detector term too).

    Build trained models with :func:`advlab.defenses.magnet_fit.fit_magnet`; an untrained or
    uncalibrated model raises ``RuntimeError`` when used.
    """

    name: ClassVar[str] = "magnet"
    gradient: ClassVar[GradientStory] = "exact"
    detects: ClassVar[bool] = True
    _pooled: ClassVar[bool] = False

    def __init__(
        self,
        base: Classifier,
        *,
        reformer: str = "I",
        detectors: Sequence[str] = MNIST_DETECTORS,
        pool: int = 1,
        seed: int = 0,
        channels: int | None = None,
    ) -> None:
        if not isinstance(base, Classifier):
            raise TypeError(f"base must be an advlab Classifier; got {type(base).__name__}")
        if reformer not in ARCHS:
            raise ValueError(
                f"unknown reformer autoencoder {reformer!r}; known: {', '.join(ARCHS)}"
            )
        if isinstance(detectors, str) or not detectors:
            raise ValueError(f"detectors must be a non-empty list such as {list(MNIST_DETECTORS)}")
        parsed = [Detector.parse(d) for d in detectors]
        if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
            raise ValueError(f"pool must be an integer >= 1; got {pool!r}")
        if (pool > 1) != self._pooled:
            raise ValueError(
                f"{type(self).__name__} takes pool {'>= 2' if self._pooled else '= 1'}; got "
                f"{pool} (the magnet factory and fit_magnet pick MagNet or GrayBoxMagNet)"
            )
        if base.per_feature_bounds:
            raise ValueError("MagNet needs a base with scalar (image) bounds")
        shape = base.input_shape
        if channels is None:
            if shape is None or len(shape) != 3:
                raise ValueError(
                    "MagNet needs image inputs (C, H, W): give the base an input_shape or pass "
                    f"channels=; base input_shape is {shape}"
                )
            channels = int(shape[0])
        elif shape is not None and (len(shape) != 3 or shape[0] != channels):
            raise ValueError(f"channels={channels} does not fit the base's input_shape {shape}")
        self._specs = [str(d) for d in detectors]
        self._pool, self._seed, self._channels = pool, int(seed), int(channels)
        super().__init__(_MagNetNet(base, reformer, parsed, pool, channels, int(seed)), [base])

    @property
    def magnet(self) -> _MagNetNet:
        net = self.net
        if not isinstance(net, _MagNetNet):
            raise TypeError(f"MagNet's network is a {type(net).__name__}, not its pipeline")
        return net

    def defense_args(self) -> dict[str, Any]:
        net = self.magnet
        return {
            "reformer": net.reformer,
            "detectors": list(self._specs),
            "pool": self._pool,
            "seed": self._seed,
            "channels": self._channels,
        }

    # ------------------------------------------------------------- detection
    @torch.no_grad()
    def marks(self, x: Tensor, *, member: int | None = None, batch_size: int = 1024) -> Tensor:
        """Detector marks ``(N, len(detectors))`` (before thresholds), with pool ``member``
        (default: a random member per input)."""
        self.check_input(x)
        self.magnet.require_trained()
        parts = []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size]
            parts.append(self.magnet.marks(xb, self._members(xb, member)))
        return torch.cat(parts) if parts else x.new_zeros(0, len(self._specs))

    def _members(self, x: Tensor, member: int | None) -> Tensor:
        if member is None:
            return self.magnet.members(x.shape[0], x.device)
        if not 0 <= member < self._pool:
            raise ValueError(f"member must be in [0, {self._pool}); got {member}")
        return torch.full((x.shape[0],), member, dtype=torch.long, device=x.device)

    def score(self, x: Tensor) -> Tensor:
        """Differentiable detection score ``(N,)``, positive exactly where ``x`` is rejected
        (random pool members per input when ``pool > 1``)."""
        self.magnet.require_calibrated()
        return self.magnet.score(x, self.magnet.members(x.shape[0], x.device))

    @torch.no_grad()
    def reject(self, x: Tensor, *, batch_size: int = 1024) -> Tensor:
        """Boolean mask ``(N,)``: some detector's mark is above its threshold."""
        self.check_input(x)
        self.magnet.require_calibrated()
        parts = []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size]
            parts.append(self.magnet.score(xb, self.magnet.members(xb.shape[0], xb.device)) > 0)
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool, device=x.device)

    @torch.no_grad()
    def calibrate(self, x_val: Tensor, *, fpr: float = 0.001, batch_size: int = 1024) -> Tensor:
        """Pick every member's detector thresholds on clean validation inputs ``x_val``.

        ``fpr`` is the target false-positive rate of the whole defense, split evenly among the
        ``D`` detectors: detector ``d`` rejects the ``k = floor(n * fpr / D)`` largest of the
        ``n`` validation marks (threshold = the ``(k+1)``-th largest; reject iff mark > it), so the
        validation false-positive rate is at most ``fpr`` (the union bound). The authors' code
        gives every detector the full rate (``drop_rate = 0.001`` each on MNIST), so its total
        rate can reach ``D * fpr``. Returns the thresholds ``(pool, D)`` (also stored).
        """
        if not (isinstance(fpr, float | int) and 0 <= fpr < 1):
            raise ValueError(f"fpr must be in [0, 1); got {fpr!r}")
        self.magnet.require_trained()
        n, d = x_val.shape[0], len(self._specs)
        if n < 1:
            raise ValueError("calibration needs at least one validation input")
        k = math.floor(n * fpr / d)
        for m in range(self._pool):
            marks = self.marks(x_val, member=m, batch_size=batch_size)
            ranked = marks.sort(0).values  # ascending per detector
            self.magnet.thresholds[m] = ranked[n - k - 1]
        return self.magnet.thresholds.clone()

    def member(self, index: int) -> MagNet:
        """Pool member ``index`` as a one-member :class:`MagNet` (``pool == 1``): its reformer,
        its detectors and its thresholds, shared with this model (not copied), in eval mode.

        The gray-box experiment of Meng & Chen 2017 attacks one member (the attacker knows its
        autoencoders) and defends with another or a random one; ``member(i).adaptive()`` is the
        white-box attack on member ``i`` alone. For ``pool == 1``, ``member(0)`` is ``self``.
        """
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"member index must be an int; got {type(index).__name__}")
        if not 0 <= index < self._pool:
            raise ValueError(f"member must be in [0, {self._pool}); got {index}")
        if self._pool == 1:
            return self
        net = self.magnet
        net.require_trained()
        one = MagNet(
            net.base,
            reformer=net.reformer,
            detectors=self._specs,
            seed=self._seed,
            channels=self._channels,
        )
        for arch in net.archs:
            members = one.magnet.aes[arch]
            if not isinstance(members, nn.ModuleList):
                raise TypeError(f"pool entry {arch} is a {type(members).__name__}")
            members[0] = net.ae(arch, index)
        with torch.no_grad():
            one.magnet.thresholds.copy_(net.thresholds[index : index + 1])
            one.magnet.trained.fill_(True)
        return one.to(net.thresholds.device).eval()

    # ---------------------------------------------------------------- views
    def naive(self) -> Classifier:
        """The undefended base classifier (attacks crafted on the target classifier alone)."""
        return self.base

    def adaptive(self) -> Classifier:
        """``detection_aware(base(AE(x)), score)``, over the whole pool when ``pool > 1``."""
        net = self.magnet
        net.require_calibrated()
        if self._pool == 1:
            return detection_aware(self, lambda x: net.score(x, net.members(x.shape[0], x.device)))

        def pool_score(x: Tensor) -> Tensor:
            n = x.shape[0]
            scores = [
                net.score(x, torch.full((n,), m, dtype=torch.long, device=x.device))
                for m in range(self._pool)
            ]
            return torch.stack(scores, 1).amax(1)

        return detection_aware(wrap_like(self, _PoolExpectation(net)), pool_score)


class GrayBoxMagNet(MagNet):
    """MagNet with a pool of ``pool >= 2`` autoencoder sets, one drawn at random per input
    (Meng & Chen 2017, the gray-box experiment); gradient story ``"eot"``."""

    gradient: ClassVar[GradientStory] = "eot"
    _pooled: ClassVar[bool] = True


def magnet(
    base: Classifier,
    *,
    reformer: str = "I",
    detectors: Sequence[str] = MNIST_DETECTORS,
    pool: int = 1,
    seed: int = 0,
    channels: int | None = None,
) -> MagNet:
    """An *untrained* :class:`MagNet` around ``base`` (load a fitted state into it, or train it
    with :func:`advlab.defenses.magnet_fit.fit_magnet`)."""
    cls = GrayBoxMagNet if isinstance(pool, int) and pool > 1 else MagNet
    return cls(
        base, reformer=reformer, detectors=detectors, pool=pool, seed=seed, channels=channels
    )


defenses.register("magnet", magnet)
