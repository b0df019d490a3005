"""Transformation attacks: rotations and translations [``spatial``] and lighting [``lighting``].

* :class:`Spatial` (Engstrom, Tran, Tsipras, Schmidt & Madry 2019, "Exploring the landscape of
  spatial robustness", ICML): the worst rotation (±``max_rotation`` degrees, default 30) and
  translation (±``max_translation`` of the image side per axis, default 0.1, i.e. the paper's
  ±3 px on 28/32-px MNIST/CIFAR images, ±24 px on 224-px ImageNet images), found by
  ``search="grid"`` (the paper's grid: 5 translations per axis × 31 rotations = 775
  transformations, the identity included) or ``search="worst-of-k"`` (the paper's random
  search: ``k`` transformations, default 10, drawn uniformly in the ranges).
* :class:`Lighting` (advlab's, no paper; seed 000's "rotations, lighting"): the worst
  brightness / contrast / gamma change, same two searches. Defaults: brightness offset
  ±0.2 of the pixel range, contrast and gamma factors in ``[1/1.5, 1.5]`` (log-spaced grid,
  log-uniform draws); grid 5 × 5 × 5 = 125 transformations.

How they fit the attack engine (these are not Lp-ball attacks). Both subclass :class:`Attack`
directly: the threat model is the set of transformations, not an eps-ball, so there is no
``eps`` (``result.eps`` is ``None`` and ``budget()`` too) and ``accuracy_at(eps)`` is
meaningless for them; use ``result.accuracy`` (accuracy under the worst transformation). The
``norm`` hyperparameter (default ``"linf"``) only chooses how ``result.norms`` reports the size
of the change ``x_adv - x`` in pixel units. ``x_adv`` is the transformed input, clamped into the
model's bounds. ``success`` is per sample: misclassified (untargeted) or at the target
(targeted; not in the paper, which is untargeted).

Search (per-sample worst case, batched over samples and transformations): every input is
scored on every candidate transformation (``batch_size`` transformed images per forward pass),
and keeps the candidate that fools the model with the highest ``loss`` (default ``"ce"``, the
paper's cross-entropy; ``"margin"`` and ``"dlr"`` too), else the highest-loss one. The identity
is always the first candidate (deviation for ``worst-of-k``: ``k + 1`` queries per input, so the
attack never does worse than the clean input; the grid contains it whenever every axis count is
odd, and it is added otherwise), and a zero range (e.g. ``max_rotation=0``) collapses its axis
to the identity value, so all-zero ranges give ``x_adv == x``. Forward passes only (``queries``
counts one per input per candidate; no gradients), so both attacks run on
:func:`~advlab.models.query_access` models. ``early_stop=True`` stops scoring an input at its
first fooling candidate (fewer queries; it then keeps that candidate, not the highest-loss one).

Warping: :func:`rotate_translate` builds one affine sampling grid per image
(``torch.nn.functional.affine_grid`` / ``grid_sample``, bilinear, differentiable), rotating
about the image centre (positive angle = counter-clockwise on screen) and translating by a
fraction of the width/height (positive = right/down); pixels from outside the image are
filled with the lower bound (black, the paper's zero padding) by default.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.attacks.base import Attack, ModelMode, TargetSpec, _nonneg, _positive_int
from advlab.attacks.losses import get_loss
from advlab.attacks.problem import Problem
from advlab.attacks.registry import attacks
from advlab.attacks.result import AttackResult
from advlab.models.classifier import Classifier

Search = Literal["grid", "worst-of-k"]
Padding = Literal["black", "border", "reflection"]
_TINY = 1e-6  # gamma: pow on values clamped away from 0 keeps gradients finite


def _image_check(x: Tensor, what: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} needs a torch.Tensor; got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{what} needs images of shape (N, C, H, W); got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{what} needs a float tensor in pixel units; got dtype {x.dtype}")


def _per_image(v: Tensor | float, x: Tensor) -> Tensor:
    """``v`` (a number or ``(N,)``) as a ``(N,)`` tensor in ``x``'s dtype and device."""
    t = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    return t.expand(x.shape[0]) if t.ndim == 0 else t


def rotate_translate(
    x: Tensor,
    angle: Tensor | float,
    tx: Tensor | float = 0.0,
    ty: Tensor | float = 0.0,
    *,
    fill: Tensor | float = 0.0,
    padding: Padding = "black",
) -> Tensor:
    """Rotate each image of ``x (N, C, H, W)`` by ``angle`` degrees about its centre
    (counter-clockwise on screen), then translate it by ``tx`` of its width (right) and ``ty``
    of its height (down); each argument a number or one value per image ``(N,)``.

    Bilinear sampling on an affine grid (differentiable in ``x`` and in the parameters);
    ``padding="black"`` fills pixels from outside the image with ``fill`` (a number, or a
    tensor broadcastable to one image, e.g. the model's lower bound), ``"border"`` repeats the
    edge, ``"reflection"`` mirrors the image. Images whose three parameters are all 0 are
    returned exactly (no resampling)."""
    _image_check(x, "rotate_translate")
    if padding not in ("black", "border", "reflection"):
        raise ValueError(f"padding must be 'black', 'border' or 'reflection'; got {padding!r}")
    n, _, h, w = x.shape
    a = _per_image(angle, x) * (math.pi / 180.0)
    txp, typ = _per_image(tx, x) * w, _per_image(ty, x) * h  # pixels
    cos, sin = torch.cos(a), torch.sin(a)
    # output -> input in pixel coordinates (y down): p_in = R^T (p_out - t), R the on-screen
    # counter-clockwise rotation; in normalized coordinates u = p / (size / 2).
    theta = torch.stack(
        [
            torch.stack([cos, -sin * h / w, -(cos * txp - sin * typ) * 2 / w], 1),
            torch.stack([sin * w / h, cos, -(sin * txp + cos * typ) * 2 / h], 1),
        ],
        1,
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    if padding == "black":
        f = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
        out = F.grid_sample(x - f, grid, padding_mode="zeros", align_corners=False) + f
    else:
        out = F.grid_sample(x, grid, padding_mode=padding, align_corners=False)
    same = (a == 0) & (txp == 0) & (typ == 0)
    return torch.where(same.view(-1, 1, 1, 1), x, out)


def adjust_lighting(
    z: Tensor,
    brightness: Tensor | float = 0.0,
    contrast: Tensor | float = 1.0,
    gamma: Tensor | float = 1.0,
) -> Tensor:
    """Lighting change of images ``z (N, C, H, W)`` with values in ``[0, 1]``: gamma
    ``z ** gamma``, then contrast ``m + contrast · (· - m)`` about each image's mean ``m``
    (over channels and pixels, as PIL's ``ImageEnhance.Contrast`` blends with the mean grey),
    then brightness ``+ brightness``; clamped to ``[0, 1]``. Each argument a number or one
    value per image ``(N,)``; differentiable (``pow`` on values clamped to ``>= 1e-6``, with
    exact zeros kept)."""
    _image_check(z, "adjust_lighting")
    view = (-1, 1, 1, 1)
    g = _per_image(gamma, z).view(view)
    zg = torch.where(z > 0, z.clamp_min(_TINY) ** g, torch.zeros_like(z))
    m = zg.mean((1, 2, 3), keepdim=True)
    out = m + _per_image(contrast, z).view(view) * (zg - m) + _per_image(brightness, z).view(view)
    return out.clamp(0.0, 1.0)


def _axis(n: int, half_range: float) -> Tensor:
    """``n`` evenly spaced values in ``[-half_range, half_range]`` (float64), 0 exactly in the
    middle when ``n`` is odd; ``[0]`` when ``n == 1`` or the range is 0."""
    if n == 1 or half_range == 0:
        return torch.zeros(1, dtype=torch.float64)
    i = torch.arange(n, dtype=torch.float64) * 2 - (n - 1)  # odd n: exact 0 in the middle
    return i * (half_range / (n - 1))


def _cartesian(*axes: Tensor) -> Tensor:
    """``(prod(len), len(axes))``: every combination of the axis values."""
    return torch.cartesian_prod(*axes).reshape(-1, len(axes))


class TransformAttack(Attack):
    """Per-sample worst case over a set of parameterized input transformations (see the module
    docstring). Subclasses give the parameter ``identity``, the ``grid_params()``, the
    ``random_params(...)`` and ``transform(...)``.

    Args:
        search: ``"grid"`` (every grid point) or ``"worst-of-k"`` (``k`` random draws per input).
        k: random transformations per input for ``worst-of-k`` (default 10, the paper's).
        loss: ``"ce"`` (default), ``"margin"`` or ``"dlr"``: ranks the candidates.
        early_stop: stop scoring an input at its first fooling candidate.
        batch_size: transformed images per forward pass (memory only; results do not depend
            on it).
        norm: how ``result.norms`` reports the size of ``x_adv - x`` (default ``"linf"``).
        seed: seeds the private generator (``worst-of-k`` draws).
    """

    identity: ClassVar[tuple[float, ...]] = ()

    def __init__(
        self,
        *,
        search: Search = "grid",
        k: int = 10,
        loss: str = "ce",
        early_stop: bool = False,
        batch_size: int = 1024,
        norm: str = "linf",
        seed: int | None = 0,
    ) -> None:
        super().__init__(norm=norm, seed=seed)
        if search not in ("grid", "worst-of-k"):
            raise ValueError(f"search must be 'grid' or 'worst-of-k'; got {search!r}")
        self.search: Search = search
        self.k = _positive_int("k", k)
        get_loss(loss)
        self.loss = loss
        self.early_stop = bool(early_stop)
        self.batch_size = _positive_int("batch_size", batch_size)

    # ------------------------------------------------------------- subclass API
    @abstractmethod
    def grid_params(self) -> Tensor:
        """``(T, P)`` float64: the grid's transformation parameters."""

    @abstractmethod
    def random_params(self, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        """``(*shape, P)`` float64 random parameters on the generator's device; ``shape`` is
        ``(k, N)`` (the draws are made in that order, so a smaller ``k`` gives a prefix)."""

    @abstractmethod
    def transform(self, x: Tensor, params: Tensor, low: Tensor, high: Tensor) -> Tensor:
        """``x (N, C, H, W)`` transformed by ``params (N, P)``, inside ``[low, high]``;
        exactly ``x`` where a row of ``params`` is the identity."""

    # ------------------------------------------------------------------ checks
    def _check(self, model: Classifier, x: Tensor, y: Tensor) -> Tensor:
        y = super()._check(model, x, y)
        if x.ndim != 4:
            raise ValueError(
                f"{self.name} needs images of shape (N, C, H, W); got x of shape {tuple(x.shape)}"
            )
        return y

    # ------------------------------------------------------------------ search
    def _candidates(self, p: Problem) -> Tensor:
        """``(T, N, P)`` candidate parameters, the identity first."""
        ident = torch.tensor(self.identity, dtype=torch.float64)
        if self.search == "grid":
            grid = self.grid_params()
            grid = grid[~(grid == ident).all(1)]
            cand = torch.cat([ident.view(1, -1), grid]).to(p.x.device)
            return cand.unsqueeze(1).expand(-1, p.n, -1)
        draws = self.random_params((self.k, p.n), p.generator).to(p.x.device)
        return torch.cat([ident.to(p.x.device).expand(1, p.n, -1), draws])

    def _search(self, p: Problem) -> tuple[Tensor, Tensor, Tensor]:
        """``x_adv (N, ...)``, its logits ``(N, K)`` and the chosen parameters ``(N, P)``."""
        cand = self._candidates(p).to(p.x.dtype)  # (T, N, P)
        best: dict[str, Tensor] = {
            "x": p.x.clone(),
            "params": cand[0].clone(),
            "adv": torch.zeros(p.n, dtype=torch.bool, device=p.x.device),
            "score": torch.full((p.n,), float("-inf"), device=p.x.device),
            "filled": torch.zeros(p.n, dtype=torch.bool, device=p.x.device),
        }
        for start in range(0, p.n, self.batch_size):
            block = p.all if self.batch_size >= p.n else p.all[start : start + self.batch_size]
            self._search_block(p, block, cand, best)
        return best["x"], best["logits"], best["params"]

    def _search_block(self, p: Problem, act: Tensor, cand: Tensor, best: dict[str, Tensor]) -> None:
        """Score the candidates ``cand (T, N, P)`` on the samples ``act`` (at most
        ``batch_size`` of them), ``c`` candidates per forward pass, updating ``best``."""
        loss_fn = get_loss(self.loss)
        t0, total = 0, cand.shape[0]
        while t0 < total and act.numel():
            m = act.numel()
            c = max(1, min(total - t0, self.batch_size // m))
            par = cand[t0 : t0 + c, act]  # (c, m, P)
            x0 = p.x[act]
            xs = x0.unsqueeze(0).expand(c, *x0.shape).reshape(c * m, *x0.shape[1:])
            xt = self.transform(xs, par.reshape(c * m, -1), p.low, p.high)  # (c·m, ...)
            logits = p.model.logits(xt, check=False)  # (c·m, K), candidate-major
            p.count(p.queries, act, c)
            y, t = p.labels(act)
            yr, tr = y.repeat(c), (t.repeat(c) if t is not None else None)
            loss = loss_fn(logits.float(), yr, tr).view(c, m)
            pred = logits.argmax(1)
            fooled = (pred == tr if tr is not None else pred != yr).view(c, m)
            # per sample: the highest-loss fooling candidate, else the highest-loss one
            pool = fooled | ~fooled.any(0, keepdim=True)
            j = torch.where(pool, loss, torch.full_like(loss, float("-inf"))).argmax(0)  # (m,)
            cols = torch.arange(m, device=j.device)
            new_adv, new_score = fooled[j, cols], loss[j, cols]
            old_adv, old_score = best["adv"][act], best["score"][act]
            better = (new_adv & ~old_adv) | ((new_adv == old_adv) & (new_score > old_score))
            better |= ~best["filled"][act]  # the first candidate (the identity) always fills
            pick = (j * m + cols)[better]
            upd = act[better]
            if "logits" not in best:
                best["logits"] = torch.empty(
                    (p.n, logits.shape[1]), dtype=logits.dtype, device=logits.device
                )
            best["x"][upd] = xt[pick]
            best["logits"][upd] = logits[pick]
            best["params"][upd] = par[j, cols][better]
            best["adv"][upd], best["score"][upd] = new_adv[better], new_score[better]
            best["filled"][upd] = True
            t0 += c
            if self.early_stop:
                act = act[~best["adv"][act]]

    def _attack(self, p: Problem) -> tuple[Tensor, Tensor | None]:
        x_adv, logits, _ = self._search(p)
        return x_adv, logits

    def run(
        self,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        *,
        target: TargetSpec = None,
        model_mode: ModelMode = "eval",
    ) -> tuple[AttackResult, Tensor]:
        """Like calling the attack, and also the chosen transformation of each input:
        ``(result, params (N, P))`` (see the class's ``params`` layout); re-apply them with
        ``transform(x, params, model.low, model.high)``."""
        with self._problem(model, x, y, target, model_mode) as p:
            x_adv, logits, params = self._search(p)
        return self._result(p, x_adv, logits), params


@attacks.register("spatial")
class Spatial(TransformAttack):
    """Rotation + translation attack (Engstrom et al. 2019); see the module docstring.

    Args:
        max_rotation: rotations in ``[-max_rotation, max_rotation]`` degrees (default 30, the
            paper's).
        max_translation: translations in ``[-max_translation, max_translation]`` of the image
            width (horizontal) and height (vertical), default 0.1 (the paper's ±3 px on 28-px
            MNIST is 0.107; ±3 px on 32-px CIFAR-10 and ±24 px on 224-px ImageNet ≈ 0.1).
        n_translations, n_rotations: grid points per translation axis (default 5) and of
            rotation (default 31): the paper's 5 × 5 × 31 = 775-point grid, identity included.
        padding: ``"black"`` (default: the model's lower bound, the paper's zero padding),
            ``"border"`` or ``"reflection"``.
        search, k, loss, early_stop, batch_size, norm, seed: see :class:`TransformAttack`.

    ``params`` (from :meth:`run`) rows are ``(angle in degrees, tx, ty)``.
    """

    identity: ClassVar[tuple[float, ...]] = (0.0, 0.0, 0.0)

    def __init__(
        self,
        *,
        max_rotation: float = 30.0,
        max_translation: float = 0.1,
        search: Search = "grid",
        n_translations: int = 5,
        n_rotations: int = 31,
        k: int = 10,
        padding: Padding = "black",
        loss: str = "ce",
        early_stop: bool = False,
        batch_size: int = 1024,
        norm: str = "linf",
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            search=search,
            k=k,
            loss=loss,
            early_stop=early_stop,
            batch_size=batch_size,
            norm=norm,
            seed=seed,
        )
        self.max_rotation = _nonneg("max_rotation", max_rotation)
        if self.max_rotation > 180:
            raise ValueError(f"max_rotation must be <= 180 degrees; got {max_rotation!r}")
        self.max_translation = _nonneg("max_translation", max_translation)
        if self.max_translation > 1:
            raise ValueError(
                f"max_translation is a fraction of the image side, in [0, 1]; got "
                f"{max_translation!r} (3 px on a 28-px image is 3/28 ≈ 0.107)"
            )
        self.n_translations = _positive_int("n_translations", n_translations)
        self.n_rotations = _positive_int("n_rotations", n_rotations)
        if padding not in ("black", "border", "reflection"):
            raise ValueError(f"padding must be 'black', 'border' or 'reflection'; got {padding!r}")
        self.padding: Padding = padding

    def grid_params(self) -> Tensor:
        t = _axis(self.n_translations, self.max_translation)
        return _cartesian(_axis(self.n_rotations, self.max_rotation), t, t)

    def random_params(self, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        u = torch.rand((*shape, 3), generator=generator, device=generator.device)
        scale = torch.tensor([self.max_rotation, self.max_translation, self.max_translation])
        return (2 * u.double() - 1) * scale.double().to(u.device)

    def transform(self, x: Tensor, params: Tensor, low: Tensor, high: Tensor) -> Tensor:
        out = rotate_translate(
            x, params[:, 0], params[:, 1], params[:, 2], fill=low, padding=self.padding
        )
        return torch.maximum(torch.minimum(out, high), low)


@attacks.register("lighting")
class Lighting(TransformAttack):
    """Brightness / contrast / gamma attack (advlab's; see the module docstring and
    :func:`adjust_lighting`). Pixel values are mapped to ``[0, 1]`` through the model's bounds,
    changed, and mapped back.

    Args:
        brightness: offsets in ``[-brightness, brightness]`` of the pixel range (default 0.2).
        contrast: contrast factors in ``[1/contrast, contrast]`` (default 1.5; >= 1).
        gamma: gamma exponents in ``[1/gamma, gamma]`` (default 1.5; >= 1).
        n_brightness, n_contrast, n_gamma: grid points per axis (default 5 each: 125 points,
            identity included); contrast and gamma are log-spaced, and ``worst-of-k`` draws
            them log-uniformly (brightness uniformly).
        search, k, loss, early_stop, batch_size, norm, seed: see :class:`TransformAttack`.

    ``params`` (from :meth:`run`) rows are ``(brightness, contrast, gamma)``.
    """

    identity: ClassVar[tuple[float, ...]] = (0.0, 1.0, 1.0)

    def __init__(
        self,
        *,
        brightness: float = 0.2,
        contrast: float = 1.5,
        gamma: float = 1.5,
        search: Search = "grid",
        n_brightness: int = 5,
        n_contrast: int = 5,
        n_gamma: int = 5,
        k: int = 10,
        loss: str = "ce",
        early_stop: bool = False,
        batch_size: int = 1024,
        norm: str = "linf",
        seed: int | None = 0,
    ) -> None:
        super().__init__(
            search=search,
            k=k,
            loss=loss,
            early_stop=early_stop,
            batch_size=batch_size,
            norm=norm,
            seed=seed,
        )
        self.brightness = _nonneg("brightness", brightness)
        if self.brightness > 1:
            raise ValueError(
                f"brightness must be in [0, 1] (of the pixel range); got {brightness!r}"
            )
        self.contrast = _factor("contrast", contrast)
        self.gamma = _factor("gamma", gamma)
        self.n_brightness = _positive_int("n_brightness", n_brightness)
        self.n_contrast = _positive_int("n_contrast", n_contrast)
        self.n_gamma = _positive_int("n_gamma", n_gamma)

    def _logs(self) -> Tensor:
        return torch.tensor([math.log(self.contrast), math.log(self.gamma)], dtype=torch.float64)

    def grid_params(self) -> Tensor:
        lc, lg = self._logs().tolist()
        return _cartesian(
            _axis(self.n_brightness, self.brightness),
            _axis(self.n_contrast, lc).exp(),
            _axis(self.n_gamma, lg).exp(),
        )

    def random_params(self, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        u = 2 * torch.rand((*shape, 3), generator=generator, device=generator.device).double() - 1
        logs = self._logs().to(u.device)
        return torch.stack(
            [u[..., 0] * self.brightness, (u[..., 1] * logs[0]).exp(), (u[..., 2] * logs[1]).exp()],
            -1,
        )

    def transform(self, x: Tensor, params: Tensor, low: Tensor, high: Tensor) -> Tensor:
        span = high - low
        z = ((x - low) / span).clamp(0.0, 1.0)
        out = low + span * adjust_lighting(z, params[:, 0], params[:, 1], params[:, 2])
        same = params == torch.tensor(self.identity, dtype=params.dtype, device=params.device)
        out = torch.where(same.all(1).view(-1, 1, 1, 1), x, out)
        return torch.maximum(torch.minimum(out, high), low)


def _factor(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 1:
        raise ValueError(f"{name} must be a factor >= 1 (range [1/{name}, {name}]); got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return float(value)
