"""The generative model behind Defense-GAN: a WGAN-GP generator and critic for small images.

Architecture and training follow the Defense-GAN reference code for MNIST (Samangouei, Kabkab &
Chellappa 2018), which is the MNIST WGAN-GP of Gulrajani et al. 2017 ("Improved training of
Wasserstein GANs") without batch normalization:

- :class:`Generator` ``z (N, latent_dim) -> (N, C, S, S)`` in ``[0, 1]``: a linear layer to
  ``4·width`` maps of size ``s0``, then three 5x5 stride-2 transposed convolutions
  (``4w -> 2w -> w -> C``) with ReLU, each doubling the size and cropped to the next size of the
  chain ``s0 -> s1 -> s2 -> S`` (``s_{k-1} = ceil(s_k / 2)``; for MNIST 4 -> 7 -> 14 -> 28, for
  8x8 digits 1 -> 2 -> 4 -> 8), and a sigmoid. Latent dimension 128 and width 64 are the
  paper's defaults.
- :class:`Critic` ``(N, C, S, S) -> (N,)``: three 5x5 stride-2 convolutions ``C -> w -> 2w -> 4w``
  with LeakyReLU(0.2) and a linear output (no sigmoid, no batch norm: WGAN-GP).
- :func:`train_gan`: WGAN-GP with gradient penalty weight ``lambda = 10``, ``n_critic = 5``
  critic steps per generator step, Adam ``lr = 1e-4``, ``betas = (0.5, 0.9)``, batch 50,
  ``z ~ N(0, I)`` (all as in the reference code). The reference trains 200,000 generator
  iterations on a GPU; on a CPU one trains far fewer (``iterations`` / ``epochs`` /
  ``time_limit``), which gives blurrier samples and a weaker projection (see
  ``docs/defenses/defense-gan.md`` for measured numbers).

Randomness: weights are initialized from ``seed`` (PyTorch's default initializers run inside a
forked RNG, so the global RNG state is left exactly as it was) and training draws its noise and
batches from private ``torch.Generator`` objects seeded by ``seed``.

A generator carries a persistent ``fitted`` buffer (False until :func:`train_gan` finishes or a
trained state dict is loaded), so a defense built around an untrained generator refuses to run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.data import TensorData
from advlab.utils.device import resolve_device
from advlab.utils.progress import progress as progress_bar

logger = logging.getLogger(__name__)

__all__ = ["Critic", "GANHistory", "Generator", "size_chain", "train_gan"]


def size_chain(image_size: int) -> tuple[int, int, int, int]:
    """Spatial sizes ``(s0, s1, s2, S)`` of the generator's stages for ``S = image_size``:
    each is ``ceil`` of half the next (28 -> (4, 7, 14, 28); 8 -> (1, 2, 4, 8))."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be an int >= 1; got {image_size!r}")
    s2 = math.ceil(image_size / 2)
    s1 = math.ceil(s2 / 2)
    s0 = math.ceil(s1 / 2)
    return s0, s1, s2, image_size


def _check_arch(latent_dim: int, image_size: int, channels: int, width: int) -> None:
    for name, value in (
        ("latent_dim", latent_dim),
        ("image_size", image_size),
        ("channels", channels),
        ("width", width),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1; got {value!r}")


def _seeded_init(module: nn.Module, seed: int) -> None:
    """Re-run every layer's default initializer from ``seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in module.modules():
            if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
                m.reset_parameters()


def _up(cin: int, cout: int) -> nn.ConvTranspose2d:
    # 5x5, stride 2, "SAME"-style: exactly doubles the spatial size
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class Generator(nn.Module):
    """WGAN-GP generator ``z (N, latent_dim) -> images (N, channels, S, S)`` in ``[0, 1]``.

    Args:
        latent_dim: size of ``z`` (default 128, the paper's).
        image_size: side ``S`` of the square output (28 for MNIST, 8 for scikit-learn digits).
        channels: image channels (default 1).
        width: base number of feature maps ``w`` (default 64, the paper's ``NET_DIM``).
        seed: weight initialization seed (global RNG untouched).

    ``fitted`` (persistent bool buffer) is set by :func:`train_gan`; ``history`` holds the
    :class:`GANHistory` of the run that trained it (not part of the state dict).
    """

    fitted: Tensor

    def __init__(
        self,
        latent_dim: int = 128,
        image_size: int = 28,
        channels: int = 1,
        width: int = 64,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_arch(latent_dim, image_size, channels, width)
        self.latent_dim = latent_dim
        self.image_size = image_size
        self.channels = channels
        self.width = width
        self.sizes = size_chain(image_size)
        w, s0 = width, self.sizes[0]
        with torch.random.fork_rng(devices=[]):  # construction draws from the global RNG
            self.fc = nn.Linear(latent_dim, 4 * w * s0 * s0)
            self.up1 = _up(4 * w, 2 * w)
            self.up2 = _up(2 * w, w)
            self.up3 = _up(w, channels)
        _seeded_init(self, seed)
        self.register_buffer("fitted", torch.tensor(False))
        self.history: GANHistory | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def forward(self, z: Tensor) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (N, {self.latent_dim}); got {tuple(z.shape)}")
        s0, s1, s2, s = self.sizes
        h = F.relu(self.fc(z)).view(z.shape[0], 4 * self.width, s0, s0)
        h = F.relu(self.up1(h))[:, :, :s1, :s1]
        h = F.relu(self.up2(h))[:, :, :s2, :s2]
        return torch.sigmoid(self.up3(h)[:, :, :s, :s])

    def arch(self) -> dict[str, int]:
        """JSON-ready keyword arguments that rebuild this architecture."""
        return {
            "latent_dim": self.latent_dim,
            "image_size": self.image_size,
            "channels": self.channels,
            "width": self.width,
        }

    def extra_repr(self) -> str:
        return (
            f"latent_dim={self.latent_dim}, image_shape={self.image_shape}, width={self.width}, "
            f"fitted={bool(self.fitted)}"
        )


class Critic(nn.Module):
    """WGAN-GP critic ``(N, channels, S, S) -> (N,)`` scores (no sigmoid, no batch norm).

    Args: ``image_size``, ``channels``, ``width`` (default 64) and ``seed`` as for
    :class:`Generator`.
    """

    def __init__(
        self,
        image_size: int = 28,
        channels: int = 1,
        width: int = 64,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_arch(1, image_size, channels, width)
        self.image_size = image_size
        self.channels = channels
        s0 = size_chain(image_size)[0]
        w = width
        with torch.random.fork_rng(devices=[]):
            self.conv1 = nn.Conv2d(channels, w, 5, stride=2, padding=2)
            self.conv2 = nn.Conv2d(w, 2 * w, 5, stride=2, padding=2)
            self.conv3 = nn.Conv2d(2 * w, 4 * w, 5, stride=2, padding=2)
            self.out = nn.Linear(4 * w * s0 * s0, 1)
        _seeded_init(self, seed)

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.conv2(h), 0.2)
        h = F.leaky_relu(self.conv3(h), 0.2)
        out: Tensor = self.out(h.flatten(1)).squeeze(1)
        return out


@dataclass
class GANHistory:
    """Losses logged by :func:`train_gan` every ``log_every`` generator iterations.

    ``critic_loss`` is ``D(fake) - D(real) + lambda·GP`` (averaged over the critic steps of the
    iteration), ``wasserstein`` the critic's estimate ``D(real) - D(fake)``, ``penalty`` the
    gradient penalty (without ``lambda``), ``generator_loss`` ``-D(G(z))``, ``seconds`` the wall
    time since the start. ``config`` is the resolved training configuration.
    """

    iteration: list[int] = field(default_factory=list)
    critic_loss: list[float] = field(default_factory=list)
    generator_loss: list[float] = field(default_factory=list)
    wasserstein: list[float] = field(default_factory=list)
    penalty: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    iterations_done: int = 0
    stopped_by_time: bool = False
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "iteration": list(self.iteration),
            "critic_loss": list(self.critic_loss),
            "generator_loss": list(self.generator_loss),
            "wasserstein": list(self.wasserstein),
            "penalty": list(self.penalty),
            "seconds": list(self.seconds),
            "iterations_done": self.iterations_done,
            "stopped_by_time": self.stopped_by_time,
            "config": dict(self.config),
        }


def _images(data: TensorData | Tensor) -> Tensor:
    x = data.x if isinstance(data, TensorData) else data
    if not isinstance(x, Tensor):
        raise TypeError(
            f"data must be a TensorData or an image tensor (N, C, S, S); got {type(x).__name__}"
        )
    if x.ndim != 4 or x.shape[2] != x.shape[3] or not x.is_floating_point():
        raise ValueError(
            f"data must be float square images (N, C, S, S); got {x.dtype} {tuple(x.shape)}"
        )
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 training images; got {x.shape[0]}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("data contains NaN or inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(
            f"data must be in [0, 1] (the generator's sigmoid range); got min {lo:.4g}, "
            f"max {hi:.4g}"
        )
    return x


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number > 0; got {value!r}")
    return float(value)


def _gradient_penalty(critic: Critic, real: Tensor, fake: Tensor, gen: torch.Generator) -> Tensor:
    alpha = torch.rand(real.shape[0], 1, 1, 1, generator=gen, device=real.device)
    mix = (real + alpha * (fake - real)).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
    penalty: Tensor = ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()
    return penalty


def train_gan(
    data: TensorData | Tensor,
    *,
    iterations: int | None = None,
    epochs: float | None = None,
    time_limit: float | None = None,
    latent_dim: int = 128,
    width: int = 64,
    batch_size: int = 50,
    n_critic: int = 5,
    gp_lambda: float = 10.0,
    lr: float = 1e-4,
    betas: tuple[float, float] = (0.5, 0.9),
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool | None = None,
    log_every: int = 50,
) -> Generator:
    """Train a WGAN-GP (Gulrajani et al. 2017) on ``data`` and return its generator.

    Args:
        data: a :class:`TensorData` or a tensor of square images ``(N, C, S, S)`` in ``[0, 1]``
            (labels are ignored). ``S`` and ``C`` fix the architecture.
        iterations: generator iterations (each follows ``n_critic`` critic steps). Give
            ``iterations`` or ``epochs`` (passes of the critic over the data:
            ``iterations = ceil(epochs · N / (batch_size · n_critic))``), or only
            ``time_limit``.
        time_limit: stop after this many seconds (checked after every generator iteration);
            ``history.stopped_by_time`` says whether it did.
        latent_dim, width: architecture (defaults 128 and 64, the paper's).
        batch_size: images per critic / generator step (default 50, the reference code's).
        n_critic, gp_lambda, lr, betas: WGAN-GP defaults 5, 10, 1e-4, (0.5, 0.9).
        seed: seeds the weights, batch order, latent draws and penalty interpolation.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda[:N]"``.
        progress: show a progress bar (``None``: unless ``ADVLAB_PROGRESS=0``).
        log_every: record losses (and log them at INFO) every this many iterations.

    Returns:
        The trained :class:`Generator` in eval mode on ``device``, ``fitted`` set, with
        ``generator.history`` (a :class:`GANHistory`).
    """
    x_all = _images(data)
    if iterations is None and epochs is None and time_limit is None:
        raise ValueError("give iterations, epochs or time_limit")
    if iterations is not None and epochs is not None:
        raise ValueError("give iterations or epochs, not both")
    for name, value in (
        ("batch_size", batch_size),
        ("n_critic", n_critic),
        ("log_every", log_every),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    if iterations is not None and (
        isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1
    ):
        raise ValueError(f"iterations must be an int >= 1; got {iterations!r}")
    if epochs is not None:
        _positive("epochs", epochs)
        iterations = max(1, math.ceil(epochs * x_all.shape[0] / (batch_size * n_critic)))
    if time_limit is not None:
        _positive("time_limit", time_limit)
    _positive("lr", lr)
    if gp_lambda < 0:
        raise ValueError(f"gp_lambda must be >= 0; got {gp_lambda!r}")
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1); got {betas!r}")
    dev = resolve_device(device)
    total = iterations if iterations is not None else 10**9

    n, c, s = x_all.shape[0], x_all.shape[1], x_all.shape[2]
    gen_net = Generator(latent_dim, s, c, width, seed=seed).to(dev)
    critic = Critic(s, c, width, seed=seed + 1).to(dev)
    opt_g = torch.optim.Adam(gen_net.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=lr, betas=betas)
    x_dev = x_all.detach().to(dev, torch.float32)
    bs = min(batch_size, n)
    cpu_gen = torch.Generator().manual_seed(seed)
    dev_gen = torch.Generator(device=dev).manual_seed(seed + 7)

    config = {
        "iterations": iterations,
        "time_limit": time_limit,
        "latent_dim": latent_dim,
        "width": width,
        "batch_size": bs,
        "n_critic": n_critic,
        "gp_lambda": gp_lambda,
        "lr": lr,
        "betas": list(betas),
        "seed": seed,
        "device": str(dev),
        "n_train": n,
        "image_shape": [c, s, s],
    }
    history = GANHistory(config=config)
    perm = torch.randperm(n, generator=cpu_gen)
    cursor = 0

    def next_batch() -> Tensor:
        nonlocal perm, cursor
        if cursor + bs > n:
            perm, cursor = torch.randperm(n, generator=cpu_gen), 0
        idx = perm[cursor : cursor + bs]
        cursor += bs
        return x_dev[idx.to(dev)]

    gen_net.train()
    critic.train()
    start = time.perf_counter()
    bar = progress_bar(
        range(total),
        desc="WGAN-GP",
        total=iterations,
        disable=None if progress is None else not progress,
    )
    done = 0
    try:
        for it in bar:
            d_loss_sum = w_sum = gp_sum = 0.0
            for _ in range(n_critic):
                real = next_batch()
                with torch.no_grad():
                    fake = gen_net(torch.randn(bs, latent_dim, generator=dev_gen, device=dev))
                d_real, d_fake = critic(real).mean(), critic(fake).mean()
                gp = _gradient_penalty(critic, real, fake, dev_gen)
                d_loss = d_fake - d_real + gp_lambda * gp
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                d_loss_sum += float(d_loss.detach())
                w_sum += float((d_real - d_fake).detach())
                gp_sum += float(gp.detach())
            for p in critic.parameters():
                p.requires_grad_(False)
            z = torch.randn(bs, latent_dim, generator=dev_gen, device=dev)
            g_loss = -critic(gen_net(z)).mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            for p in critic.parameters():
                p.requires_grad_(True)
            done = it + 1
            elapsed = time.perf_counter() - start
            if done % log_every == 0 or done == 1 or done == iterations:
                row = (
                    d_loss_sum / n_critic,
                    float(g_loss.detach()),
                    w_sum / n_critic,
                    gp_sum / n_critic,
                )
                history.iteration.append(done)
                history.critic_loss.append(row[0])
                history.generator_loss.append(row[1])
                history.wasserstein.append(row[2])
                history.penalty.append(row[3])
                history.seconds.append(elapsed)
                bar.set_postfix(W=f"{row[2]:.3f}", gp=f"{row[3]:.3f}", G=f"{row[1]:.3f}")
                logger.info(
                    "WGAN-GP iter %d: critic %.4f, W %.4f, GP %.4f, G %.4f (%.0f s)",
                    done,
                    *row,
                    elapsed,
                )
            if time_limit is not None and elapsed >= time_limit:
                history.stopped_by_time = done != iterations
                break
    finally:
        bar.close()
    history.iterations_done = done
    gen_net.eval()
    gen_net.fitted.fill_(True)
    gen_net.history = history
    for p in gen_net.parameters():
        p.grad = None
    return gen_net
