"""Evaluation pieces of the ``defensegan2018`` reproduction: accuracies behind Defense-GAN and
MagNet's reformer, the white-box attacks of the paper's table, and the adaptive attacks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from advlab.attacks import FGSM, PGD, Attack, RandFGSM, attacks
from advlab.defenses import MagNet
from advlab.defenses.defense_gan import DefenseGAN, Projector, latent_attack
from advlab.models import Classifier
from advlab.reproduce._classics import attack_all
from advlab.reproduce._defensegan import EPS, Budget
from advlab.reproduce.base import Context


def rate(model: Classifier, x: Tensor, y: Tensor) -> float:
    """Accuracy of ``model`` on ``(x, y)`` as a rate in [0, 1] (0 for no inputs)."""
    return float((model.predict(x) == y).float().mean()) if y.numel() else 0.0


def projected(projector: Projector, x: Tensor) -> Tensor:
    """Defense-GAN's ``G(z*)`` of ``x``. It does not depend on the classifier, so each set of
    inputs is projected once and classified by every model (the same as
    ``DefenseGAN(model, ...).predict``)."""
    return projector.project(x)[0]


def reformed(m: MagNet, x: Tensor, batch_size: int = 1000) -> Tensor:
    """MagNet's reformer output for ``x``. It does not depend on the classifier MagNet was
    fitted around, so one fitted MagNet serves every model."""
    net = m.magnet
    parts = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size]
            u = net.reform(net.reformer, net.unit(xb), net.members(xb.shape[0], xb.device))
            parts.append(net.pixels(u))
    return torch.cat(parts) if parts else x.clone()


def white_box_attacks(cw: bool, seed: int) -> dict[str, Attack]:
    """The table's rows: FGSM and RAND+FGSM (eps 0.3, alpha 0.05), and with ``cw`` Carlini &
    Wagner L2 with CleverHans' ``CarliniWagnerL2`` defaults (5 binary-search steps x 1,000
    steps, lr 5e-3, initial constant 1e-2, confidence 0); the paper does not state its own."""
    out: dict[str, Attack] = {
        "FGSM": FGSM(eps=EPS),
        "RAND+FGSM": RandFGSM(eps=EPS, alpha=0.05, seed=seed),
    }
    if cw:
        out["CW-L2"] = attacks.build(
            "cw-l2", binary_search_steps=5, steps=1_000, lr=5e-3, initial_const=1e-2, seed=seed
        )
    return out


def craft(attack: Attack, model: Classifier, x: Tensor, y: Tensor) -> Tensor:
    """``attack``'s adversarial inputs for ``(x, y)`` on ``model``, in batches of 250."""
    return attack_all(attack, model, x, y, batch_size=250).x_adv


@dataclass
class Adaptive:
    """Accuracies (rates) of a Defense-GAN under FGSM crafted on its classifier (the paper's
    threat model) and under BPDA-FGSM / BPDA-PGD; the latent-space attack's verified success
    rate and accuracy at MSE <= 0.005 and at the looser ``loose_budget`` (0.005 plus the mean
    clean reconstruction MSE ``clean_mse``); the median smallest MSE of a misclassified ``G(z)``
    (``inf`` if none)."""

    naive: float
    bpda_fgsm: float
    bpda_pgd: float
    latent_success: float
    latent_accuracy: float
    loose_success: float
    loose_accuracy: float
    loose_budget: float
    latent_min_mse: float
    clean_mse: float


def adaptive_attacks(ctx: Context, b: Budget, dg: DefenseGAN, x: Tensor, y: Tensor) -> Adaptive:
    """FGSM crafted on ``dg``'s classifier; BPDA-FGSM and BPDA-PGD (``b.pgd_steps`` steps of
    ``2.5·eps/steps``, no random start) crafted through a cheaper projection (``b.craft_*``) and
    scored on ``dg``; Athalye et al.'s latent-space attack (verified on ``dg``) at MSE <= 0.005
    and at 0.005 above the generator's mean clean reconstruction MSE."""
    proj = dg.projector
    crafting = DefenseGAN(
        dg.base,
        dg.generator,
        iterations=b.craft_iterations,
        restarts=b.craft_restarts,
        seed=ctx.seed,
        variant=dg.variant,
    ).adaptive()
    pgd = PGD(eps=EPS, steps=b.pgd_steps, step_size=2.5 * EPS / b.pgd_steps, random_start=False)
    scores = []
    for attack, model in ((FGSM(eps=EPS), dg.base), (FGSM(eps=EPS), crafting), (pgd, crafting)):
        scores.append(rate(dg.base, projected(proj, craft(attack, model, x, y)), y))
    clean_mse = float(proj.project(x)[2].mean())
    ctx.log("[adaptive] latent-space attack (Athalye et al. 2018)")
    la, loose = (
        latent_attack(dg, x, y, max_mse=mse, steps=b.latent_steps, search_steps=b.latent_search)
        for mse in (0.005, 0.005 + clean_mse)
    )
    found = la.min_mse[torch.isfinite(la.min_mse)]
    return Adaptive(
        scores[0],
        scores[1],
        scores[2],
        la.success_rate,
        la.accuracy,
        loose.success_rate,
        loose.accuracy,
        0.005 + clean_mse,
        float(found.median()) if found.numel() else float("inf"),
        clean_mse,
    )
