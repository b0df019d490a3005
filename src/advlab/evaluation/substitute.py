"""Practical black-box attack with a trained substitute (Papernot, McDaniel, Goodfellow, Jha,
Celik, Swami 2017, "Practical black-box attacks against machine learning", AsiaCCS).

The attacker has a small seed set of inputs from the task's distribution (no labels) and an
oracle that answers the target's top-1 *label* only. It trains a local substitute and
crafts white-box on it, counting on transferability:

1. ``S_0`` = the seed set (paper, MNIST: 150 test images), labelled by the oracle.
2. For each substitute round ``ρ = 0 .. rounds-1``: train the substitute ``F`` on
   ``{(x, O(x)) : x ∈ S_ρ}`` (continuing from the previous round's weights), then, except after
   the last round, grow the set by Jacobian-based dataset augmentation
   ``S_{ρ+1} = {x + λ_ρ · sign(J_F(x)[O(x)]) : x ∈ S_ρ} ∪ S_ρ`` and label only the new points.
   ``λ_ρ = λ`` (paper: 0.1), or with the periodic step size ``τ`` (paper §6.1)
   ``λ_ρ = λ · (-1)^⌊ρ/τ⌋``.
3. Craft with FGSM (paper, MNIST: eps 0.3) on the substitute and score on the target
   (:class:`advlab.attacks.transfer.TransferAttack`).

Oracle queries are counted exactly: ``|S_0| · 2^(rounds-1)`` labels in all (each point of the
final set once; the last round's augmentation is never built). Lives in the evaluation layer
because it trains with :func:`advlab.defenses.training.train`.

Defaults and deviations from the paper:

* Substitute architecture ``"papernot-a"``: our reading of the paper's MNIST substitute "A"
  (appendix table of architectures): conv32(2x2)-maxpool(2)-conv64(2x2)-maxpool(2)-fc200-fc200-fc
  with ReLU, "valid" convolutions, PyTorch default initialization. The kernel size is as we
  recall the table ("CM: convolution with 2x2 kernels + 2x2 max-pooling"); it could not be
  checked against the PDF offline. Any zoo preset name (``"lenet"``, ``"mlp"``, ...) or an
  untrained :class:`Classifier` (copied, never modified) can be used instead.
* Training per round: ``epochs_per_round`` = 10 epochs of Adam, lr 1e-3, batch 128, constant
  learning rate (the settings of the authors' CleverHans ``mnist_blackbox`` tutorial; the paper
  does not fix them for all experiments). Override with ``config`` (a :class:`TrainConfig`;
  its ``epochs`` is replaced by ``epochs_per_round`` and its seed by ``seed + ρ``).
* ``sign(J_F(x)[O(x)])`` is taken of the gradient of ``log softmax(F(x))[O(x)]``: the same sign
  as the gradient of the probability the paper differentiates (``∇p = p·∇log p``, ``p > 0``),
  without the float underflow that zeroes saturated probabilities' gradients.
* Augmented points are clamped into the target's bounds (the paper does not say; advlab models
  refuse out-of-bounds inputs). Duplicates are kept, as in the paper.
* The paper's reservoir sampling (§6.2, fewer queries per round) is not implemented.
* "rounds" follows Algorithm 1 and the CleverHans tutorial: ``rounds = 6`` trains six times, on
  ``S_0 .. S_5`` (150 → 4,800 points, 4,800 oracle labels with 150 seeds).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.attacks.base import Attack, attack_mode
from advlab.attacks.norms import get_norm
from advlab.attacks.registry import attacks
from advlab.attacks.transfer import TransferAttack
from advlab.data import TensorData
from advlab.defenses.training import TrainConfig, train
from advlab.models import Classifier, query_access
from advlab.models import build as build_model
from advlab.models.query import QueryModel
from advlab.utils.progress import progress

logger = logging.getLogger(__name__)

__all__ = ["SubstituteA", "split_seed", "substitute_attack", "train_substitute"]

ArchSpec = str | Classifier


class SubstituteA(nn.Module):
    """Papernot et al. 2017's MNIST substitute "A" as we read it (see the module docstring):
    conv32(2x2)-pool-conv64(2x2)-pool-fc200-fc200-fc, ReLU, "valid" convolutions. Minimum input
    size 7 (8x8 digits give 64x1x1 features, 28x28 MNIST 64x6x6)."""

    def __init__(self, in_channels: int, num_classes: int, input_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 2), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, input_size, input_size)).numel()
        if flat == 0:
            raise ValueError(f"papernot-a needs inputs of size >= 7; got {input_size}")
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(flat, 200), nn.ReLU(),
            nn.Linear(200, 200), nn.ReLU(),
            nn.Linear(200, num_classes),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------------- helpers
def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return value


def _device(model: Classifier) -> torch.device:
    return model.low.device


def _num_classes(target: Classifier, x: Tensor) -> int:
    if target.num_classes is None:
        with torch.no_grad(), attack_mode(target, "eval"):
            target.logits(x[:1].to(_device(target)))
    return int(target.num_classes or 0)


def _check_target(target: Any, x: Any, what: str) -> None:
    if not isinstance(target, Classifier):
        raise TypeError(f"target must be an advlab Classifier; got {type(target).__name__}")
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a tensor of inputs (N, ...); got {type(x).__name__}")
    target.check_input(x.to(_device(target)))
    if x.shape[0] == 0:
        raise ValueError(f"{what} is empty")


def _build_substitute(
    arch: ArchSpec,
    target: Classifier,
    input_shape: tuple[int, ...],
    k: int,
    seed: int,
    arch_kwargs: dict[str, Any],
) -> Classifier:
    """A fresh substitute, initialized from ``seed`` without touching the global RNG."""
    if isinstance(arch, Classifier):
        if arch_kwargs:
            raise ValueError("arch_kwargs only apply when arch is a preset name")
        return copy.deepcopy(arch)
    if not isinstance(arch, str):
        raise TypeError(f"arch must be a preset name or a Classifier; got {type(arch).__name__}")
    bounds = (target.low.detach().cpu(), target.high.detach().cpu())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch == "papernot-a":
            if arch_kwargs:
                raise ValueError(f"papernot-a takes no arch_kwargs; got {sorted(arch_kwargs)}")
            if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
                raise ValueError(
                    f"papernot-a needs square images (C, H, W); got inputs of shape {input_shape}"
                )
            net = SubstituteA(input_shape[0], k, input_shape[1])
            sub = Classifier(net, bounds=bounds, num_classes=k, input_shape=input_shape)
            sub.preset = None
            return sub
        return build_model(
            arch, input_shape=input_shape, num_classes=k, bounds=bounds, **arch_kwargs
        )


def _label(oracle: QueryModel, x: Tensor, batch_size: int) -> Tensor:
    """Top-1 labels ``(N,)`` of the oracle (labels-only access; each input is one query)."""
    dev = _device(oracle)
    with torch.no_grad():
        parts = [
            oracle.logits(x[i : i + batch_size].to(dev), check=False).argmax(1)
            for i in range(0, x.shape[0], batch_size)
        ]
    return torch.cat(parts).to(x.device)


def _augment(sub: Classifier, x: Tensor, y: Tensor, lam: float, batch_size: int) -> Tensor:
    """``clip(x + lam · sign ∇_x log softmax(F(x))[y])`` ``(N, ...)``, on ``x``'s device."""
    dev = _device(sub)
    low, high = sub.low.to(x.device), sub.high.to(x.device)
    out = []
    with attack_mode(sub, "eval"), torch.enable_grad():
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(dev).requires_grad_(True)
            yb = y[i : i + batch_size].to(dev)
            logp = F.log_softmax(sub.logits(xb, check=False).float(), 1)
            (g,) = torch.autograd.grad(logp.gather(1, yb.view(-1, 1)).sum(), xb)
            out.append(g.sign().to(x.device))
    step = torch.cat(out)
    return torch.maximum(torch.minimum(x + lam * step, high), low).detach()


def _accuracy(model: Classifier, x: Tensor, y: Tensor, batch_size: int) -> float:
    return float(_predict(model, x, batch_size).eq(y.to(x.device)).float().mean())


def _predict(model: Classifier, x: Tensor, batch_size: int) -> Tensor:
    dev = _device(model)
    with torch.no_grad(), attack_mode(model, "eval"):
        parts = [
            model.logits(x[i : i + batch_size].to(dev), check=False).argmax(1).to(x.device)
            for i in range(0, x.shape[0], batch_size)
        ]
    return torch.cat(parts)


def split_seed(
    x: Tensor, y: Tensor, n: int = 150, *, balanced: bool = True, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Split a labelled set into the attacker's seed inputs and the held-out evaluation set.

    Returns ``(seed_x (n, ...), rest_x, rest_y)``. ``balanced=True`` (default) draws
    ``n // K`` inputs of each of the ``K`` classes present at random (seeded; the remainder and
    classes with too few inputs are filled at random from the other inputs); ``balanced=False``
    takes the first ``n`` (as the CleverHans tutorial does). The labels of the seed inputs are
    not returned: the attacker only gets labels from the oracle.
    """
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError("x and y must be tensors")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have shape ({x.shape[0]},) to match x; got {tuple(y.shape)}")
    _int("n", n, 1)
    if n >= x.shape[0]:
        raise ValueError(f"n must be smaller than the number of inputs ({x.shape[0]}); got {n}")
    if not balanced:
        idx = torch.arange(n)
    else:
        gen = torch.Generator().manual_seed(seed)
        yc = y.cpu()
        classes = torch.unique(yc)
        per = n // len(classes)
        picked = []
        for c in classes:
            members = (yc == c).nonzero().squeeze(1)
            picked.append(members[torch.randperm(len(members), generator=gen)[:per]])
        idx = torch.cat(picked)
        if len(idx) < n:  # remainder / scarce classes: fill from the rest at random
            free = torch.ones(len(yc), dtype=torch.bool)
            free[idx] = False
            rest = free.nonzero().squeeze(1)
            extra = rest[torch.randperm(len(rest), generator=gen)[: n - len(idx)]]
            idx = torch.cat([idx, extra])
        idx = idx.sort().values
    keep = torch.ones(x.shape[0], dtype=torch.bool)
    keep[idx] = False
    idx_d = idx.to(x.device)
    keep_d = keep.to(x.device)
    return x[idx_d].clone(), x[keep_d].clone(), y[keep_d.to(y.device)].clone()


# ------------------------------------------------------------------------------------ training
def train_substitute(
    target: Classifier,
    seed_x: Tensor,
    *,
    arch: ArchSpec = "papernot-a",
    epochs_per_round: int = 10,
    rounds: int = 6,
    lam: float = 0.1,
    tau: int | None = None,
    config: TrainConfig | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    eval_data: tuple[Tensor, Tensor] | None = None,
    batch_size: int = 512,
    seed: int = 0,
) -> tuple[Classifier, dict[str, Any]]:
    """Train a substitute of ``target`` from labels-only oracle queries (module docstring).

    Args:
        target: the attacked model; only ``query_access(target, "labels")`` is used.
        seed_x: ``(n, ...)`` seed inputs inside the target's bounds (paper: 150 MNIST images).
        arch: ``"papernot-a"`` (default), a zoo preset name, or an untrained Classifier.
        epochs_per_round: training epochs per round (default 10).
        rounds: substitute training rounds ρ (default 6; ``rounds - 1`` augmentations).
        lam: augmentation step λ in pixel units (default 0.1).
        tau: periodic step size: ``λ_ρ = λ·(-1)^⌊ρ/τ⌋``; ``None`` (default) keeps ``λ``.
        config: base :class:`TrainConfig` (default Adam lr 1e-3, batch 128, constant lr, on the
            target's device).
        arch_kwargs: architecture arguments of a zoo preset.
        eval_data: optional ``(x, y)`` labelled test data: the substitute's accuracy on it is
            recorded after every round (measurement only: no oracle queries).
        batch_size: batch size of oracle queries and Jacobian computations.
        seed: initialization of the substitute, data order (``seed + ρ`` per round).

    Returns ``(substitute, info)``; ``info`` holds ``oracle_queries`` (exact; equals
    ``len(seed_x) · 2^(rounds-1)``), ``train_size``, ``history`` (per round: ``round``,
    ``size``, ``new_queries``, ``lam`` (step that built this round's new points, ``None`` for
    round 0), ``train_acc``, ``seconds`` and, with ``eval_data``, ``substitute_accuracy``),
    and the resolved settings. The target's mode is left as it was.
    """
    _check_target(target, seed_x, "seed_x")
    rounds = _int("rounds", rounds, 1)
    epochs_per_round = _int("epochs_per_round", epochs_per_round, 1)
    batch_size = _int("batch_size", batch_size, 1)
    if isinstance(lam, bool) or not isinstance(lam, int | float) or not lam > 0:
        raise ValueError(f"lam must be a number > 0; got {lam!r}")
    if tau is not None:
        tau = _int("tau", tau, 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int; got {seed!r}")
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(config).__name__}")
    if eval_data is not None:
        ex, ey = eval_data
        _check_target(target, ex, "eval_data x")
        if not isinstance(ey, Tensor) or ey.shape != (ex.shape[0],):
            raise ValueError(f"eval_data labels must have shape ({ex.shape[0]},)")
    k = _num_classes(target, seed_x)
    base = config or TrainConfig(
        batch_size=128, lr=1e-3, optimizer="adam", schedule="none", device=str(_device(target))
    )
    shape = tuple(int(d) for d in seed_x.shape[1:])
    sub = _build_substitute(arch, target, shape, k, seed, dict(arch_kwargs or {}))
    oracle = query_access(target, "labels")
    t0 = time.perf_counter()
    s = seed_x.detach().clone()
    with attack_mode(target, "eval"):
        labels = _label(oracle, s, batch_size)
    history: list[dict[str, Any]] = []
    bar = progress(range(rounds), desc="substitute rounds", total=rounds)
    new_queries, lam_used = int(s.shape[0]), None
    for rho in bar:
        t_round = time.perf_counter()
        if rho > 0:
            lam_used = float(lam) * (-1) ** ((rho - 1) // tau) if tau else float(lam)
            new = _augment(sub, s, labels, lam_used, batch_size)
            with attack_mode(target, "eval"):
                new_labels = _label(oracle, new, batch_size)
            s, labels = torch.cat([s, new]), torch.cat([labels, new_labels])
            new_queries = int(new.shape[0])
        cfg = dataclasses.replace(base, epochs=epochs_per_round, seed=base.seed + seed + rho)
        data = TensorData(x=s, y=labels.long(), num_classes=k, name="substitute")
        res = train(sub, data, None, cfg)
        row: dict[str, Any] = {
            "round": rho,
            "size": int(s.shape[0]),
            "new_queries": new_queries,
            "lam": lam_used,
            "train_acc": float(res.last.get("train_acc", float("nan"))),
        }
        if eval_data is not None:
            row["substitute_accuracy"] = _accuracy(sub, eval_data[0], eval_data[1], batch_size)
        row["seconds"] = time.perf_counter() - t_round
        history.append(row)
        bar.set_postfix(size=row["size"], queries=oracle.queries)
        logger.info(
            "substitute round %d/%d: %d points, %d oracle queries%s",
            rho + 1,
            rounds,
            row["size"],
            oracle.queries,
            f", test accuracy {row['substitute_accuracy']:.4f}" if eval_data is not None else "",
        )
    bar.close()
    info: dict[str, Any] = {
        "oracle_queries": oracle.queries,
        "oracle_access": "labels",
        "seed_size": int(seed_x.shape[0]),
        "train_size": int(s.shape[0]),
        "rounds": rounds,
        "epochs_per_round": epochs_per_round,
        "lam": float(lam),
        "tau": tau,
        "arch": arch if isinstance(arch, str) else (arch.preset or type(arch.net).__name__),
        "arch_kwargs": dict(arch_kwargs or {}),
        "train_config": dataclasses.replace(base, epochs=epochs_per_round).to_dict(),
        "seed": seed,
        "history": history,
        "seconds": time.perf_counter() - t0,
    }
    return sub, info


# ------------------------------------------------------------------------------------- attack
def _noise_success(
    target: Classifier, x: Tensor, y: Tensor, norm: str, eps: float, seed: int, batch_size: int
) -> float:
    """Control: misclassification rate of ``clip(x + eps · direction(gaussian))`` (random sign
    noise of the same Linf size for linf), the paper-free baseline a transfer must beat."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    lp = get_norm(norm)
    g = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    low, high = target.low.to(x.device), target.high.to(x.device)
    xn = torch.maximum(torch.minimum(x + eps * lp.direction(g), high), low)
    return float(_predict(target, xn, batch_size).ne(y.to(x.device)).float().mean())


def substitute_attack(
    target: Classifier,
    seed_x: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    eps: float = 0.3,
    attack: str = "fgsm",
    attack_kwargs: dict[str, Any] | None = None,
    arch: ArchSpec = "papernot-a",
    epochs_per_round: int = 10,
    rounds: int = 6,
    lam: float = 0.1,
    tau: int | None = None,
    config: TrainConfig | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    noise_baseline: bool = True,
    batch_size: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """The whole Papernot et al. 2017 pipeline: train a substitute from ``seed_x`` with
    labels-only queries (:func:`train_substitute`), craft ``attack`` (default FGSM, eps 0.3 as
    in the paper on MNIST) on it for ``test_x``, and score on the target.

    ``test_x (N, ...)``, ``test_y (N,)``: held-out labelled data (not the seeds; see
    :func:`split_seed`). Returns a JSON-ready dict:

    * ``transfer_success``: fraction of the test set whose adversarial input the target
      misclassifies (the paper's transferability rate; clean errors count);
      ``transfer_success_on_correct``: the same among inputs the target gets right clean;
      ``target_accuracy_adv = 1 - transfer_success``.
    * ``substitute_accuracy`` (on the test labels), ``agreement`` (substitute and target give
      the same label on clean test inputs), ``target_clean_accuracy``,
      ``whitebox_success_on_substitute``.
    * ``noise_success`` (with ``noise_baseline``; budget attacks only): the target's
      misclassification rate under random noise of the same size (linf: ``±eps`` signs).
    * ``oracle_queries`` (labels spent to train the substitute), ``evaluation_queries`` (one
      labels-only target query per test input to score the transfer), ``substitute`` (the
      :func:`train_substitute` info), settings and ``seconds``.
    """
    _check_target(target, test_x, "test_x")
    if not isinstance(attack, str):
        raise TypeError(
            f"attack must be a registered attack name (e.g. 'fgsm'); got {type(attack).__name__}"
        )
    k = _num_classes(target, test_x)
    if not isinstance(test_y, Tensor) or test_y.shape != (test_x.shape[0],):
        raise ValueError(f"test_y must be a label tensor of shape ({test_x.shape[0]},)")
    if test_y.is_floating_point() or int(test_y.min()) < 0 or int(test_y.max()) >= k:
        raise ValueError(f"test_y must hold integer class indices in [0, {k})")
    batch_size = _int("batch_size", batch_size, 1)
    inner: Attack = attacks.build(attack, **{"eps": eps, "seed": seed, **(attack_kwargs or {})})
    t0 = time.perf_counter()
    sub, info = train_substitute(
        target,
        seed_x,
        arch=arch,
        epochs_per_round=epochs_per_round,
        rounds=rounds,
        lam=lam,
        tau=tau,
        config=config,
        arch_kwargs=arch_kwargs,
        eval_data=(test_x, test_y),
        seed=seed,
    )
    oracle = query_access(target, "labels")
    atk = TransferAttack(sub, inner)
    y = test_y.long()
    fooled, white = [], []
    for i in progress(range(0, test_x.shape[0], batch_size), desc="transfer"):
        on_target, on_sub = atk.run(oracle, test_x[i : i + batch_size], y[i : i + batch_size])
        fooled.append(on_target.logits_adv.argmax(1).ne(on_target.y).cpu())
        white.append(on_sub.success.cpu())
    broken = torch.cat(fooled)
    pred_target = _predict(target, test_x, batch_size).cpu()
    pred_sub = _predict(sub, test_x, batch_size).cpu()
    yc = y.cpu()
    correct = pred_target == yc
    out: dict[str, Any] = {
        "attack": attack,
        "attack_config": inner.config(),
        "eps": inner.budget(),
        "n_test": int(test_x.shape[0]),
        "transfer_success": float(broken.float().mean()),
        "transfer_success_on_correct": (
            float(broken[correct].float().mean()) if bool(correct.any()) else None
        ),
        "target_accuracy_adv": float((~broken).float().mean()),
        "target_clean_accuracy": float(correct.float().mean()),
        "substitute_accuracy": float((pred_sub == yc).float().mean()),
        "agreement": float((pred_sub == pred_target).float().mean()),
        "whitebox_success_on_substitute": float(torch.cat(white).float().mean()),
        "noise_success": None,
        "oracle_queries": info["oracle_queries"],
        "evaluation_queries": oracle.queries,
        "substitute": info,
    }
    budget = inner.budget()
    if noise_baseline and budget is not None:
        out["noise_success"] = _noise_success(
            target, test_x, y, inner.norm, budget, seed, batch_size
        )
    out["seconds"] = time.perf_counter() - t0
    return out
