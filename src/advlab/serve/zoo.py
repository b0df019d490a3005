"""The web demo's zoo entries (:data:`ZOO`): the training function of each model and its
description for the page. See :mod:`advlab.serve.models` for what each entry is and how the
zoo is loaded and cached."""

from __future__ import annotations

import logging

from advlab import models as almodels
from advlab.defenses import DefenseGAN, fit_magnet, train_gan
from advlab.defenses.training import train
from advlab.defenses.training.adversarial import PGDTraining
from advlab.defenses.training.distill import defensive_distillation
from advlab.defenses.training.fast import Fast
from advlab.models import Classifier
from advlab.serve.specs import DefenseBudget, Spec, TrainJob

logger = logging.getLogger(__name__)


def _plain(job: TrainJob) -> Classifier:
    clf = job.fresh()
    train(
        clf,
        job.first(job.budget.images),
        None,
        job.config(job.budget.epochs),
        out=job.folder,
        resume=True,
        dataset=job.train.name,
    )
    return clf


def _fast(job: TrainJob) -> Classifier:
    b = job.budget
    clf = job.fresh()
    tr, va = job.split(b.fast_images)
    # Wong et al.'s schedule: cyclic learning rate, Adam here (as their MNIST code)
    cfg = job.config(b.fast_epochs, lr=5e-3, schedule="cyclic", batch_size=100)
    train(
        clf,
        tr,
        va,
        cfg,
        recipe=Fast(eps=b.fast_eps, val_steps=5),
        out=job.folder,
        resume=True,
        dataset=job.train.name,
    )
    return clf


def _pgd(job: TrainJob) -> Classifier:
    b = job.budget
    clf = job.fresh()
    tr, va = job.split(b.pgd_images)
    recipe = PGDTraining(
        eps=b.pgd_eps, steps=b.pgd_steps, step_size=2.5 * b.pgd_eps / b.pgd_steps, val_steps=5
    )
    train(
        clf,
        tr,
        va,
        job.config(b.pgd_epochs),
        recipe=recipe,
        out=job.folder,
        resume=True,
        dataset=job.train.name,
    )
    return clf


def _distilled(job: TrainJob) -> Classifier:
    b = job.budget
    _, student = defensive_distillation(
        lambda: job.fresh(1),
        job.first(b.distill_images),
        None,
        job.config(b.distill_epochs, lr=1e-2),  # T = 100 shrinks gradients; a larger lr helps
        b.temperature,
        out=job.folder,
        resume=True,
        dataset=job.train.name,
    )
    return student


def _magnet(job: TrainJob) -> Classifier:
    d, base = job.require()
    tr, va = job.split(d.magnet_images, val=d.magnet_val)
    if va is None:
        raise ValueError("MagNet needs calibration images (magnet_val > 0)")
    model = fit_magnet(
        base,
        tr,
        va,
        epochs=d.magnet_epochs,
        lr=d.magnet_lr,
        batch_size=d.magnet_batch,
        fpr=d.magnet_fpr,
        seed=job.seed,
        device=job.device,
    )
    almodels.save(
        model,
        job.folder,
        dataset=job.train.name,
        recipe={"name": "magnet", "images": len(tr), "val_images": len(va), **d.to_dict()},
    )
    return model


def _defense_gan(job: TrainJob) -> Classifier:
    d, base = job.require()
    logger.info(
        "Defense-GAN: training a WGAN-GP generator for %d iterations (demo quality; progress "
        "every 100 iterations)",
        d.gan_iterations,
    )
    generator = train_gan(
        job.first(d.gan_images),
        iterations=d.gan_iterations,
        latent_dim=d.gan_latent,
        width=d.gan_width,
        n_critic=2,
        lr=1e-3,
        seed=job.seed,
        device=job.device,
        log_every=100,
    )
    model = DefenseGAN(
        base, generator, iterations=d.dgan_iterations, restarts=d.dgan_restarts, seed=job.seed
    )
    almodels.save(
        model.eval(),
        job.folder,
        dataset=job.train.name,
        recipe={"name": "defense-gan", "n_critic": 2, "lr": 1e-3, **d.to_dict()},
        extra={"gan_history": generator.history.to_dict() if generator.history else None},
    )
    return model


def _magnet_details(d: DefenseBudget) -> str:
    return (
        f" Thresholds: {d.magnet_fpr:.1%} false positives on {d.magnet_val:,} clean validation "
        f"images; autoencoders trained {d.magnet_epochs} epochs (the paper: 100)."
    )


def _dgan_details(d: DefenseBudget) -> str:
    return (
        f" DEMO QUALITY: the generator trained for only {d.gan_iterations:,} iterations on the "
        "CPU at first start (the paper: 200,000 on a GPU), and the projection runs "
        f"L = {d.dgan_iterations} steps from R = {d.dgan_restarts} starting points (the paper: "
        "200 and 10) to keep a request fast, so reconstructions are blurry and the numbers are "
        f"not the paper's. Adaptive attacks are capped at {d.dgan_adaptive_max_steps} steps "
        "(each costs a projection)."
    )


ZOO: dict[str, Spec] = {
    s.name: s
    for s in (
        Spec(
            "plain",
            "Plain LeNet",
            "LeNet-5 trained with cross-entropy on clean images: accurate, and fooled by "
            "tiny perturbations.",
            _plain,
        ),
        Spec(
            "fast-at",
            "Fast adversarial training",
            "LeNet-5 trained on FGSM-from-random-start examples (Wong, Rice & Kolter 2020): "
            "robust to FGSM and, less so, to PGD at its training eps.",
            _fast,
            lambda b: b.fast_eps,
        ),
        Spec(
            "pgd-at",
            "PGD adversarial training",
            "LeNet-5 trained on PGD examples (Madry et al. 2018), a few steps per batch: "
            "the robust baseline.",
            _pgd,
            lambda b: b.pgd_eps,
        ),
        Spec(
            "distilled",
            "Defensive distillation (T=100)",
            "LeNet-5 distilled at temperature 100 and deployed at T=1 (Papernot et al. 2016). "
            "Its softmax saturates, so FGSM/PGD with cross-entropy see zero gradients "
            "(gradient masking, not robustness): try PGD with the margin loss or APGD-DLR.",
            _distilled,
        ),
        Spec(
            "magnet",
            "MagNet (detector + reformer)",
            "MagNet (Meng & Chen 2017) in front of the plain LeNet (same weights): an "
            "autoencoder reforms each input, and two autoencoder detectors (L2 and L1 "
            "reconstruction error) reject inputs that do not look like clean digits; a rejected "
            "adversarial input counts as defended.",
            _magnet,
            base="plain",
            details=_magnet_details,
            extra=lambda d: {"fpr": d.magnet_fpr, "autoencoder_epochs": d.magnet_epochs},
            budget_keys=("magnet_",),
        ),
        Spec(
            "defense-gan",
            "Defense-GAN (demo quality)",
            "Defense-GAN (Samangouei, Kabkab & Chellappa 2018) in front of the plain LeNet (the "
            "same weights): every input is replaced by its projection onto the range of a GAN "
            "generator (the closest image the generator can make, found by gradient descent in "
            "its latent space), then classified. No detector.",
            _defense_gan,
            base="plain",
            details=_dgan_details,
            opt_in=True,
            extra=lambda d: {"gan_iterations": d.gan_iterations, "demo_quality": True},
            budget_keys=("gan_", "dgan_"),
        ),
    )
}

#: The zoo entries ``load_zoo`` (and ``advlab serve``) train when no names are given.
DEFAULT_MODELS: tuple[str, ...] = tuple(n for n, s in ZOO.items() if not s.opt_in)
