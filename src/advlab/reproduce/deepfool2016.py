"""``deepfool2016``: DeepFool's mean relative robustness on an MNIST LeNet, against the FGSM
perturbation of the smallest size that fools each image (Moosavi-Dezfooli, Fawzi & Frossard
2016, Table 1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from advlab.attacks import FGSM, DeepFool
from advlab.models import Classifier
from advlab.reproduce._mnist import correct_images, lenet, lenet_note, timed
from advlab.reproduce.base import Cell, Context, Outcome, Reproduction, reproductions

# the paper's Table 1, LeNet on MNIST
PAPER_RHO_DEEPFOOL = 0.20
PAPER_RHO_FGSM = 1.0
T_RHO = "Mean relative robustness rho = mean ||r||_2 / ||x||_2, MNIST LeNet (Table 1)"
T_COST = "DeepFool success and cost"
GRID = 255  # FGSM line search: eps = k/255, k = 1..255, then bisection in the bracket
BISECT = 12
BATCH = 500


@dataclass
class FGSMSearch:
    """Per image: the smallest FGSM eps that fools it (``inf`` if none <= 1), and the L2 norm of
    the clipped perturbation at that eps."""

    eps: Tensor  # (N,)
    l2: Tensor  # (N,)

    @property
    def fooled(self) -> Tensor:
        return torch.isfinite(self.eps)


def fgsm_min_eps(model: Classifier, x: Tensor, y: Tensor) -> FGSMSearch:
    """Line search on FGSM's eps per image, as the paper measured FGSM's needed size.

    FGSM's direction ``s = sign ∇J(x, y)`` does not depend on eps, so one advlab FGSM call at
    eps 1 gives it: ``d = clip(x + s) − x`` has ``sign(d) = s`` wherever the box lets a pixel
    move, and ``clip(x + eps·sign(d)) = clip(x + eps·s)`` for every eps (a pixel whose
    sign is lost sits at the bound it is pushed against). Then eps = k/255 (k = 1..255) is
    scanned with forward passes only, and the first fooling eps is refined by bisection in
    ``((k−1)/255, k/255]``. Perturbations are clipped to [0, 1] (the paper's are not).
    """
    parts = [
        FGSM(eps=1.0)(model, x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)
    ]
    s = torch.cat([p.x_adv for p in parts]).sub(x).sign()

    def fooled(idx: Tensor, eps: Tensor) -> Tensor:  # (m,) bool for images idx at eps (m,)
        xa = (x[idx] + eps.view(-1, 1, 1, 1) * s[idx]).clamp(0.0, 1.0)
        return model.predict(xa) != y[idx]

    hi = torch.full((x.shape[0],), float("inf"), device=x.device)
    for k in range(1, GRID + 1):
        todo = torch.isinf(hi).nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        eps = torch.full((todo.numel(),), k / GRID, device=x.device)
        hit = fooled(todo, eps)
        hi[todo[hit]] = k / GRID
    idx = torch.isfinite(hi).nonzero().squeeze(1)
    top = hi[idx]
    low = top - 1 / GRID
    for _ in range(BISECT):
        mid = (low + top) / 2
        hit = fooled(idx, mid)
        top = torch.where(hit, mid, top)
        low = torch.where(hit, low, mid)
    hi[idx] = top
    size = torch.where(torch.isfinite(hi), hi, torch.zeros_like(hi)).view(-1, 1, 1, 1)
    l2 = ((x + size * s).clamp(0.0, 1.0) - x).flatten(1).norm(dim=1)
    return FGSMSearch(hi, l2)


def deepfool_run(model: Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, float]:
    """DeepFool L2 (the paper's overshoot 0.02, at most 50 iterations): per-image success
    ``(N,)``, L2 norm ``(N,)`` and the wall time in seconds."""
    attack = DeepFool(norm="l2", steps=50, overshoot=0.02)

    def go() -> list[tuple[Tensor, Tensor]]:
        out = []
        for i in range(0, len(x), BATCH):
            r = attack(model, x[i : i + BATCH], y[i : i + BATCH])
            out.append((r.success, r.norms))
        return out

    parts, seconds = timed(go)
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), seconds


@reproductions.register("deepfool2016")
class DeepFool2016(Reproduction):
    """Moosavi-Dezfooli 2016: DeepFool's relative robustness rho vs FGSM's (MNIST LeNet).

    DeepFool's rho; FGSM's rho from a per-image eps line search; their ratio; DeepFool's
    success rate and time per image."""

    name = "deepfool2016"
    title = "Moosavi-Dezfooli, Fawzi & Frossard 2016: DeepFool's robustness measure on MNIST"
    papers = (
        "Moosavi-Dezfooli, Fawzi & Frossard, DeepFool: a simple and accurate method to fool "
        "deep neural networks, CVPR 2016",
    )

    def run(self, ctx: Context) -> Outcome:
        n = 1_000 if ctx.quick else 10_000
        model = lenet(ctx)
        images = correct_images(ctx, model, n)
        x, y = images.x, images.y
        norm_x = x.flatten(1).norm(dim=1)
        ctx.log(f"[attack] DeepFool on {len(x)} images")
        ok, l2, seconds = deepfool_run(model, x, y)
        rho_df = float((l2[ok] / norm_x[ok]).mean())
        ctx.log("[attack] FGSM eps line search")
        fg, fg_seconds = timed(lambda: fgsm_min_eps(model, x, y))
        rho_fgsm = float((fg.l2[fg.fooled] / norm_x[fg.fooled]).mean())
        ratio = rho_fgsm / rho_df
        n_fg = int(fg.fooled.sum())
        where = (
            f"{len(x)} correctly classified MNIST test images (clean accuracy "
            f"{100 * images.clean_accuracy:.2f}% on the {images.tested:,} tested)"
        )
        cells = [
            Cell(
                T_RHO,
                "DeepFool (L2, overshoot 0.02)",
                "rho",
                PAPER_RHO_DEEPFOOL,
                rho_df,
                unit="rate",
                tolerance=0.05,
                note=f"mean over the {int(ok.sum())} successes; our LeNet and training differ "
                "from the paper's",
            ),
            Cell(
                T_RHO,
                "FGSM, smallest fooling eps per image",
                "rho",
                PAPER_RHO_FGSM,
                rho_fgsm,
                unit="rate",
                note=f"{n_fg} of {len(x)} images fooled at some eps <= 1 (mean over those; "
                f"median eps {float(fg.eps[fg.fooled].median()):.3f}); perturbation clipped "
                "to [0, 1], which drops the sign steps that would leave the box (the paper's "
                "were not clipped)",
            ),
            Cell(
                T_RHO,
                "FGSM / DeepFool",
                "rho ratio",
                PAPER_RHO_FGSM / PAPER_RHO_DEEPFOOL,
                ratio,
                unit="x",
                note="the paper's finding: FGSM needs a several times larger perturbation",
            ),
            Cell(
                T_COST,
                "DeepFool",
                "success rate",
                None,
                100 * float(ok.float().mean()),
                note="within 50 iterations; the paper reports none (DeepFool converges)",
            ),
            Cell(
                T_COST,
                "DeepFool",
                "ms per image",
                None,
                1000 * seconds / len(x),
                unit="ms",
                note=f"batches of {BATCH} on {ctx.device}; the paper timed single images on "
                "its own hardware, not comparable",
            ),
            Cell(
                T_COST,
                "FGSM line search",
                "ms per image",
                None,
                1000 * fg_seconds / len(x),
                unit="ms",
                note=f"one gradient, up to {GRID} + {BISECT} forward passes per image",
            ),
        ]
        notes = [
            f"Images: {where}. rho uses ||x||_2 of the image in [0, 1] pixels.",
            lenet_note(ctx),
            "DeepFool: advlab's deepfool (L2, 10 candidate classes, at most 50 iterations, "
            "overshoot 0.02 as in the paper), clipped to the [0, 1] box (the paper's is not).",
            "FGSM's needed size: FGSM's direction is fixed, so eps is scanned in steps of "
            f"1/255 and refined by {BISECT} bisection steps; rho is the L2 norm of the clipped "
            "FGSM perturbation at that eps over ||x||_2.",
        ]
        if ctx.quick:
            notes.append("Quick mode: 1,000 test images and the quick LeNet; protocol unchanged.")
        config = {"n": len(x), "grid": GRID, "bisect": BISECT, "overshoot": 0.02, "steps": 50}
        return Outcome(cells, notes, [], config)
