"""Defense-GAN (Samangouei, Kabkab & Chellappa 2018): classify the input's projection onto the
range of a GAN generator.

Given a trained generator ``G`` (:mod:`advlab.defenses.gan`, WGAN-GP), the defended model maps an
input ``x`` to ``G(z*)`` and classifies that with the base classifier, where ``z*`` is the best of
``R`` gradient-descent runs on ``||G(z) - x||_2^2``:

- ``R`` (``restarts``, default 10) starting points ``z_0 ~ N(0, init_std^2 I)`` drawn from a
  private generator seeded by ``seed``. The *same* ``R`` starting points serve every input
  (fresh from ``seed`` at every forward), so the projection is a deterministic function of each
  input alone: the same ``x`` gives the same output in any batch, at any position, in any chunk.
- ``L`` (``iterations``, default 200) steps of momentum gradient descent on the per-image mean
  squared error ``mean((G(z) - x)^2)``, learning rate ``lr`` (default 10) times 0.1 from step
  ``ceil(decay_at · L)`` on (``decay_at`` 0.8), momentum ``momentum`` (0.7): the reference
  code's ``REC_LR = 10``, ``MomentumOptimizer(momentum=0.7)`` and step decay. The paper's text
  describes plain gradient descent with step ``eta``; ``momentum=0`` and ``decay_at=1`` give it.
- All ``R × N`` optimizations of a chunk of ``batch_size`` inputs run as one batched tensor on
  the generator's device; ``z*`` is the restart with the smallest final error.

The projection runs with the generator in eval mode and detached parameters (nothing
accumulates in ``.grad``, every module's train/eval flag is restored), under
``torch.enable_grad()`` so it also works inside ``torch.no_grad()`` (e.g. ``predict``).

Gradient story ``"bpda"`` (Athalye, Carlini & Wagner 2018): the projection is an inner
optimization; the defended model's own autograd gives a zero input gradient (its value is
``G(z*)`` computed from ``x.detach()``, plus ``0 · x``). Views:

- ``naive()``: the base classifier alone, the paper's white-box threat model (adversarial
  examples crafted on the classifier, then fed to Defense-GAN);
- ``adaptive()``: BPDA with the identity: forward ``G(z*(x))``, backward as if it were ``x``;
- :func:`latent_attack`: Athalye et al.'s attack on Defense-GAN, which searches the latent space
  directly for ``G(z)`` misclassified and close to ``x`` in per-pixel MSE (an L2 threat model,
  not Linf).

Variants (``variant`` metadata, as in the paper's tables): ``"orig"``, the classifier trained on
the original images; ``"rec"``, the classifier trained on reconstructions ``G(z*)`` of the
training images (produce them with :func:`reconstruct`).

Deviations from the paper, all stated: the latent starting points are shared across inputs (see
above; the reference code draws them per input with ``stddev = sqrt(1 / latent_dim)``, the paper
says ``N(0, sigma^2 I)``); ``init_std`` defaults to 1.0 (the generator's training prior); the
generator is trained far shorter than the reference's 200,000 iterations when trained on a CPU.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from advlab.data import TensorData
from advlab.defenses.base import Defended, GradientStory, bpda, defenses
from advlab.defenses.gan import Generator
from advlab.models.classifier import Classifier, wrap_like
from advlab.utils.modes import restored_modes
from advlab.utils.progress import progress as progress_bar

logger = logging.getLogger(__name__)

__all__ = [
    "DefenseGAN",
    "LatentAttackResult",
    "Projector",
    "defense_gan",
    "latent_attack",
    "reconstruct",
]

Variant = Literal["orig", "rec"]
VARIANTS: tuple[str, ...] = ("orig", "rec")


def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    return int(value)


def _float(
    name: str, value: Any, low: float, high: float | None = None, *, open_low: bool
) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if ok:
        ok = value > low if open_low else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        interval = f"{'(' if open_low else '['}{low}, {'inf)' if high is None else f'{high}]'}"
        raise ValueError(f"{name} must be a finite number in {interval}; got {value!r}")
    return float(value)


def _require_fitted(generator: Generator) -> None:
    if not bool(generator.fitted):
        raise RuntimeError(
            "Defense-GAN's generator is untrained: train one with "
            "advlab.defenses.gan.train_gan(data, ...) and pass it to DefenseGAN, or load a "
            "trained defense's state with load_state_dict"
        )


class Projector(nn.Module):
    """``x -> G(z*)``: the Defense-GAN projection onto the generator's range (see the module
    docstring for the algorithm and defaults). Holds the generator; its output carries no
    gradient."""

    def __init__(
        self,
        generator: Generator,
        *,
        iterations: int = 200,
        restarts: int = 10,
        lr: float = 10.0,
        momentum: float = 0.7,
        decay_at: float = 0.8,
        init_std: float = 1.0,
        seed: int = 0,
        batch_size: int = 128,
    ) -> None:
        super().__init__()
        if not isinstance(generator, Generator):
            raise TypeError(
                "generator must be an advlab.defenses.gan.Generator; got "
                f"{type(generator).__name__}"
            )
        self.generator = generator
        self.iterations = _int("iterations (L)", iterations, 0)
        self.restarts = _int("restarts (R)", restarts, 1)
        self.lr = _float("lr", lr, 0.0, open_low=True)
        self.momentum = _float("momentum", momentum, 0.0, 1.0, open_low=False)
        if self.momentum >= 1.0:
            raise ValueError(f"momentum must be < 1; got {momentum!r}")
        self.decay_at = _float("decay_at", decay_at, 0.0, 1.0, open_low=False)
        self.init_std = _float("init_std", init_std, 0.0, open_low=True)
        self.seed = _int("seed", seed, 0)
        self.batch_size = _int("batch_size", batch_size, 1)

    def settings(self) -> dict[str, Any]:
        return {
            "iterations": self.iterations,
            "restarts": self.restarts,
            "lr": self.lr,
            "momentum": self.momentum,
            "decay_at": self.decay_at,
            "init_std": self.init_std,
            "seed": self.seed,
            "batch_size": self.batch_size,
        }

    def initial_latents(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """The ``R`` starting points ``(R, latent_dim)``, drawn afresh from ``seed``."""
        gen = torch.Generator().manual_seed(self.seed)
        z = torch.randn(self.restarts, self.generator.latent_dim, generator=gen) * self.init_std
        return z.to(device=device, dtype=dtype)

    def check(self, x: Tensor) -> None:
        _require_fitted(self.generator)
        shape = self.generator.image_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"Defense-GAN's generator makes images of shape (N, {', '.join(map(str, shape))}); "
                f"got inputs of shape {tuple(x.shape)}"
            )

    def _params(self) -> dict[str, Tensor]:
        g = self.generator
        out = {k: v.detach() for k, v in g.named_parameters()}
        out.update(dict(g.named_buffers()))
        return out

    def generate(self, z: Tensor) -> Tensor:
        """``G(z)`` with detached generator weights: differentiable in ``z`` only."""
        out: Tensor = functional_call(self.generator, self._params(), (z,))
        return out

    def project(self, x: Tensor, *, return_all: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Project ``x (N, C, S, S)`` in ``[0, 1]``: returns ``(G(z*), z*, mse)`` with ``mse`` the
        per-image mean squared error ``mean((G(z*) - x)^2)``, all detached.

        With ``return_all=True``, ``z*`` is ``(N, R, latent_dim)`` and ``mse`` ``(N, R)`` for
        every restart (the images are still the best restart's)."""
        self.check(x)
        g = self.generator
        p = next(g.parameters())
        dev, dtype = p.device, p.dtype
        xs = x.detach().to(device=dev, dtype=dtype)
        recs, zs, errs = [], [], []
        with restored_modes(g), torch.enable_grad():
            g.eval()
            z0 = self.initial_latents(dev, dtype)
            params = self._params()
            for i in range(0, max(xs.shape[0], 1), self.batch_size):
                r, z, e = self._project_chunk(xs[i : i + self.batch_size], z0, params, return_all)
                recs.append(r)
                zs.append(z)
                errs.append(e)
        rec = torch.cat(recs).to(device=x.device, dtype=x.dtype)
        return rec, torch.cat(zs), torch.cat(errs)

    def _project_chunk(
        self, target: Tensor, z0: Tensor, params: dict[str, Tensor], return_all: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        n, r, d = target.shape[0], self.restarts, z0.shape[1]
        tgt = target.unsqueeze(1).expand(n, r, *target.shape[1:]).reshape(n * r, *target.shape[1:])
        z = z0.unsqueeze(0).expand(n, r, d).reshape(n * r, d).clone()
        velocity = torch.zeros_like(z)
        decay_step = math.ceil(self.decay_at * self.iterations)
        for step in range(self.iterations):
            lr = self.lr * (0.1 if step >= decay_step else 1.0)
            zg = z.requires_grad_(True)
            out = functional_call(self.generator, params, (zg,))
            loss = (out - tgt).pow(2).flatten(1).mean(1).sum()
            (grad,) = torch.autograd.grad(loss, zg)
            velocity = self.momentum * velocity + grad
            z = z.detach() - lr * velocity
        with torch.no_grad():
            out = functional_call(self.generator, params, (z,))
            mse = (out - tgt).pow(2).flatten(1).mean(1).view(n, r)
            best = mse.argmin(1)
            rows = torch.arange(n, device=z.device) * r + best
            rec = out[rows]
            if return_all:
                return rec, z.view(n, r, d), mse
            return rec, z[rows], mse.gather(1, best[:, None]).squeeze(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(x)[0]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.settings().items())


class _DefenseGANNet(nn.Module):
    """The defended pipeline ``base(G(z*(x)))`` with a zero input gradient (honest autograd
    through an inner optimization that is not unrolled)."""

    def __init__(self, projector: Projector, base: Classifier) -> None:
        super().__init__()
        self.projector = projector
        self.base = base

    def forward(self, x: Tensor) -> Tensor:
        rec = self.projector(x)
        return self.base.logits(rec + 0.0 * x, check=False)


class _BPDANet(nn.Module):
    """``base(bpda(G(z*(x)), x))``: projection forward, identity backward."""

    def __init__(self, projector: Projector, base: Classifier) -> None:
        super().__init__()
        self.projector = projector
        self.base = base

    def forward(self, x: Tensor) -> Tensor:
        rec = self.projector(x)
        return self.base.logits(bpda(rec, x), check=False)


class DefenseGAN(Defended):
    """Defense-GAN around ``base`` with ``generator`` (Samangouei et al. 2018).

    Args:
        base: the classifier (bounds ``(0, 1)``, image inputs ``(C, S, S)`` matching the
            generator's output).
        generator: a trained :class:`~advlab.defenses.gan.Generator` (an untrained one is
            accepted for loading a state later, but any forward then raises ``RuntimeError``).
        iterations, restarts, lr, momentum, decay_at, init_std, seed, batch_size: the
            projection's ``L`` (200), ``R`` (10), step size (10.0), momentum (0.7), decay point
            (0.8), starting-point scale (1.0), seed (0) and inputs per batched chunk (128); see
            the module docstring.
        variant: ``"orig"`` (the classifier was trained on original images) or ``"rec"``
            (trained on reconstructions); metadata for reports, no effect on the computation.

    ``project(x)`` returns the projections, ``reconstruction_error(x)`` the per-image MSE.
    """

    name: ClassVar[str] = "defense-gan"
    gradient: ClassVar[GradientStory] = "bpda"

    pipeline: _DefenseGANNet

    def __init__(
        self,
        base: Classifier,
        generator: Generator,
        *,
        iterations: int = 200,
        restarts: int = 10,
        lr: float = 10.0,
        momentum: float = 0.7,
        decay_at: float = 0.8,
        init_std: float = 1.0,
        seed: int = 0,
        batch_size: int = 128,
        variant: Variant = "orig",
    ) -> None:
        if not isinstance(base, Classifier):
            raise TypeError(f"a defense needs an advlab Classifier as its base; got {base!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
        if base.per_feature_bounds or base.bounds != (0.0, 1.0):
            raise ValueError(
                f"Defense-GAN's generator outputs pixels in [0, 1]; the base model's bounds are "
                f"{base.bounds if not base.per_feature_bounds else 'per-feature'}"
            )
        projector = Projector(
            generator,
            iterations=iterations,
            restarts=restarts,
            lr=lr,
            momentum=momentum,
            decay_at=decay_at,
            init_std=init_std,
            seed=seed,
            batch_size=batch_size,
        )
        if base.input_shape is not None and tuple(base.input_shape) != generator.image_shape:
            raise ValueError(
                f"the generator makes images of shape {generator.image_shape}; the base model "
                f"takes {tuple(base.input_shape)}"
            )
        pipeline = _DefenseGANNet(projector, base)
        super().__init__(pipeline, [base])
        if self.input_shape is None:
            self.input_shape = generator.image_shape
        self.pipeline = pipeline
        self.variant: Variant = variant
        # the defense's own modules follow the base's train/eval flag (eval for a trained base)
        flag = base.training
        inside = {id(m) for m in base.modules()}
        for m in self.modules():
            if id(m) not in inside:
                m.training = flag

    # ----------------------------------------------------------------- access
    @property
    def projector(self) -> Projector:
        return self.pipeline.projector

    @property
    def generator(self) -> Generator:
        return self.pipeline.projector.generator

    @property
    def fitted(self) -> bool:
        return bool(self.generator.fitted)

    def project(self, x: Tensor) -> Tensor:
        """The projections ``G(z*)`` of ``x`` (checked input; no gradient)."""
        self.check_input(x)
        return self.projector.project(x)[0]

    def reconstruction_error(self, x: Tensor) -> Tensor:
        """Per-image ``mean((G(z*) - x)^2)`` ``(N,)``."""
        self.check_input(x)
        return self.projector.project(x)[2].to(x.device)

    # ------------------------------------------------------------------ views
    def _view(self, net: nn.Module) -> Classifier:
        with restored_modes(self):
            return wrap_like(self, net)

    def naive(self) -> Classifier:
        """The base classifier: the paper's white-box threat model crafts on it alone."""
        return self.base

    def adaptive(self) -> Classifier:
        """BPDA (Athalye et al. 2018): the real projection forward, the identity backward."""
        return self._view(_BPDANet(self.projector, self.base))

    def defense_args(self) -> dict[str, Any]:
        return {**self.generator.arch(), **self.projector.settings(), "variant": self.variant}

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, " + super().extra_repr()


@defenses.register("defense-gan")
def defense_gan(
    base: Classifier,
    *,
    latent_dim: int = 128,
    width: int = 64,
    image_size: int | None = None,
    channels: int | None = None,
    iterations: int = 200,
    restarts: int = 10,
    lr: float = 10.0,
    momentum: float = 0.7,
    decay_at: float = 0.8,
    init_std: float = 1.0,
    seed: int = 0,
    batch_size: int = 128,
    variant: Variant = "orig",
) -> DefenseGAN:
    """A :class:`DefenseGAN` around ``base`` with an *untrained* generator of the given
    architecture (``image_size``/``channels`` default to the base's input shape): load a trained
    defense's state into it (``load_state_dict``), or build ``DefenseGAN(base, train_gan(...))``.
    """
    if image_size is None or channels is None:
        shape = base.input_shape if isinstance(base, Classifier) else None
        if shape is None or len(shape) != 3 or shape[1] != shape[2]:
            raise ValueError(
                "give image_size and channels, or a base model with a known square image "
                f"input shape (C, S, S); the base's input shape is {shape}"
            )
        channels = int(shape[0]) if channels is None else channels
        image_size = int(shape[1]) if image_size is None else image_size
    generator = Generator(latent_dim, image_size, channels, width, seed=seed)
    return DefenseGAN(
        base,
        generator,
        iterations=iterations,
        restarts=restarts,
        lr=lr,
        momentum=momentum,
        decay_at=decay_at,
        init_std=init_std,
        seed=seed,
        batch_size=batch_size,
        variant=variant,
    )


# ------------------------------------------------------------------------ reconstructions


def reconstruct(
    model: DefenseGAN | Projector | Generator,
    data: TensorData | Tensor,
    batch_size: int = 512,
    *,
    progress: bool | None = None,
) -> TensorData | Tensor:
    """Projections ``G(z*)`` of a whole dataset, for training a Defense-GAN-Rec classifier.

    ``model`` is a :class:`DefenseGAN` (its projection settings), a :class:`Projector`, or a bare
    trained :class:`Generator` (then the paper's settings ``L = 200``, ``R = 10``). ``data`` is a
    :class:`TensorData` (returns one with the same labels and metadata, ``name`` suffixed
    ``"-rec"``) or an image tensor (returns a tensor). Works through ``batch_size`` images at a
    time (each runs the projector's batched chunks), with a progress bar.

    Cost: ``N · R · L`` generator forward+backward passes; on a CPU the full MNIST training set
    at ``L = 200, R = 10`` takes hours, so a -Rec classifier is usually trained on
    reconstructions from a cheaper projector (e.g. ``L = 50, R = 2``) or a subset; see
    ``docs/defenses/defense-gan.md``.
    """
    if isinstance(model, DefenseGAN):
        projector = model.projector
    elif isinstance(model, Projector):
        projector = model
    elif isinstance(model, Generator):
        projector = Projector(model)
    else:
        raise TypeError(
            f"model must be a DefenseGAN, Projector or Generator; got {type(model).__name__}"
        )
    _int("batch_size", batch_size, 1)
    x = data.x if isinstance(data, TensorData) else data
    if not isinstance(x, Tensor):
        raise TypeError(f"data must be a TensorData or an image tensor; got {type(data).__name__}")
    projector.check(x)
    lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 1.0)
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"data must be in [0, 1]; got min {lo:.4g}, max {hi:.4g}")
    starts = range(0, x.shape[0], batch_size)
    bar = progress_bar(
        starts,
        desc="Defense-GAN reconstruct",
        total=len(starts),
        disable=None if progress is None else not progress,
    )
    parts = []
    try:
        for i in bar:
            parts.append(projector.project(x[i : i + batch_size])[0])
    finally:
        bar.close()
    rec = torch.cat(parts) if parts else x.detach().clone()
    rec = rec.to(device=x.device, dtype=x.dtype)
    if isinstance(data, TensorData):
        return TensorData(
            x=rec,
            y=data.y,
            num_classes=data.num_classes,
            name=f"{data.name}-rec",
            class_names=data.class_names,
            mean=data.mean,
            std=data.std,
        )
    return rec


# ------------------------------------------------------------------------ latent attack


@dataclass
class LatentAttackResult:
    """What :func:`latent_attack` returns.

    Attributes:
        x_adv: ``(N, C, S, S)`` adversarial inputs: a misclassified ``G(z)`` within the MSE budget
            where the search found one, else the original ``x``.
        success: ``(N,)`` bool: ``x_adv`` is misclassified by the defended model (``verify``)
            or by the base (no ``verify``), and its MSE is within ``max_mse``.
        mse: ``(N,)`` per-pixel mean squared distance ``||x_adv - x||_2^2 / n`` (0 where
            ``x_adv`` is ``x``).
        min_mse: ``(N,)`` the smallest MSE of any ``G(z)`` the base misclassified during the
            search (``inf`` if none), budget or not: a distortion curve, unverified by the
            defense.
        pred: ``(N,)`` predictions on ``x_adv`` (the defended model's with ``verify``).
        y: ``(N,)`` true labels. ``max_mse``: the budget.
    """

    x_adv: Tensor
    success: Tensor
    mse: Tensor
    min_mse: Tensor
    pred: Tensor
    y: Tensor
    max_mse: float

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if self.success.numel() else 0.0

    @property
    def accuracy(self) -> float:
        """Fraction of ``x_adv`` classified as the true label (accuracy under attack)."""
        return float((self.pred == self.y).float().mean()) if self.y.numel() else 0.0


def latent_attack(
    defended: DefenseGAN,
    x: Tensor,
    y: Tensor,
    *,
    max_mse: float = 0.005,
    steps: int = 100,
    lr: float = 0.05,
    c: float = 1e-3,
    search_steps: int = 5,
    kappa: float = 2.0,
    verify: bool = True,
) -> LatentAttackResult:
    """Athalye, Carlini & Wagner 2018's attack on Defense-GAN: search the latent space directly.

    Threat model: *L2 / per-pixel MSE*, not Linf. The adversarial input is ``x' = G(z)`` with
    ``||G(z) - x||_2^2 / n <= max_mse`` (``n`` pixels per image; default 0.005, about the mean
    distortion Athalye et al. report) and ``x'`` misclassified. Because ``x'`` lies on the
    generator's range, the projection maps it (close to) itself and the defense does not remove
    the perturbation. Note that the budget includes the generator's own reconstruction error of
    ``x``: an input the generator cannot reconstruct within ``max_mse`` cannot be attacked.

    Algorithm: start from the defense's own projection ``z*`` of ``x`` (its ``L``, ``R``); minimize
    ``mean((G(z) - x)^2) + c · max(Z_y - max_{j≠y} Z_j + kappa, 0)`` over ``z`` with Adam
    (``steps`` steps, step ``lr``; ``Z`` the base's logits on ``G(z)``); repeat for
    ``search_steps`` values of ``c`` per input (Carlini & Wagner 2017's search: ×10 until an
    adversarial ``G(z)`` is found, then bisection; first ``c`` default 1e-3, since the MSE is
    ~1e-3 and logit margins ~10). Per input it keeps, among misclassified iterates within the
    budget, the one with the largest logit margin (most likely to stay misclassified after the
    defense re-projects it). ``kappa`` (default 2) asks for that margin. With ``verify=True``
    (default) success is checked on the defended model itself (a full projection of each
    ``x'``), so it counts only what Defense-GAN really misclassifies.

    Returns a :class:`LatentAttackResult`.
    """
    if not isinstance(defended, DefenseGAN):
        raise TypeError(f"defended must be a DefenseGAN; got {type(defended).__name__}")
    max_mse = _float("max_mse", max_mse, 0.0, open_low=True)
    steps = _int("steps", steps, 1)
    lr = _float("lr", lr, 0.0, open_low=True)
    c = _float("c", c, 0.0, open_low=True)
    search_steps = _int("search_steps", search_steps, 1)
    kappa = _float("kappa", kappa, 0.0, open_low=False)
    defended.check_input(x)
    if not isinstance(y, Tensor) or y.shape != (x.shape[0],):
        raise ValueError(f"y must be a tensor of shape ({x.shape[0]},); got {y!r}")
    k = defended.num_classes
    if y.numel() and (int(y.min()) < 0 or (k is not None and int(y.max()) >= k)):
        raise ValueError(f"labels must be in [0, {k}); got min {int(y.min())}, max {int(y.max())}")
    base, projector = defended.base, defended.projector
    xd = x.detach()
    yd = y.to(xd.device).long()
    n, dev = xd.shape[0], xd.device
    with restored_modes(defended):
        defended.eval()
        _, z_start, _ = projector.project(xd)
        z_start = z_start.to(dev)
        min_mse = torch.full((n,), float("inf"), device=dev)
        best_margin = torch.full((n,), float("-inf"), device=dev)
        best_x = xd.clone()
        c_now = torch.full((n,), c, device=dev)
        c_lo = torch.zeros(n, device=dev)
        c_hi = torch.full((n,), float("inf"), device=dev)
        for _ in range(search_steps):
            found = torch.zeros(n, dtype=torch.bool, device=dev)
            z = z_start.clone().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=lr)
            for _ in range(steps + 1):
                with torch.enable_grad():
                    img = projector.generate(z).to(xd.dtype)
                    mse = (img - xd).pow(2).flatten(1).mean(1)
                    logits = base.logits(img, check=False)
                    true = logits.gather(1, yd[:, None]).squeeze(1)
                    other = logits.scatter(1, yd[:, None], float("-inf")).max(1).values
                    loss = (mse + c_now * (true - other + kappa).clamp_min(0)).sum()
                    # gradient in z only: nothing reaches the base's or generator's parameters
                    (grad,) = torch.autograd.grad(loss, z)
                with torch.no_grad():
                    margin = other - true
                    wrong = margin > 0
                    found |= wrong
                    min_mse = torch.where(wrong, torch.minimum(min_mse, mse), min_mse)
                    better = wrong & (mse <= max_mse) & (margin > best_margin)
                    best_margin = torch.where(better, margin, best_margin)
                    best_x[better] = img[better]
                z.grad = grad
                opt.step()
            c_hi = torch.where(found, torch.minimum(c_hi, c_now), c_hi)
            c_lo = torch.where(found, c_lo, torch.maximum(c_lo, c_now))
            c_now = torch.where(torch.isinf(c_hi), c_now * 10, (c_lo + c_hi) / 2)
        within = torch.isfinite(best_margin)
        x_adv = best_x.detach()
        mse_out = torch.where(within, (x_adv - xd).pow(2).flatten(1).mean(1), 0.0)
        if verify:
            pred = defended.predict(x_adv)
        else:
            with torch.no_grad():
                pred = base.logits(x_adv, check=False).argmax(1)
    success = within & (pred != yd)
    return LatentAttackResult(
        x_adv=x_adv,
        success=success,
        mse=mse_out,
        min_mse=min_mse,
        pred=pred,
        y=yd,
        max_mse=max_mse,
    )
