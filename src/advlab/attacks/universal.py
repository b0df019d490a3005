"""Universal adversarial perturbations [``UniversalPerturbation``].

Moosavi-Dezfooli, Fawzi, Fawzi & Frossard, "Universal adversarial perturbations", CVPR 2017:
one image-agnostic perturbation ``v`` with ``||v||_p <= eps`` such that ``k̂(x + v) ≠ k̂(x)``
for most ``x`` of the data distribution (``k̂``: the model's predicted label). Unlike the
per-input attacks this is a *fitted* object: ``fit(clf, x)`` learns ``v`` on unlabeled images,
``apply`` adds it to any batch, ``fooling_rate`` measures it (the paper's metric: the fraction
of inputs whose predicted label changes; labels are never needed), ``save``/``load`` keep it.

Two fitting methods:

* ``method="deepfool"`` (the paper's Algorithm 1). ``v ← 0``; repeat passes ("epochs") over
  the fitting set in a seeded random order; for every image not fooled by ``v``
  (``k̂(x_i + v) = k̂(x_i)``) compute the minimal perturbation ``Δv_i`` that sends ``x_i + v``
  across the decision boundary with DeepFool (the registered ``deepfool`` attack, L2, with
  ``deepfool_steps`` and ``overshoot``; the paper's ``argmin ||r||_2``, for either norm), and
  update ``v ← P_{p,eps}(v + Δv_i)``; stop as soon as the fooling rate on the fitting set
  reaches ``target_fooling_rate`` (``1 − δ``, default 0.8 as in the paper) or after
  ``max_epochs`` passes (default 10; the paper has no cap).
* ``method="sgd"`` (the stochastic-gradient formulation of Shafahi, Najibi, Xu, Dickerson,
  Davis & Goldstein, "Universal adversarial training", AAAI 2020, Algorithm 1): maximise the
  mean loss ``(1/B) Σ_i ℓ(clf(clip(x_i + v)), k̂(x_i))`` over seeded random mini-batches by
  steepest ascent, ``v ← P_{p,eps}(v + lr · d)`` with ``d = sign(g)`` (Linf) or
  ``g / ||g||_2`` (L2), ``g`` the mini-batch gradient; the same stopping rule (checked after
  each pass). ``loss="ce"`` (default): Shafahi et al.'s clipped cross-entropy
  ``min(CE, β)``, so that images already fooled with a large loss do not dominate the mean,
  with ``β = ce_clip`` (default 9.0, our choice: a clean-label probability of about 1e-4);
  ``loss="margin"``: the Carlini-Wagner margin ``max_{j≠k̂} z_j − z_k̂`` clipped at 0 (an
  image stops pulling once fooled). ``lr`` defaults to ``eps / 10``. Deviations: plain signed
  / normalised steps, not the ADAM variant Shafahi et al. also use; labels are the clean
  *predictions*, not ground truth (the set is unlabeled).

The two compared on the 8x8 digits LeNet of the tests (500 fitting images, 10 passes, seeds
0-2, 359 test images; random noise of the same norm fools 11-12% at Linf 0.2, 10-11% at L2
1.5): Linf eps 0.2, test fooling rate 0.36-0.39 with DeepFool (about 10 s on a busy CPU core)
and 0.40-0.51 with SGD (about 1 s); L2 eps 1.5, 0.45-0.52 and 0.57-0.64.

Deviations from the paper (``method="deepfool"``):

* Batching. The paper updates ``v`` after every single image. Here the seeded order is cut
  into mini-batches of ``batch_size`` (default 32): the images of a mini-batch not fooled by
  the current ``v`` get their DeepFool ``Δv_i`` at the *same* ``v`` (one batched DeepFool call),
  and ``v ← P_{p,eps}(v + mean_i Δv_i)``: one projected update per mini-batch with the mean
  of the minimal perturbations. The sum (the sequential update's total) overshoots, since
  every ``Δv_i`` alone already reaches its own image's boundary: on the digits LeNet (500
  fitting images, 10 passes, batch 32) the test fooling rate was 0.34 (sum) vs 0.38 (mean) at
  Linf 0.2 and 0.23 vs 0.34 at L2 1.0. ``batch_size=1`` is exactly the paper's sequential
  Algorithm 1 (up to the next point), at 10-30x the wall time on CPU.
* Bounds. ``x + v`` is clamped into the model's bounds wherever it is evaluated (fitting,
  ``apply``, ``fooling_rate``); DeepFool works inside the box (see ``deepfool.py``), so
  ``Δv_i`` is the box-feasible step. The paper's images are unbounded.
* ``max_epochs`` caps the passes (the paper loops until the target is met).
* The fooling rate on the whole fitting set (the paper's ``Err(X_v)``) is measured after
  each pass (``history``), and the ``v`` of the pass with the highest one is kept; the paper
  returns the last ``v``. Measured on the 8x8 digits LeNet of the tests (500 fitting images,
  Linf eps 0.2, 10 passes): with ``batch_size=1`` the rate oscillates between passes,
  0.23-0.45, and the last ``v`` fooled 18.9% of the test images; mini-batches are steadier.

All randomness (the order of the images, the random-noise baseline) comes from a private
generator seeded by ``seed``; the same seed and inputs give the same ``v``. The model's mode and
parameters' ``requires_grad`` flags are restored, no gradients are left in parameters, and the
inputs are never modified.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import secrets
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as st_save
from torch import Tensor

from advlab._version import __version__
from advlab.attacks.base import _nonneg, _positive_int, attack_mode
from advlab.attacks.deepfool import DeepFool
from advlab.attacks.losses import ce, margin
from advlab.attacks.norms import LpNorm, get_norm
from advlab.models.classifier import Classifier
from advlab.utils.files import atomic_write_bytes, atomic_write_json
from advlab.utils.progress import progress as progress_bar

logger = logging.getLogger(__name__)

TENSORS = "perturbation.safetensors"
META = "perturbation.json"
SCHEMA_VERSION = 1
_EVAL_BATCH = 1024  # images per forward pass when measuring fooling rates


def _clip(xa: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """Clamp ``xa (N, ...)`` into ``[low, high]`` (scalars or per-feature tensors)."""
    return torch.maximum(torch.minimum(xa, high), low)


class UniversalPerturbation:
    """A universal adversarial perturbation (Moosavi-Dezfooli et al. 2017); see the module
    docstring for the algorithms, defaults and deviations from the papers.

    Args:
        norm: ``"linf"`` (default) or ``"l2"``: the ball ``v`` is projected onto.
        eps: radius of that ball, in pixel units (required, > 0).
        target_fooling_rate: stop once the fooling rate on the fitting set reaches it
            (``1 − δ`` in the paper; default 0.8), in ``(0, 1]``.
        max_epochs: at most this many passes over the fitting set (default 10).
        method: ``"deepfool"`` (the paper's Algorithm 1, default) or ``"sgd"`` (Shafahi et al.
            2020).
        deepfool_steps, overshoot: the DeepFool iterations and overshoot (defaults 50 and 0.02,
            the paper's code); ``method="deepfool"`` only.
        loss: ``"ce"`` (clipped cross-entropy, default) or ``"margin"``; ``method="sgd"`` only.
        ce_clip: ``β`` of the clipped cross-entropy (default 9.0); ``loss="ce"`` only.
        lr: step length per mini-batch in pixel units, in the norm's steepest-ascent direction;
            default ``None`` = ``eps / 10``; ``method="sgd"`` only.
        batch_size: images per update (default 32; 1 = the paper's sequential update).
        seed: seeds the private generator (order of the images, noise baseline); ``None``:
            a fresh random seed per ``fit``.

    After ``fit`` (or ``load``): ``perturbation`` (``(C, H, W)``, one input's shape),
    ``history`` (fooling rate on the fitting set after each pass), ``apply(x)``,
    ``fooling_rate(clf, x)``, ``noise_fooling_rate(clf, x)``, ``save(folder)``.
    """

    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    methods: ClassVar[tuple[str, ...]] = ("deepfool", "sgd")
    losses: ClassVar[tuple[str, ...]] = ("ce", "margin")

    def __init__(
        self,
        *,
        norm: str = "linf",
        eps: float,
        target_fooling_rate: float = 0.8,
        max_epochs: int = 10,
        method: str = "deepfool",
        deepfool_steps: int = 50,
        overshoot: float = 0.02,
        loss: str = "ce",
        ce_clip: float = 9.0,
        lr: float | None = None,
        batch_size: int = 32,
        seed: int | None = 0,
    ) -> None:
        if norm not in self.norms:
            raise ValueError(f"norm must be one of {', '.join(self.norms)}; got {norm!r}")
        if method not in self.methods:
            raise ValueError(f"method must be one of {', '.join(self.methods)}; got {method!r}")
        if loss not in self.losses:
            raise ValueError(f"loss must be one of {', '.join(self.losses)}; got {loss!r}")
        self.norm = norm
        self.eps = _nonneg("eps", eps)
        if self.eps == 0 or not math.isfinite(self.eps):
            raise ValueError(f"eps must be a finite number > 0; got {eps!r}")
        rate = _nonneg("target_fooling_rate", target_fooling_rate)
        if not 0 < rate <= 1:
            raise ValueError(f"target_fooling_rate must be in (0, 1]; got {target_fooling_rate!r}")
        self.target_fooling_rate = rate
        self.max_epochs = _positive_int("max_epochs", max_epochs)
        self.method = method
        self.deepfool_steps = _positive_int("deepfool_steps", deepfool_steps)
        self.overshoot = _nonneg("overshoot", overshoot)
        self.loss = loss
        self.ce_clip = _nonneg("ce_clip", ce_clip)
        if self.ce_clip == 0:
            raise ValueError(f"ce_clip must be > 0; got {ce_clip!r}")
        if lr is not None:
            lr = _nonneg("lr", lr)
            if lr == 0 or not math.isfinite(lr):
                raise ValueError(f"lr must be a finite number > 0 (or None); got {lr!r}")
        self.lr = lr
        self.batch_size = _positive_int("batch_size", batch_size)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None; got {seed!r}")
        self.seed = seed
        self.history: list[float] = []
        self._v: Tensor | None = None  # (C, H, W)
        self._low: Tensor | None = None  # the fitted model's bounds (scalar or per-feature)
        self._high: Tensor | None = None

    # ------------------------------------------------------------------ config
    @property
    def lp(self) -> LpNorm:
        return get_norm(self.norm)

    @property
    def step_size(self) -> float:
        """The SGD step length actually used: ``lr``, or ``eps / 10`` when ``lr`` is ``None``."""
        return self.lr if self.lr is not None else self.eps / 10

    def config(self) -> dict[str, Any]:
        """Hyperparameters (as passed to the constructor), shown by ``repr`` and saved."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "history"}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"

    # ------------------------------------------------------------------ state
    @property
    def fitted(self) -> bool:
        return self._v is not None

    def _state(self) -> tuple[Tensor, Tensor, Tensor]:
        if self._v is None or self._low is None or self._high is None:
            raise RuntimeError(
                "this UniversalPerturbation is not fitted; call fit(clf, x) or load(folder)"
            )
        return self._v, self._low, self._high

    @property
    def perturbation(self) -> Tensor:
        """The universal perturbation ``v``, one input's shape ``(C, H, W)``, pixel units
        (a copy)."""
        return self._state()[0].clone()

    def apply(self, x: Tensor) -> Tensor:
        """``clip(x + v)`` for a batch ``x (N, C, H, W)``, clamped into the bounds of the model
        ``v`` was fitted on; ``x`` is not modified."""
        v, low, high = self._state()
        self._check_batch(x)
        return _clip(x.detach() + v.to(x), low.to(x), high.to(x))

    def _check_batch(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(
                f"x must be a float tensor (N, C, H, W); got "
                f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}"
            )
        v = self._state()[0]
        if tuple(x.shape[1:]) != tuple(v.shape) or x.ndim != v.ndim + 1:
            raise ValueError(
                f"x must have shape (N, {', '.join(map(str, v.shape))}) to match the "
                f"perturbation; got {tuple(x.shape)}"
            )

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _check_model(clf: Classifier, x: Tensor) -> None:
        if not isinstance(clf, Classifier):
            raise TypeError(
                f"clf must be an advlab Classifier; got {type(clf).__name__} "
                "(wrap it: advlab.models.Classifier(net, bounds=..., mean=..., std=...))"
            )
        clf.check_input(x)
        if x.shape[0] == 0:
            raise ValueError("x is an empty batch")

    @staticmethod
    def _predict(clf: Classifier, x: Tensor) -> Tensor:
        """Predicted labels ``(N,)`` in batches, without checks or gradients."""
        with torch.no_grad():
            parts = [
                clf.logits(x[i : i + _EVAL_BATCH], check=False).argmax(1)
                for i in range(0, x.shape[0], _EVAL_BATCH)
            ]
        return torch.cat(parts)

    @staticmethod
    def _bounds(clf: Classifier, x: Tensor) -> tuple[Tensor, Tensor]:
        """The model's bounds on ``x``'s device and dtype."""
        low = clf.low.to(device=x.device, dtype=x.dtype)
        high = clf.high.to(device=x.device, dtype=x.dtype)
        return low, high

    def _fooled(self, clf: Classifier, x: Tensor, v: Tensor, clean: Tensor) -> Tensor:
        """``(N,)`` bool: the predicted label of ``clip(x + v)`` differs from ``clean``."""
        low, high = self._bounds(clf, x)
        with torch.no_grad():
            parts = [
                clf.logits(_clip(x[i : i + _EVAL_BATCH] + v, low, high), check=False).argmax(1)
                for i in range(0, x.shape[0], _EVAL_BATCH)
            ]
        return torch.cat(parts) != clean

    # ------------------------------------------------------------------ fitting
    def fit(self, clf: Classifier, x: Tensor, *, progress: bool = False) -> UniversalPerturbation:
        """Learn ``v`` on the unlabeled images ``x (N, C, H, W)`` (pixel units, inside the
        model's bounds, on the model's device); returns ``self``. ``progress``: show a
        progress bar over the passes (the command line does)."""
        self._check_model(clf, x)
        x = x.detach()
        seed = self.seed if self.seed is not None else secrets.randbits(62)
        gen = torch.Generator().manual_seed(seed)  # CPU: the same order on every device
        n = int(x.shape[0])
        history: list[float] = []
        with attack_mode(clf, "eval"):
            low, high = self._bounds(clf, x)
            clean = self._predict(clf, x)  # (N,) k̂(x), the labels to move away from
            v = torch.zeros(x.shape[1:], dtype=x.dtype, device=x.device)  # (C, H, W)
            best, best_rate = v, -1.0
            bar = progress_bar(
                range(self.max_epochs), desc="universal", disable=None if progress else True
            )
            for epoch in bar:
                order = torch.randperm(n, generator=gen).to(x.device)
                for start in range(0, n, self.batch_size):
                    chunk = order[start : start + self.batch_size]  # (B,) image indices
                    xb, yb = x[chunk], clean[chunk]
                    if self.method == "deepfool":
                        v = self._deepfool_update(clf, xb, yb, v, low, high)
                    else:
                        v = self._sgd_update(clf, xb, yb, v, low, high)
                rate = float(self._fooled(clf, x, v, clean).float().mean())
                history.append(rate)
                if rate > best_rate:  # keep the best pass end (the paper keeps the last)
                    best, best_rate = v.detach().clone(), rate
                bar.set_postfix(fooling_rate=f"{rate:.3f}")
                logger.debug("universal pass %d: fooling rate %.4f", epoch + 1, rate)
                if rate >= self.target_fooling_rate:
                    break
        self._v, self._low, self._high = best, low.detach(), high.detach()
        self.history = history
        return self

    def _project(self, v: Tensor) -> Tensor:
        """``P_{p,eps}(v)``: the closest point of the eps-ball, for one perturbation."""
        return self.lp.project(v.unsqueeze(0), self.eps).squeeze(0)

    def _deepfool_update(
        self, clf: Classifier, xb: Tensor, yb: Tensor, v: Tensor, low: Tensor, high: Tensor
    ) -> Tensor:
        """One mini-batch of Algorithm 1: DeepFool at ``x_i + v`` for the images of the batch
        not yet fooled, then ``v ← P(v + mean_i Δv_i)``."""
        xv = _clip(xb + v, low, high)  # (B, C, H, W)
        with torch.no_grad():
            keep = clf.logits(xv, check=False).argmax(1) == yb  # (B,) not fooled yet
        if not bool(keep.any()):
            return v
        df = DeepFool(
            norm="l2", steps=self.deepfool_steps, overshoot=self.overshoot, seed=self.seed
        )
        xs = xv[keep]
        dv = df(clf, xs, yb[keep], model_mode="keep").x_adv - xs  # (m, C, H, W): Δv_i
        return self._project(v + dv.mean(0))

    def _sgd_update(
        self, clf: Classifier, xb: Tensor, yb: Tensor, v: Tensor, low: Tensor, high: Tensor
    ) -> Tensor:
        """One mini-batch of the SGD variant: a steepest-ascent step on the mean loss."""
        with torch.enable_grad():
            vg = v.detach().requires_grad_(True)
            logits = clf.logits(_clip(xb + vg, low, high), check=False).float()  # (B, K)
            if self.loss == "ce":
                value = ce(logits, yb).clamp(max=self.ce_clip)
            else:
                value = margin(logits, yb, None, kappa=0.0)
            (g,) = torch.autograd.grad(value.mean(), vg)
        d = self.lp.direction(g.unsqueeze(0)).squeeze(0)  # sign(g) or g / ||g||_2
        return self._project(v.detach() + self.step_size * d)

    # ------------------------------------------------------------------ measuring
    def fooling_rate(self, clf: Classifier, x: Tensor) -> float:
        """Fraction of ``x (N, C, H, W)`` whose predicted label changes under ``x + v`` (clamped
        into ``clf``'s bounds): the paper's fooling rate. Needs no labels."""
        v = self._state()[0]
        self._check_model(clf, x)
        self._check_batch(x)
        return self._rate(clf, x.detach(), v.to(x))

    def _rate(self, clf: Classifier, x: Tensor, v: Tensor) -> float:
        """Fooling rate of ``v (C, H, W)`` or per-image ``v (N, C, H, W)`` on ``x``."""
        with attack_mode(clf, "eval"):
            clean = self._predict(clf, x)
            if v.ndim == x.ndim:
                low, high = self._bounds(clf, x)
                pred = self._predict(clf, _clip(x + v, low, high))
                return float((pred != clean).float().mean())
            return float(self._fooled(clf, x, v, clean).float().mean())

    def noise(self, n: int, *, seed: int | None = None) -> Tensor:
        """``n`` random perturbations ``(n, C, H, W)`` with the norm of ``v``: Linf, uniformly
        random signs times ``||v||_inf`` (a vertex of the ball, the strongest random noise of
        that size); L2, a uniformly random direction times ``||v||_2``. ``seed`` defaults to
        the object's ``seed``."""
        v = self._state()[0]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an integer >= 0; got {n!r}")
        s = seed if seed is not None else self.seed
        gen = torch.Generator().manual_seed(s if s is not None else secrets.randbits(62))
        size = float(self.lp.size(v.unsqueeze(0))[0])
        shape = (n, *v.shape)
        if self.norm == "linf":
            r = torch.randint(0, 2, shape, generator=gen).to(v.dtype) * 2 - 1
        else:
            r = self.lp.direction(torch.randn(shape, generator=gen, dtype=v.dtype))
        return (r * size).to(v.device)

    def noise_fooling_rate(self, clf: Classifier, x: Tensor, *, seed: int | None = None) -> float:
        """The fooling rate of random noise of the same norm as ``v`` (see :meth:`noise`), one
        independent draw per image: an unbiased estimate of the expected fooling rate of a
        random universal perturbation of that size, with less variance than a single draw."""
        self._state()
        self._check_model(clf, x)
        self._check_batch(x)
        return self._rate(clf, x.detach(), self.noise(int(x.shape[0]), seed=seed).to(x))

    # ------------------------------------------------------------------ files
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``perturbation.safetensors`` (``perturbation``, the model bounds ``low`` and
        ``high``) and ``perturbation.json`` (schema_version, hyperparameters, history, shape,
        norms, versions) into ``folder`` (created if needed), atomically; returns the
        folder."""
        v, low, high = self._state()
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {
            k: t.detach().to("cpu").contiguous().clone()
            for k, t in (("perturbation", v), ("low", low), ("high", high))
        }
        atomic_write_bytes(out / TENSORS, st_save(tensors))
        flat = v.detach().flatten().float().cpu()
        meta = {
            "schema_version": SCHEMA_VERSION,
            "kind": "universal-perturbation",
            "config": self.config(),
            "history": list(self.history),
            "shape": list(v.shape),
            "norms": {"linf": float(flat.abs().max()), "l2": float(flat.norm())},
            "advlab_version": __version__,
            "torch_version": torch.__version__,
            "saved_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        atomic_write_json(out / META, meta)
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> UniversalPerturbation:
        """Read a perturbation written by :meth:`save` (``folder``, or one of its two files)."""
        p = Path(folder)
        p = p.parent if p.name in (TENSORS, META) else p
        meta_file, tensor_file = p / META, p / TENSORS
        for f in (meta_file, tensor_file):
            if not f.is_file():
                raise FileNotFoundError(f"no universal perturbation at {p}: {f.name} not found")
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read {meta_file}: {e}") from None
        if not isinstance(meta, dict) or meta.get("schema_version") != SCHEMA_VERSION:
            got = meta.get("schema_version") if isinstance(meta, dict) else None
            raise ValueError(
                f"{meta_file} has schema_version {got!r}; this advlab reads {SCHEMA_VERSION}"
            )
        try:
            obj = cls(**meta["config"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"{meta_file} holds no valid configuration: {e}") from None
        try:
            tensors = load_file(str(tensor_file))
        except (OSError, SafetensorError) as e:
            raise ValueError(f"cannot read {tensor_file}: {e}") from None
        missing = {"perturbation", "low", "high"} - set(tensors)
        if missing:
            raise ValueError(f"{tensor_file} lacks tensor(s) {', '.join(sorted(missing))}")
        v = tensors["perturbation"]
        if list(v.shape) != list(meta.get("shape", [])):
            raise ValueError(
                f"{tensor_file}: perturbation shape {tuple(v.shape)} differs from the sidecar's "
                f"{meta.get('shape')}"
            )
        size = float(obj.lp.size(v.unsqueeze(0))[0])
        if not size <= obj.eps * (1 + 1e-5) + 1e-7:
            raise ValueError(
                f"{tensor_file}: the perturbation's {obj.norm} norm {size:.6g} exceeds eps "
                f"{obj.eps:g}"
            )
        obj._v, obj._low, obj._high = v, tensors["low"], tensors["high"]
        obj.history = [float(r) for r in meta.get("history", [])]
        return obj
