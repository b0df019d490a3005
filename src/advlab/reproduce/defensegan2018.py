"""``defensegan2018``: Defense-GAN on MNIST (Samangouei, Kabkab & Chellappa 2018), the seed deck's
white-box (FGSM, RAND+FGSM, CW-L2 on classifiers A–D) and black-box (FGSM from a substitute of
architecture B) accuracy tables, with no defense, Defense-GAN-Rec/-Orig, MagNet and FGSM
adversarial training; plus the adaptive attacks that break it (BPDA and Athalye, Carlini &
Wagner 2018's latent-space attack)."""

from __future__ import annotations

from functools import partial

from advlab.attacks import FGSM
from advlab.defenses.defense_gan import DefenseGAN
from advlab.evaluation.substitute import train_substitute
from advlab.models import Classifier
from advlab.reproduce import _defensegan as h
from advlab.reproduce._classics import order_cell
from advlab.reproduce._defensegan_attacks import (
    Adaptive,
    adaptive_attacks,
    craft,
    projected,
    rate,
    reformed,
    white_box_attacks,
)
from advlab.reproduce.base import Cell, Context, Outcome, Reproduction, reproductions

T_WB = "White-box attacks on the classifier, MNIST: accuracy"
T_BB = "Black-box: FGSM eps 0.3 from a substitute of architecture B (target/substitute): accuracy"
T_AD = "Adaptive attacks on Defense-GAN-Rec (model B): accuracy and success (%)"
WB_COLS = ("no attack", "no defense", "Defense-GAN-Rec", "MagNet", "adv. tr. eps 0.3")
BB_COLS = (*WB_COLS[:3], "Defense-GAN-Orig", *WB_COLS[3:])
TOL = {"no attack": 0.02, "Defense-GAN-Rec": 0.05, "Defense-GAN-Orig": 0.05}  # others 0.15
# Samangouei et al. 2018, MNIST accuracy, by (attack, model): WB_COLS
PAPER_WB: dict[tuple[str, str], tuple[float, ...]] = {
    ("FGSM", "A"): (0.997, 0.217, 0.988, 0.191, 0.651),
    ("FGSM", "B"): (0.962, 0.022, 0.956, 0.082, 0.060),
    ("FGSM", "C"): (0.996, 0.331, 0.989, 0.163, 0.786),
    ("FGSM", "D"): (0.992, 0.038, 0.980, 0.094, 0.732),
    ("RAND+FGSM", "A"): (0.997, 0.179, 0.988, 0.171, 0.774),
    ("RAND+FGSM", "B"): (0.962, 0.017, 0.944, 0.091, 0.138),
    ("RAND+FGSM", "C"): (0.996, 0.103, 0.985, 0.151, 0.907),
    ("RAND+FGSM", "D"): (0.992, 0.050, 0.980, 0.115, 0.539),
    ("CW-L2", "A"): (0.997, 0.141, 0.989, 0.038, 0.077),
    ("CW-L2", "B"): (0.962, 0.032, 0.916, 0.034, 0.280),
    ("CW-L2", "C"): (0.996, 0.126, 0.989, 0.025, 0.031),
    ("CW-L2", "D"): (0.992, 0.032, 0.983, 0.021, 0.010),
}
# black-box, substitute B, by target model: BB_COLS
PAPER_BB: dict[str, tuple[float, ...]] = {
    "A": (0.9970, 0.6343, 0.9312, 0.9282, 0.6937, 0.9654),
    "B": (0.9618, 0.2816, 0.9057, 0.9105, 0.5687, 0.2092),
    "C": (0.9959, 0.6648, 0.9357, 0.9322, 0.7571, 0.9834),
    "D": (0.9920, 0.4641, 0.9272, 0.9323, 0.6817, 0.7667),
}
ROW_NAMES = {"FGSM": "FGSM eps 0.3", "RAND+FGSM": "RAND+FGSM eps 0.3, alpha 0.05", "CW-L2": "CW L2"}
LATENT_PAPER = 55.0  # Athalye et al. 2018 on Defense-GAN, MSE 0.005 (as the reference reads it)


def cell(table: str, row: str, col: str, paper: float | None, ours: float, note: str = "") -> Cell:
    tol = TOL.get(col, 0.15) if paper is not None else None
    return Cell(table, row, col, paper, ours, unit="rate", tolerance=tol, note=note)


@reproductions.register("defensegan2018")
class DefenseGAN2018(Reproduction):
    """Defense-GAN-Rec vs no defense, MagNet and adversarial training on MNIST models A–D under
    white-box and substitute black-box attacks; BPDA and latent-space attacks on Defense-GAN."""

    name = "defensegan2018"
    title = "Samangouei et al. 2018: Defense-GAN on MNIST (and Athalye et al.'s attack)"
    papers = (
        "Samangouei, Kabkab & Chellappa, Defense-GAN: Protecting Classifiers Against Adversarial "
        "Attacks Using Generative Models, ICLR 2018",
        "Athalye, Carlini & Wagner, Obfuscated Gradients Give a False Sense of Security, ICML 2018",
    )

    def run(self, ctx: Context) -> Outcome:
        b = h.QUICK if ctx.quick else h.FULL
        train_set = ctx.data("mnist", "train", b.train_n)
        test = ctx.data("mnist", "test", b.test_n + b.sub_seeds).to(ctx.device)
        x, y, seeds = test.x[: b.test_n], test.y[: b.test_n], test.x[b.test_n :]
        ms = h.build_models(ctx, b, train_set)
        plain, adv, rec, proj = ms.plain, ms.adv, ms.rec, ms.projector
        cells: list[Cell] = []
        for name, attack in white_box_attacks(b.cw, ctx.seed).items():
            for m in b.models:
                ctx.log(f"[white-box] {name} on model {m}")
                x_plain = craft(attack, plain[m], x, y)
                ours: tuple[float, ...] = (
                    rate(plain[m], x, y),
                    rate(plain[m], x_plain, y),
                    rate(rec[m], projected(proj, craft(attack, rec[m], x, y)), y),
                    rate(plain[m], reformed(ms.magnet, x_plain), y),
                    rate(adv[m], craft(attack, adv[m], x, y), y),
                )
                row = f"{ROW_NAMES[name]}, model {m}"
                cells += [
                    cell(T_WB, row, c, p, o)
                    for c, p, o in zip(WB_COLS, PAPER_WB[name, m], ours, strict=True)
                ]
                ctx.partial(cells)
        clean = projected(proj, x)
        note = "not in the paper's table: what the projection costs on clean inputs"
        cells += [
            cell(
                T_WB, f"no attack, model {m}", "Defense-GAN-Rec", None, rate(rec[m], clean, y), note
            )
            for m in b.models
        ]
        size = f"n{len(train_set)}-r{b.sub_rounds}x{b.sub_epochs}-s{ctx.seed}"

        def substitute(target: Classifier) -> Classifier:
            return train_substitute(
                target,
                seeds,
                arch="tramer-b",
                rounds=b.sub_rounds,
                epochs_per_round=b.sub_epochs,
                seed=ctx.seed,
            )[0]

        for m in b.models:
            ctx.log(f"[black-box] FGSM from a substitute (architecture B) of model {m}")
            key = f"dg18-sub-b-of-{m.lower()}-e{b.epochs_of(m)[0]}-{size}"
            sub = h.cached(ctx, key, partial(substitute, plain[m]))
            x_b = craft(FGSM(eps=h.EPS), sub, x, y)
            p_b = projected(proj, x_b)
            ours = (
                rate(plain[m], x, y),
                rate(plain[m], x_b, y),
                rate(rec[m], p_b, y),
                rate(plain[m], p_b, y),
                rate(plain[m], reformed(ms.magnet, x_b), y),
                rate(adv[m], x_b, y),
            )
            cells += [
                cell(T_BB, f"{m}/B", c, p, o)
                for c, p, o in zip(BB_COLS, PAPER_BB[m], ours, strict=True)
            ]
            ctx.partial(cells)
        m_ad = "B" if "B" in b.models else b.models[0]
        ctx.log(f"[adaptive] Defense-GAN-Rec, model {m_ad}")
        dg = DefenseGAN(
            rec[m_ad], ms.generator, iterations=b.iterations, restarts=b.restarts,
            seed=ctx.seed, variant="rec",
        )  # fmt: skip
        ad = adaptive_attacks(ctx, b, dg, x[: b.adaptive_n], y[: b.adaptive_n])
        cells += self._adaptive_cells(b, ad)
        config = {"eps": h.EPS, "budget": vars(b), "generator": ms.gen_info.get("arch")}
        return Outcome(cells, self._notes(ctx, b, ms.gen_info, ad), [], config)

    @staticmethod
    def _adaptive_cells(b: h.Budget, ad: Adaptive) -> list[Cell]:
        naive = PAPER_WB["FGSM", "B"][2] * 100
        craft = f"crafted through L = {b.craft_iterations}, R = {b.craft_restarts}"
        acc, success = "Defense-GAN-Rec accuracy", "success rate (verified)"
        strict = "latent-space attack, MSE <= 0.005"
        loose = f"latent-space attack, MSE <= {ad.loose_budget:.4f}"
        gap = naive - (100 - LATENT_PAPER)
        gap_note = (
            f"ordering: holds when ours >= 0; paper: {naive:.1f} (FGSM on the classifier) − "
            f"{100 - LATENT_PAPER:.0f} (accuracy under Athalye et al.'s attack)"
        )
        mse_note = (
            f"median MSE of the closest misclassified G(z): {ad.latent_min_mse:.4f}; our clean "
            f"reconstruction MSE: {ad.clean_mse:.4f}"
        )
        loose_note = "0.005 + our clean reconstruction MSE (what our generator cannot fit)"
        return [
            Cell(T_AD, "FGSM eps 0.3 on the classifier (paper's threat model)", acc, naive,
                 100 * ad.naive, tolerance=5.0),
            Cell(T_AD, "BPDA-FGSM eps 0.3", acc, None, 100 * ad.bpda_fgsm, note=craft),
            Cell(T_AD, f"BPDA-PGD eps 0.3, {b.pgd_steps} steps", acc, None, 100 * ad.bpda_pgd,
                 note=craft),
            Cell(T_AD, strict, success, LATENT_PAPER, 100 * ad.latent_success, tolerance=15.0,
                 note=mse_note),
            Cell(T_AD, strict, acc, None, 100 * ad.latent_accuracy),
            Cell(T_AD, loose, success, None, 100 * ad.loose_success, note=loose_note),
            Cell(T_AD, loose, acc, None, 100 * ad.loose_accuracy),
            order_cell(T_AD, "naive − BPDA-FGSM", "accuracy gap", gap,
                       100 * (ad.naive - ad.bpda_fgsm), gap_note),
            order_cell(T_AD, "naive − BPDA-PGD", "accuracy gap", gap,
                       100 * (ad.naive - ad.bpda_pgd), gap_note),
        ]  # fmt: skip

    @staticmethod
    def _notes(ctx: Context, b: h.Budget, gen_info: dict[str, object], ad: Adaptive) -> list[str]:
        hist = gen_info.get("history") or {}
        secs = hist.get("seconds") if isinstance(hist, dict) else None
        gan_s = f" in {secs[-1]:.0f} s" if secs else ""
        n = b.train_n or 60_000
        epochs = ", ".join(f"{m} {b.epochs_of(m)[0]}" for m in b.models)
        rec_epochs = ", ".join(f"{m} {b.epochs_of(m)[1]}" for m in b.models)
        notes = [
            f"Classifiers: advlab presets tramer-a..d (Tramèr et al.'s A–D, the paper's), Adam "
            f"lr 1e-3, batch 64, cosine, {epochs} epoch(s) on {n:,} images; adversarial "
            "training: fgsm-mix recipe (alpha 0.5, FGSM eps 0.3 on the current weights), the "
            "same epochs.",
            f"Generator: advlab WGAN-GP (latent 128, width {b.gan_width}, n_critic "
            f"{b.gan_n_critic}, Adam {b.gan_lr:g}, batch 50), {b.gan_iterations:,} iterations"
            f"{gan_s} (reference code: width 64, n_critic 5, lr 1e-4, 200,000 iterations).",
            f"Defense-GAN: L = {b.iterations}, R = {b.restarts} (paper 200 and 10), momentum "
            "0.7, step 10 decayed at 80% (reference code), the same R starting points for every "
            f"input. -Rec classifiers: the same preset trained from scratch for {rec_epochs} "
            f"epoch(s) on reconstructions (same L, R) of {b.rec_n or n:,} training images.",
            "MagNet column: Meng & Chen's autoencoder I as reformer, fitted once (reformer "
            f"independent of the classifier) for {b.magnet_epochs} epoch(s); accuracy of the "
            "classifier on the reformed input, detector rejections not counted as correct "
            "(our reading of the paper's low MagNet numbers).",
            f"Black-box: Papernot et al. 2017 substitute of architecture tramer-b, trained from "
            f"labels-only queries of the undefended target ({b.sub_seeds} test images as seeds, "
            f"{b.sub_rounds} rounds x {b.sub_epochs} epochs, lambda 0.1); FGSM eps 0.3 on it is "
            "scored on every column (the deck: 'adversarial examples generated by B attack A').",
            f"Adaptive: BPDA with the identity through a cheaper projection (L = "
            f"{b.craft_iterations}, R = {b.craft_restarts}) scored on the defense; PGD "
            f"{b.pgd_steps} steps of 2.5·eps/steps, no random start; latent-space attack: advlab "
            f"latent_attack ({b.latent_steps} Adam steps x {b.latent_search} constants "
            "(advlab's defaults: 100 x 5), verified on the "
            f"defense; an MSE (L2) threat model, not Linf), first {b.adaptive_n} test images. "
            "The reference sheet reads Athalye et al.'s Defense-GAN number as 55% success; "
            "their Table 1 lists it in an accuracy column (which would be 45% success).",
            f"{b.test_n} test images (the {b.sub_seeds} after them seed the substitutes); all "
            "inputs clipped to [0, 1].",
        ]
        if ctx.quick:
            notes.append(
                f"Quick mode: models {', '.join(b.models)} only, a {b.gan_iterations}-iteration "
                f"width-{b.gan_width} generator, L = {b.iterations}, R = {b.restarts}. The "
                f"generator is far from the paper's: clean reconstruction MSE {ad.clean_mse:.3f} "
                "(the docs' 1,869-iteration CPU generator: 0.0045 at L = 200, R = 10), so "
                "Defense-GAN loses clean accuracy and does not undo the FGSM perturbation, and "
                "the Defense-GAN columns miss the paper's 0.9+ by a wide margin; the latent-space "
                "attack cannot reach MSE 0.005 when the clean reconstruction is already farther "
                "(hence the looser row). Model D trains 6 epochs (the MLP learns slowly), B 2."
            )
        return notes
