"""``tramer2018``: ensemble adversarial training on MNIST (Tramèr, Kurakin, Papernot, Goodfellow,
Boneh & McDaniel 2018, eps = 0.3): error rates of model A, FGSM adversarial training (A_adv) and
ensemble adversarial training (A_adv-ens) under white-box FGSM and attacks transferred from a
held-out model B, plus the white-box FGSM vs RAND+FGSM table."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from advlab.attacks import BIM, FGSM, PGD, Attack, RandFGSM
from advlab.defenses.training import TrainConfig, build_recipe
from advlab.models import Classifier
from advlab.reproduce._classics import attack_all, error_pct, order_cell
from advlab.reproduce.base import Cell, Context, Outcome, Reproduction, reproductions

EPS = 0.3
ALPHA = 0.05  # RAND+FGSM's random step
COLUMNS = ("clean", "FGSM", "FGSM_B", "I-FGSM_B", "RAND+FGSM_B", "CW_B")
BLACK_BOX = COLUMNS[2:]
# Tramèr et al. 2018, MNIST error rates (%), by (epochs of adversarial training, model)
PAPER: dict[tuple[int, str], tuple[float, ...]] = {
    (6, "A"): (0.9, 71.4, 62.4, 79.4, 58.3, 82.4),
    (6, "A_adv"): (1.0, 3.6, 18.2, 19.8, 12.4, 21.8),
    (6, "A_adv-ens"): (0.9, 11.8, 5.0, 9.7, 3.4, 13.7),
    (12, "A_adv"): (0.7, 3.8, 15.5, 13.5, 9.5, 15.2),
    (12, "A_adv-ens"): (0.7, 6.0, 3.9, 6.2, 2.9, 7.0),
}
# white-box FGSM vs RAND+FGSM error (%)
PAPER_WB = {"A": (71.4, 75.3), "A_adv": (3.6, 34.1), "B": (84.6, 86.2)}
T_ERR = "Error rates (%), eps 0.3: white-box FGSM and attacks transferred from held-out B"
T_WB = "White-box FGSM vs RAND+FGSM error (%)"
T_ORDER = "Orderings (differences in points; ours must be >= 0)"


@dataclass(frozen=True)
class Budget:
    train_n: int | None  # None: all 60,000
    test_n: int
    plain_epochs: int
    adv_epochs: tuple[int, int]  # the paper's 6- and 12-epoch rows
    cw_steps: int


FULL = Budget(None, 10_000, 6, (6, 12), 100)
QUICK = Budget(8_000, 500, 1, (1, 2), 20)


def black_box_attacks(cw_steps: int, seed: int = 0) -> dict[str, Attack]:
    """The transferred attacks, crafted on B: FGSM, I-FGSM (10 steps of eps/10), RAND+FGSM
    (alpha 0.05) and CW_B. The paper's CW_B is an L∞-bounded variant of Carlini & Wagner's
    attack; our reading: ``cw_steps`` sign-gradient steps of ``2.5·eps/cw_steps`` (Madry et
    al.'s step rule) on the CW margin loss inside the eps-ball, no random start."""
    return {
        "FGSM_B": FGSM(eps=EPS),
        "I-FGSM_B": BIM(eps=EPS, steps=10, step_size=EPS / 10),
        "RAND+FGSM_B": RandFGSM(eps=EPS, alpha=ALPHA, seed=seed),
        "CW_B": PGD(
            eps=EPS,
            steps=cw_steps,
            step_size=2.5 * EPS / cw_steps,
            random_start=False,
            loss="margin",
        ),
    }


def white_box_error(attack: Attack, model: Classifier, x: Tensor, y: Tensor) -> float:
    out = attack_all(attack, model, x, y)
    return 100 * float((out.pred != y).float().mean())


@reproductions.register("tramer2018")
class Tramer2018(Reproduction):
    """Ensemble adversarial training on MNIST: A vs A_adv vs A_adv-ens, white-box and
    transferred from a held-out model B (error table and FGSM vs RAND+FGSM)."""

    name = "tramer2018"
    title = "Tramèr et al. 2018: ensemble adversarial training on MNIST (eps 0.3)"
    papers = (
        "Tramèr, Kurakin, Papernot, Goodfellow, Boneh & McDaniel, Ensemble Adversarial "
        "Training: Attacks and Defenses, ICLR 2018",
    )

    def run(self, ctx: Context) -> Outcome:
        b = QUICK if ctx.quick else FULL
        train_set = ctx.data("mnist", "train", b.train_n)
        size = f"n{len(train_set)}"
        test = ctx.data("mnist", "test", b.test_n).to(ctx.device)
        x, y = test.x, test.y

        def cfg(epochs: int) -> TrainConfig:
            return TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, seed=ctx.seed)

        plain = {
            m: ctx.model(
                f"tr18-{m}-{size}-e{b.plain_epochs}-s{ctx.seed}",
                f"tramer-{m}",
                train_set,
                cfg(b.plain_epochs),
            )
            for m in "abcd"
        }
        adv: dict[tuple[int, str], Classifier] = {}
        for paper_epochs, epochs in zip((6, 12), b.adv_epochs, strict=True):
            adv[paper_epochs, "A_adv"] = ctx.model(
                f"tr18-a-adv-e{epochs}-{size}-s{ctx.seed}",
                "tramer-a",
                train_set,
                cfg(epochs),
                build_recipe("fgsm-mix", {"eps": EPS, "alpha": 0.5}),
            )
            adv[paper_epochs, "A_adv-ens"] = ctx.model(
                f"tr18-a-ens-cd-e{epochs}-{size}-s{ctx.seed}",
                "tramer-a",
                train_set,
                cfg(epochs),
                build_recipe(
                    "ensemble",
                    {"sources": [plain["c"], plain["d"]], "eps": EPS, "alpha": 0.5},
                ),
            )
        rows: dict[tuple[int, str], Classifier] = {(6, "A"): plain["a"], **adv}

        ctx.log("[eval] crafting FGSM, I-FGSM, RAND+FGSM and CW on held-out B")
        crafted = {  # finished batches stay in the cache: a killed run resumes there
            k: ctx.attacked(
                f"tr18-{size}-s{ctx.seed}-{k.lower()}-on-b-n{len(x)}",
                a,
                plain["b"],
                x,
                y,
                batch=500,
            ).x_adv
            for k, a in black_box_attacks(b.cw_steps, ctx.seed).items()
        }
        ours: dict[tuple[int, str], dict[str, float]] = {}
        for key, model in rows.items():
            ctx.log(f"[eval] {key[1]} ({key[0]} epochs)")
            vals = {
                "clean": error_pct(model, x, y),
                "FGSM": white_box_error(FGSM(eps=EPS), model, x, y),
            }
            vals.update({k: error_pct(model, xa, y) for k, xa in crafted.items()})
            ours[key] = vals

        cells: list[Cell] = []
        for key, paper in PAPER.items():
            epochs = b.plain_epochs if key[1] == "A" else b.adv_epochs[0 if key[0] == 6 else 1]
            row = f"{key[1]} ({key[0]} epochs)" if key[1] != "A" else "A"
            note = f"trained {epochs} epoch(s)" if ctx.quick else ""
            for col, pv in zip(COLUMNS, paper, strict=True):
                tol = 1.0 if col == "clean" else 5.0
                cells.append(Cell(T_ERR, row, col, pv, ours[key][col], tolerance=tol, note=note))

        rand = RandFGSM(eps=EPS, alpha=ALPHA, seed=ctx.seed)
        wb_models = {"A": plain["a"], "A_adv": adv[6, "A_adv"], "B": plain["b"]}
        wb: dict[str, tuple[float, float]] = {}
        for m, model in wb_models.items():
            wb[m] = (
                white_box_error(FGSM(eps=EPS), model, x, y),
                white_box_error(rand, model, x, y),
            )
            for col, pv, ov in zip(("FGSM", "RAND+FGSM"), PAPER_WB[m], wb[m], strict=True):
                cells.append(Cell(T_WB, m, col, pv, ov, tolerance=5.0))

        cells += self._orderings(ours, wb)
        notes = [
            "A_adv: advlab's fgsm-mix recipe (alpha 0.5: half clean, half FGSM loss, eps 0.3, "
            "crafted on the current weights every batch). A_adv-ens: the ensemble recipe, "
            "alpha 0.5, FGSM eps 0.3 crafted in rotation on the current model and on static, "
            "pre-trained models C and D (B is held out as the black-box source, as in the paper).",
            "I-FGSM_B: 10 steps of eps/10. RAND+FGSM: alpha 0.05 random sign step, then FGSM "
            "of eps - alpha. CW_B: the paper's L∞-bounded CW variant read as sign-gradient "
            f"steps ({b.cw_steps} steps of 2.5·eps/steps, no random start) on the CW margin loss "
            "(advlab pgd, loss='margin'); all crafted once on B and scored on every model.",
            "Training: Adam lr 1e-3, batch 64 (the paper's), cosine schedule; plain models "
            f"{b.plain_epochs} epoch(s), adversarial models {b.adv_epochs[0]} and "
            f"{b.adv_epochs[1]} epoch(s) for the paper's 6- and 12-epoch rows. Model A of the "
            "table is the plain 6-epoch model.",
            "advlab clips every adversarial input to [0, 1].",
        ]
        if ctx.quick:
            notes.append(
                f"Quick mode: {b.train_n} training images, {b.test_n} test images, the epochs "
                "above, CW_B with fewer steps; clean errors and therefore every column are far "
                "above the paper's, so compare the orderings, not the cells."
            )
        config = {"eps": EPS, "budget": vars(b), "test_n": len(test), "train_n": len(train_set)}
        return Outcome(cells, notes, [], config)

    @staticmethod
    def _orderings(
        ours: dict[tuple[int, str], dict[str, float]], wb: dict[str, tuple[float, float]]
    ) -> list[Cell]:
        cells: list[Cell] = []
        for e in (6, 12):
            for col in BLACK_BOX:
                a, ens, advt = ours[6, "A"][col], ours[e, "A_adv-ens"][col], ours[e, "A_adv"][col]
                pa, pens, padv = PAPER[6, "A"], PAPER[e, "A_adv-ens"], PAPER[e, "A_adv"]
                i = COLUMNS.index(col)
                cells.append(
                    order_cell(
                        T_ORDER, f"A − A_adv-ens ({e} epochs)", col, pa[i] - pens[i], a - ens
                    )
                )
                cells.append(
                    order_cell(
                        T_ORDER,
                        f"A_adv − A_adv-ens ({e} epochs)",
                        col,
                        padv[i] - pens[i],
                        advt - ens,
                    )
                )
            i = COLUMNS.index("FGSM")
            cells.append(
                order_cell(
                    T_ORDER,
                    f"A_adv-ens − A_adv ({e} epochs)",
                    "FGSM (white-box)",
                    PAPER[e, "A_adv-ens"][i] - PAPER[e, "A_adv"][i],
                    ours[e, "A_adv-ens"]["FGSM"] - ours[e, "A_adv"]["FGSM"],
                )
            )
        for m, (pf, pr) in PAPER_WB.items():
            cells.append(
                order_cell(
                    T_ORDER, f"{m}: RAND+FGSM − FGSM", "white-box", pr - pf, wb[m][1] - wb[m][0]
                )
            )
        return cells
