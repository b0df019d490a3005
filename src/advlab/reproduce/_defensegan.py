"""Helpers of the ``defensegan2018`` reproduction: run budgets, the cached WGAN-GP generator and
the cached classifiers (plain, FGSM-adversarially trained, -Rec) and MagNet."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from pickle import UnpicklingError
from typing import Any

import torch

from advlab.data import TensorData
from advlab.defenses import MagNet, fit_magnet
from advlab.defenses.defense_gan import Projector, reconstruct
from advlab.defenses.gan import Generator, train_gan
from advlab.defenses.training import TrainConfig, build_recipe, train
from advlab.models import Classifier, build, load, save
from advlab.models.checkpoint import CheckpointError
from advlab.reproduce.base import Context
from advlab.utils.files import atomic_torch_save, atomic_write_json

EPS = 0.3


@dataclass(frozen=True)
class Budget:
    """Sizes of one run. ``models``: Tramèr et al.'s classifiers by letter (``tramer-a`` ...);
    ``train_n`` / ``rec_n``: training images for the classifiers / reconstructed for the -Rec
    classifiers (``None``: all 60,000); ``iterations`` / ``restarts``: Defense-GAN's L and R;
    ``craft_*``: the cheaper projection a BPDA attacker crafts through (scored on L, R)."""

    models: tuple[str, ...]
    train_n: int | None
    test_n: int
    epochs: tuple[int, ...]  # per model
    gan_iterations: int
    gan_width: int
    gan_n_critic: int
    gan_lr: float
    iterations: int
    restarts: int
    rec_n: int | None
    rec_epochs: tuple[int, ...]  # per model
    magnet_epochs: int
    sub_seeds: int
    sub_rounds: int
    sub_epochs: int
    cw: bool
    adaptive_n: int
    pgd_steps: int
    craft_iterations: int
    craft_restarts: int
    latent_steps: int = 100  # Adam steps per constant of the latent-space attack
    latent_search: int = 5  # constants tried per input (search steps)

    def epochs_of(self, model: str) -> tuple[int, int]:
        """``(epochs, rec_epochs)`` of ``model``: its plain and adversarially trained
        classifiers', and its -Rec classifier's."""
        i = self.models.index(model)
        return self.epochs[i], self.rec_epochs[i]


# fmt: off
FULL = Budget(("A", "B", "C", "D"), None, 1_000, (6,) * 4, 200_000, 64, 5, 1e-4, 200, 10, None,
              (6,) * 4, 100, 150, 6, 10, True, 200, 40, 50, 2)
QUICK = Budget(("B", "D"), 5_000, 100, (2, 6), 300, 16, 2, 1e-3, 25, 2, 1_000, (5, 15), 2,
               150, 3, 5, False, 50, 10, 25, 2, 50, 3)
# fmt: on


# ----------------------------------------------------------------------------- generator
def gan_key(ctx: Context, b: Budget, n_train: int) -> str:
    """Cache key of the generator: width, critic steps, iterations, training images, seed."""
    return f"dg18-wgan-w{b.gan_width}-c{b.gan_n_critic}-it{b.gan_iterations}-n{n_train}-s{ctx.seed}"


def save_generator(gen: Generator, folder: Path) -> None:
    """``generator.pt`` (state dict) and ``generator.json`` (architecture, training history)."""
    atomic_torch_save(folder / "generator.pt", gen.state_dict())
    hist = gen.history.to_dict() if gen.history is not None else None
    atomic_write_json(folder / "generator.json", {"arch": gen.arch(), "history": hist})


def load_generator(folder: Path, device: torch.device) -> tuple[Generator, dict[str, Any]] | None:
    """The trained generator saved in ``folder`` with its JSON record, or ``None`` where there is
    none, it is unreadable or it is untrained."""
    meta, weights = folder / "generator.json", folder / "generator.pt"
    if not (meta.is_file() and weights.is_file()):
        return None
    try:
        info = json.loads(meta.read_text())
        gen = Generator(**info["arch"])
        gen.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except (OSError, EOFError, ValueError, KeyError, TypeError, RuntimeError, UnpicklingError):
        return None
    if not bool(gen.fitted):
        return None
    return gen.to(device).eval(), info


def generator(ctx: Context, b: Budget, data: TensorData) -> tuple[Generator, dict[str, Any]]:
    """The WGAN-GP generator of budget ``b`` trained on ``data``, cached in ``ctx.cache``."""
    key = gan_key(ctx, b, len(data))
    got = load_generator(ctx.cache / key, ctx.device)
    if got is not None:
        ctx.log(f"[cache] {key}")
        return got
    ctx.log(f"[train] {key}: WGAN-GP, {b.gan_iterations} iterations on {len(data)} images")
    gen = train_gan(
        data,
        iterations=b.gan_iterations,
        width=b.gan_width,
        n_critic=b.gan_n_critic,
        lr=b.gan_lr,
        seed=ctx.seed,
        device=ctx.device,
    )
    save_generator(gen, ctx.cache / key)
    info = json.loads((ctx.cache / key / "generator.json").read_text())
    ctx.log(f"[train] {key}: done in {info['history']['seconds'][-1]:.0f} s")
    return gen, info


# ---------------------------------------------------------------------------- classifiers
def cached(ctx: Context, key: str, make: Callable[[], Classifier]) -> Classifier:
    """The checkpoint ``ctx.cache/key``, or ``make()`` saved there (any advlab Classifier,
    defenses included)."""
    folder = ctx.cache / key
    if (folder / "model.json").is_file():
        try:
            ctx.log(f"[cache] {key}")
            return load(folder, device=ctx.device).eval()
        except CheckpointError as err:
            ctx.log(f"[cache] {key} unreadable ({err}); training again")
    t0 = time.perf_counter()
    clf = make()
    save(clf, folder, dataset="mnist", metrics={"train_seconds": time.perf_counter() - t0})
    return clf.to(ctx.device).eval()


def train_fresh(ctx: Context, preset: str, data: TensorData, config: TrainConfig) -> Classifier:
    """A new ``preset`` (initial weights from ``ctx.seed``) trained on ``data``."""
    ctx.log(f"[train] {preset}: {config.epochs} epoch(s) on {len(data)} samples ({data.name})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        clf = build(preset)
    cfg = TrainConfig(**{**config.to_dict(), "device": str(ctx.device), "keep_best": False})
    train(clf, data, None, cfg)
    return clf.to(ctx.device).eval()


@dataclass
class Models:
    """Everything a run evaluates, by model letter: plain, adversarially trained (``adv``) and
    -Rec classifiers, the MagNet (fitted once), the generator and the defense's projector."""

    plain: dict[str, Classifier]
    adv: dict[str, Classifier]
    rec: dict[str, Classifier]
    magnet: MagNet
    generator: Generator
    gen_info: dict[str, Any]
    projector: Projector


def build_models(ctx: Context, b: Budget, train_set: TensorData) -> Models:
    """Train (or load from the cache) every model of budget ``b``. Plain and adversarially
    trained classifiers use tramer2018's cache keys and settings (a shared cache reuses them)."""
    size, s = f"n{len(train_set)}", ctx.seed
    fgsm_mix = build_recipe("fgsm-mix", {"eps": EPS, "alpha": 0.5})
    plain, adv, rec = {}, {}, {}
    for m in b.models:
        preset, e = f"tramer-{m.lower()}", b.epochs_of(m)[0]
        cfg = TrainConfig(epochs=e, batch_size=64, lr=1e-3, seed=s)
        plain[m] = ctx.model(f"tr18-{m.lower()}-{size}-e{e}-s{s}", preset, train_set, cfg)
        key = f"tr18-{m.lower()}-adv-e{e}-{size}-s{s}"
        adv[m] = ctx.model(key, preset, train_set, cfg, fgsm_mix)
    gen, gen_info = generator(ctx, b, train_set)
    proj = Projector(gen, iterations=b.iterations, restarts=b.restarts, seed=s)
    rec_src = train_set if b.rec_n is None else train_set.subset(range(b.rec_n))
    memo: list[TensorData] = []

    def rec_data() -> TensorData:  # only when some -Rec classifier is not cached
        if not memo:
            ctx.log(f"[defense-gan] reconstructing {len(rec_src)} training images")
            data = reconstruct(proj, rec_src)
            if not isinstance(data, TensorData):  # reconstruct returns its input's kind
                raise TypeError(f"reconstruct gave a {type(data).__name__}, not TensorData")
            memo.append(data)
        return memo[0]

    gkey = f"{gan_key(ctx, b, len(train_set))}-L{b.iterations}R{b.restarts}"

    def train_rec(preset: str, epochs: int) -> Classifier:
        cfg = TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, seed=s)
        return train_fresh(ctx, preset, rec_data(), cfg)

    for m in b.models:
        e = b.epochs_of(m)[1]
        rkey = f"dg18-{m.lower()}-rec-{gkey}-n{len(rec_src)}-e{e}"
        rec[m] = cached(ctx, rkey, functools.partial(train_rec, f"tramer-{m.lower()}", e))
    n_val = len(train_set) // 10  # validation images that calibrate the detectors
    lr = 3e-3 if ctx.quick else 1e-3
    first = plain[b.models[0]]

    def fit() -> MagNet:
        ctx.log(f"[train] MagNet autoencoders, {b.magnet_epochs} epoch(s)")
        x_tr, x_val = train_set.x[:-n_val], train_set.x[-n_val:]
        return fit_magnet(
            first, x_tr, x_val, epochs=b.magnet_epochs, lr=lr, seed=s, device=ctx.device
        )

    mag = cached(ctx, f"dg18-magnet-{size}-e{b.magnet_epochs}-s{s}", fit)
    if not isinstance(mag, MagNet):
        raise TypeError(f"the cached MagNet is a {type(mag).__name__}; clear the cache")
    return Models(plain, adv, rec, mag, gen, gen_info, proj)
