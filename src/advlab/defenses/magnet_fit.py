"""Training MagNet (Meng & Chen 2017): denoising autoencoders on clean data, then thresholds.

:func:`fit_autoencoder` / :func:`fit_autoencoders` train MagNet autoencoders as the authors' code
does (``defensive_models.py``): inputs ``clip(x + noise * N(0, 1), 0, 1)`` with ``noise`` the
paper's "volume" (0.1 on MNIST, 0.025 on CIFAR-10), target the clean ``x``, mean-squared error
plus an L2 activity penalty ``reg * sum(activations^2)`` per input (Keras's
``activity_regularizer=l2(1e-9)``), Adam (lr 1e-3, Keras's default), batch 256, 100 epochs.
:func:`fit_magnet` trains every autoencoder of a :class:`~advlab.defenses.magnet.MagNet`, then
calibrates its thresholds on clean validation data.

Deviations: the noise is drawn afresh for every batch (the authors draw it once, before
training); with ``diversity > 0`` the pool members of one architecture are trained jointly with
the diversity penalty of the authors' ``PackedAutoEncoder``
(``sum_i MSE(AE_i, x) - diversity * sum_i MSE(AE_i, mean_j AE_j)``). As in the authors' code the
penalty can start after ``pretrain_epochs`` epochs without it (theirs: 3 epochs of separate
training, then the joint fine-tuning with a fresh optimizer; here one optimizer throughout).

:func:`fit_autoencoders` and :func:`fit_magnet` take a checkpoint (a file / a folder): after
each epoch the autoencoders, the optimizer and the private generator are written to it
atomically, and a run given an existing checkpoint of the same settings and data resumes after
its last epoch, ending with the weights an uninterrupted run gives on the same device.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advlab.data import TensorData
from advlab.defenses.magnet import MNIST_DETECTORS, AutoEncoder, MagNet, magnet
from advlab.models.classifier import Classifier
from advlab.utils.device import resolve_device
from advlab.utils.files import atomic_torch_save
from advlab.utils.progress import progress as progress_bar

__all__ = ["MagNetCheckpointError", "fit_autoencoder", "fit_autoencoders", "fit_magnet"]

log = logging.getLogger(__name__)


class MagNetCheckpointError(ValueError):
    """A training checkpoint that cannot be resumed: unreadable, or from another run."""


DataLike = TensorData | tuple[Tensor, Tensor] | Tensor


def _inputs(data: DataLike, what: str) -> Tensor:
    x = data.x if isinstance(data, TensorData) else data[0] if isinstance(data, tuple) else data
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{what} must hold float images (N, C, H, W); got {shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{what} is empty")
    return x


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, float | int) or not value > 0:
        raise ValueError(f"{name} must be a number > 0; got {value!r}")
    return float(value)


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return value


def fit_autoencoders(
    aes: Sequence[AutoEncoder],
    data: DataLike,
    *,
    epochs: int = 100,
    noise: float = 0.1,
    lr: float = 1e-3,
    batch_size: int = 256,
    reg: float = 1e-9,
    diversity: float = 0.0,
    pretrain_epochs: int = 0,
    bounds: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> list[AutoEncoder]:
    """Train ``aes`` in place on the clean images of ``data`` (see the module docstring) and
    return them in eval mode on ``device``. ``bounds`` is the pixel range of ``data`` (mapped to
    ``[0, 1]`` for the autoencoders). Batch order and noise come from a private generator seeded
    by ``seed``; the global RNG is not touched. ``diversity`` applies from epoch
    ``pretrain_epochs`` on (0: from the start). ``progress``: a bar per epoch (``None``: unless
    ``ADVLAB_PROGRESS=0``). ``checkpoint``: a file written after every epoch; when it exists,
    training resumes from it (it must come from a run with the same autoencoders, settings and
    data, else :class:`MagNetCheckpointError`, a ``ValueError``); it is left in place at the end."""
    if not aes or not all(isinstance(a, AutoEncoder) for a in aes):
        raise TypeError("aes must be a non-empty sequence of MagNet AutoEncoders")
    epochs, batch_size = _count("epochs", epochs), _count("batch_size", batch_size)
    lr = _positive("lr", lr)
    if not (isinstance(noise, float | int) and noise >= 0):
        raise ValueError(f"noise must be a number >= 0; got {noise!r}")
    if not (isinstance(reg, float | int) and reg >= 0) or not diversity >= 0:
        raise ValueError(f"reg and diversity must be >= 0; got {reg!r}, {diversity!r}")
    if isinstance(pretrain_epochs, bool) or not isinstance(pretrain_epochs, int):
        raise ValueError(f"pretrain_epochs must be an integer >= 0; got {pretrain_epochs!r}")
    if not 0 <= pretrain_epochs < epochs:
        raise ValueError(
            f"pretrain_epochs must be in [0, epochs); got {pretrain_epochs} with epochs {epochs}"
        )
    low, high = float(bounds[0]), float(bounds[1])
    dev = resolve_device(device)
    x = _inputs(data, "data")
    if x.shape[1] != aes[0].channels:
        raise ValueError(f"the autoencoders take {aes[0].channels} channels; data has {x.shape[1]}")
    u = ((x - low) / (high - low)).to(dev)
    params = [p for a in aes for p in a.parameters()]
    for a in aes:
        a.to(dev).train()
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    n = u.shape[0]
    settings = {
        "archs": [a.arch for a in aes],
        "channels": aes[0].channels,
        "epochs": epochs,
        "noise": float(noise),
        "lr": lr,
        "batch_size": batch_size,
        "reg": float(reg),
        "diversity": float(diversity),
        "pretrain_epochs": pretrain_epochs,
        "seed": int(seed),
        "data": [*u.shape, round(float(u.double().sum()), 3)],
    }
    start = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        start = _resume(Path(checkpoint), settings, aes, opt, gen)
        log.info("magnet autoencoders: resuming after epoch %d from %s", start, checkpoint)
    started = time.perf_counter()
    bar = progress_bar(
        range(start, epochs), desc="magnet autoencoders", disable=_disabled(progress)
    )
    try:
        for epoch in bar:
            order = torch.randperm(n, generator=gen, device=dev)
            total = torch.zeros((), device=dev)
            for i in range(0, n, batch_size):
                target = u[order[i : i + batch_size]]
                noisy = target + noise * torch.randn(
                    target.shape, generator=gen, device=dev, dtype=target.dtype
                )
                noisy = noisy.clamp(0.0, 1.0)
                outs, penalty = [], torch.zeros((), device=dev)
                for a in aes:
                    out, act = a.reconstruct(noisy)
                    outs.append(out)
                    penalty = penalty + act.mean()
                loss = sum(
                    (torch.mean((o - target) ** 2) for o in outs), torch.zeros((), device=dev)
                )
                if diversity > 0 and len(outs) > 1 and epoch >= pretrain_epochs:
                    avg = torch.stack(outs).mean(0)
                    loss = loss - diversity * sum(
                        (torch.mean((avg - o) ** 2) for o in outs), torch.zeros((), device=dev)
                    )
                loss = loss + reg * penalty
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                total += loss.detach() * target.shape[0]
            mean = float(total) / n
            bar.set_postfix(loss=f"{mean:.5f}")
            log.debug("magnet autoencoders epoch %d/%d: loss %.6f", epoch + 1, epochs, mean)
            if checkpoint is not None:
                _save(Path(checkpoint), settings, epoch + 1, aes, opt, gen)
    finally:
        for a in aes:
            a.eval()
            a.zero_grad(set_to_none=True)
    log.info(
        "trained %d MagNet autoencoder(s) %s for %d epochs in %.1f s",
        len(aes),
        aes[0].arch,
        epochs,
        time.perf_counter() - started,
    )
    return list(aes)


def _save(
    path: Path,
    settings: dict[str, Any],
    epochs_done: int,
    aes: Sequence[AutoEncoder],
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
) -> None:
    state = {
        "settings": settings,
        "epochs_done": epochs_done,
        "autoencoders": [a.state_dict() for a in aes],
        "optimizer": opt.state_dict(),
        "generator": gen.get_state(),
    }
    atomic_torch_save(path, state)


def _resume(
    path: Path,
    settings: dict[str, Any],
    aes: Sequence[AutoEncoder],
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
) -> int:
    """Load the checkpoint at ``path`` into ``aes``, ``opt`` and ``gen``; the epochs it holds."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = state["settings"]
    except Exception as err:  # a truncated or foreign file
        raise MagNetCheckpointError(f"cannot read the MagNet checkpoint {path}: {err}") from err
    if saved != settings:
        diff = sorted(k for k in settings if saved.get(k) != settings[k])
        raise MagNetCheckpointError(
            f"the MagNet checkpoint {path} comes from another run (different {', '.join(diff)}); "
            "delete it or pass another checkpoint path"
        )
    for a, weights in zip(aes, state["autoencoders"], strict=True):
        a.load_state_dict(weights)
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    return int(state["epochs_done"])


def _disabled(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


def fit_autoencoder(
    arch: str | AutoEncoder,
    data: DataLike,
    *,
    epochs: int = 100,
    noise: float = 0.1,
    lr: float = 1e-3,
    batch_size: int = 256,
    reg: float = 1e-9,
    bounds: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool | None = None,
) -> AutoEncoder:
    """Train one MagNet autoencoder (``arch`` ``"I"``/``"II"``, built with the data's channels,
    or an :class:`AutoEncoder` trained in place) on clean ``data``; defaults are the paper's
    MNIST ones (100 epochs, noise volume 0.1, Adam lr 1e-3, batch 256, L2 activity 1e-9)."""
    ae = (
        arch
        if isinstance(arch, AutoEncoder)
        else AutoEncoder(arch, int(_inputs(data, "data").shape[1]), seed=seed)
    )
    fit_autoencoders(
        [ae],
        data,
        epochs=epochs,
        noise=noise,
        lr=lr,
        batch_size=batch_size,
        reg=reg,
        bounds=bounds,
        seed=seed,
        device=device,
        progress=progress,
    )
    return ae


def fit_magnet(
    base: Classifier,
    train_data: DataLike,
    val_data: DataLike,
    *,
    epochs: int = 100,
    fpr: float = 0.001,
    pool: int = 1,
    reformer: str = "I",
    detectors: Sequence[str] = MNIST_DETECTORS,
    noise: float = 0.1,
    lr: float = 1e-3,
    batch_size: int = 256,
    reg: float = 1e-9,
    diversity: float = 0.0,
    pretrain_epochs: int = 0,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> MagNet:
    """A trained, calibrated MagNet around ``base`` (the paper's MNIST setup by default).

    Trains every autoencoder the ``reformer`` and ``detectors`` name (``pool`` copies of each,
    different initial weights; with ``diversity > 0`` trained jointly, the penalty starting
    after ``pretrain_epochs`` epochs, see the module docstring)
    on the clean images of ``train_data``, then calibrates the detector thresholds on the clean
    images of ``val_data`` for a whole-defense false-positive rate ``fpr`` (split evenly among
    the detectors; :meth:`MagNet.calibrate`). Returns a :class:`MagNet` (``pool == 1``) or a
    :class:`GrayBoxMagNet` in eval mode on ``device``; ``base`` is not trained or changed (it
    moves to ``device``). Paper: MNIST ``fpr=0.001``, ``noise=0.1``, 100 epochs; CIFAR-10
    ``reformer="II"``, ``detectors=CIFAR_DETECTORS``, ``fpr=0.005``, ``noise=0.025``.
    ``checkpoint_dir``: a folder for one training checkpoint per architecture
    (``autoencoders-<i>-<arch>.pt``, see :func:`fit_autoencoders`): a killed run given the same
    folder resumes where it stopped. The files stay; delete the folder once the model is saved.
    """
    if not isinstance(base, Classifier):
        raise TypeError(f"base must be an advlab Classifier; got {type(base).__name__}")
    x_train = _inputs(train_data, "train_data")
    x_val = _inputs(val_data, "val_data")
    model = magnet(
        base,
        reformer=reformer,
        detectors=detectors,
        pool=pool,
        seed=seed,
        channels=int(x_train.shape[1]),
    )
    dev = resolve_device(device)
    model.to(dev)
    net = model.magnet
    for i, arch in enumerate(net.archs):
        fit_autoencoders(
            [net.ae(arch, m) for m in range(pool)],
            x_train,
            epochs=epochs,
            noise=noise,
            lr=lr,
            batch_size=batch_size,
            reg=reg,
            diversity=diversity,
            pretrain_epochs=pretrain_epochs,
            bounds=(net.low, net.high),
            seed=seed * 10_007 + 7919 * (i + 1),
            device=dev,
            progress=progress,
            checkpoint=(
                None
                if checkpoint_dir is None
                else Path(checkpoint_dir) / f"autoencoders-{i}-{arch}.pt"
            ),
        )
    net.trained.fill_(True)
    model.eval()
    model.calibrate(x_val.to(dev), fpr=fpr)
    return model
