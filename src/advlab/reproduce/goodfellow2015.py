"""``goodfellow2015``: FGSM on shallow softmax and maxout nets, FGSM adversarial training, the
noise controls and transfer (Goodfellow, Shlens & Szegedy 2015, MNIST, eps = 0.25)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from advlab.attacks import FGSM
from advlab.defenses.training import TrainConfig, build_recipe
from advlab.models import Classifier
from advlab.reproduce.base import Cell, Context, Outcome, Reproduction, reproductions

EPS = 0.25
T_FGSM = "FGSM eps 0.25 on MNIST"
T_ADV = "Adversarial training (alpha 0.5) and controls"


@dataclass
class FGSMStats:
    error: float  # % of test inputs misclassified after FGSM (clean errors count)
    confidence: float  # % mean confidence on the misclassified adversarial inputs
    x_adv: Tensor


def fgsm_stats(model: Classifier, x: Tensor, y: Tensor, batch_size: int = 1000) -> FGSMStats:
    """FGSM (clipped to [0, 1]) error and mean confidence on errors, in percent."""
    attack = FGSM(eps=EPS)
    parts = [
        attack(model, x[i : i + batch_size], y[i : i + batch_size])
        for i in range(0, x.shape[0], batch_size)
    ]
    x_adv = torch.cat([p.x_adv for p in parts])
    logits = torch.cat([p.logits_adv for p in parts]).float()
    prob = torch.softmax(logits, 1).max(1)
    wrong = prob.indices != y
    conf = float(prob.values[wrong].mean()) if wrong.any() else 0.0
    return FGSMStats(100 * float(wrong.float().mean()), 100 * conf, x_adv)


def error_on(model: Classifier, x: Tensor, y: Tensor) -> float:
    return 100 * float((model.predict(x) != y).float().mean())


@reproductions.register("goodfellow2015")
class Goodfellow2015(Reproduction):
    """FGSM error and confidence of softmax regression and maxout nets; fgsm-mix adversarial
    training (clean error, adversarial error, confidence, transfer); noise-training controls."""

    name = "goodfellow2015"
    title = "Goodfellow, Shlens & Szegedy 2015: FGSM and adversarial training on MNIST"
    papers = (
        "Goodfellow, Shlens & Szegedy, Explaining and Harnessing Adversarial Examples, ICLR 2015",
    )

    def run(self, ctx: Context) -> Outcome:
        q = ctx.quick
        train_set = ctx.data("mnist", "train", 10_000 if q else None)
        test = ctx.data("mnist", "test", 1_000 if q else None).to(ctx.device)
        x, y = test.x, test.y
        epochs = 3 if q else 12
        size = f"{'q' if q else 'full'}-e{epochs}"
        cfg = TrainConfig(epochs=epochs, batch_size=128, lr=2e-3, seed=ctx.seed)
        softmax = ctx.model(f"gf15-softmax-{size}-s{ctx.seed}", "softmax", train_set, cfg)
        maxout = ctx.model(f"gf15-maxout-{size}-s{ctx.seed}", "maxout", train_set, cfg)
        adv = ctx.model(
            f"gf15-maxout-fgsm-mix-{size}-s{ctx.seed}",
            "maxout",
            train_set,
            cfg,
            build_recipe("fgsm-mix", {"eps": EPS, "alpha": 0.5}),
        )
        noise = {
            kind: ctx.model(
                f"gf15-maxout-noise-{kind}-{size}-s{ctx.seed}",
                "maxout",
                train_set,
                cfg,
                build_recipe("noise", {"eps": EPS, "alpha": 0.5, "kind": kind}),
            )
            for kind in ("sign", "uniform")
        }
        ctx.log("[eval] FGSM eps 0.25 on every model")
        s_soft, s_max, s_adv = (
            fgsm_stats(softmax, x, y),
            fgsm_stats(maxout, x, y),
            fgsm_stats(adv, x, y),
        )
        s_noise = {k: fgsm_stats(m, x, y) for k, m in noise.items()}
        cells = [
            Cell(T_FGSM, "shallow softmax", "FGSM error", 99.9, s_soft.error, tolerance=5),
            Cell(
                T_FGSM,
                "shallow softmax",
                "mean confidence on errors",
                79.3,
                s_soft.confidence,
                tolerance=10,
            ),
            Cell(T_FGSM, "maxout", "FGSM error", 89.4, s_max.error, tolerance=5),
            Cell(
                T_FGSM, "maxout", "mean confidence on errors", 97.6, s_max.confidence, tolerance=5
            ),
            Cell(T_ADV, "maxout", "clean error", 0.94, error_on(maxout, x, y), tolerance=0.5),
            Cell(
                T_ADV,
                "maxout, adversarially trained",
                "clean error",
                0.84,
                error_on(adv, x, y),
                tolerance=0.5,
            ),
            Cell(
                T_ADV,
                "maxout, adversarially trained",
                "FGSM error on itself",
                17.9,
                s_adv.error,
                tolerance=0.0,
                bound="max",
            ),
            Cell(
                T_ADV,
                "maxout, adversarially trained",
                "confidence on errors",
                81.4,
                s_adv.confidence,
                tolerance=10,
            ),
            Cell(
                T_ADV,
                "transfer",
                "plain maxout's FGSM inputs on the trained net",
                19.6,
                error_on(adv, s_max.x_adv, y),
                tolerance=10,
            ),
            Cell(
                T_ADV,
                "transfer",
                "trained net's FGSM inputs on plain maxout",
                40.9,
                error_on(maxout, s_adv.x_adv, y),
                tolerance=10,
            ),
            Cell(
                T_ADV,
                "control: ±eps sign noise training",
                "FGSM error",
                86.2,
                s_noise["sign"].error,
                tolerance=10,
            ),
            Cell(
                T_ADV,
                "control: U(−eps, eps) noise training",
                "FGSM error",
                90.4,
                s_noise["uniform"].error,
                tolerance=10,
            ),
        ]
        notes = [
            "advlab clips FGSM inputs to [0, 1]; the paper does not (MNIST pixels near 0 and 1 "
            "cannot move outside the range here).",
            "Maxout: 2 x 240 units x 5 pieces with dropout (input 0.2, hidden 0.5), trained with "
            f"Adam lr 2e-3, batch 128, cosine schedule, {epochs} epoch(s), no max-norm "
            "constraint and no early stopping (the paper trained much longer with SGD, "
            "momentum, max-norm and early stopping on a validation set).",
            "Adversarial training: advlab's fgsm-mix recipe, alpha 0.5, eps 0.25, examples "
            "crafted every batch from the current weights in eval mode (dropout off). The paper "
            "trained a larger maxout for this row (1,600 units per layer); here it has the "
            "same 240 units as the plain maxout, to stay in the CPU budget "
            "(docs/recipes.md has a 1,600-unit run).",
        ]
        if q:
            notes.append(
                "Quick mode: 10,000 training images, 3 epochs per model, 1,000 test "
                "images; the protocol is the full one's."
            )
        config = {"eps": EPS, "epochs": epochs, "train_n": len(train_set), "test_n": len(test)}
        return Outcome(cells, notes, [], config)
