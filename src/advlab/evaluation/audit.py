"""The gradient-masking audit (Carlini et al. 2019, "On Evaluating Adversarial Robustness", §5):
cheap probe attacks on a subset of the correctly classified samples, compared with what the
suite found, each comparison raising a named flag (docs/flags.md) when the numbers look like
gradient masking or an unconverged evaluation.

Probes (all at the largest evaluated eps unless said otherwise):

* ``single``: FGSM (FGM for L2) and ``pgd-20``: flag ``single-step-beats-iterative`` when the
  single-step attack leaves lower accuracy than the iterative one;
* ``strong``: PGD-100 (step eps/40, random start) once with the cross-entropy and once with the
  CW margin loss: flag ``more-iterations-help`` when it breaks samples the suite left robust;
* ``square``: Square with 1,000 queries (no gradients; images only): flag
  ``blackbox-beats-whitebox`` when it breaks samples that both the suite's gradient attacks and
  the ``strong`` probe left robust (likewise ``transfer-beats-whitebox`` for transfer inputs);
* ``noise``: 10 draws of random noise of size eps (random signs for L∞, random directions for
  L2): flag ``noise-beats-attack`` when noise breaks samples the suite left robust;
* ``large-eps``: PGD-50 at an eps covering the whole input box: flag ``large-eps-not-broken``
  when accuracy stays above 5%;
* ``loss-path``: the mean cross-entropy along a 20-step steepest-ascent path from the clean input:
  flag ``loss-not-increasing`` when it does not rise.

A comparison counts samples that the probe breaks and the reference leaves robust; it flags when
that count exceeds both 2 samples and 1% of the probe set (random noise in a sound evaluation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from advlab.attacks import Attack, attack_mode, attacks, get_norm
from advlab.evaluation.flags import Flag
from advlab.models.classifier import Classifier

TOLERANCE = 0.01  # fraction of the probe set
MIN_COUNT = 2  # and more than this many samples
WHITE = "every white-box attack (the suite's and PGD-100 with CE and margin losses)"


@dataclass
class AuditInput:
    """Probe samples (on the model's device): ``x``, ``y`` correctly classified; ``suite_broken``
    and ``whitebox_broken``: which the suite (all attacks / gradient attacks only) broke at
    ``eps``; ``transfer_broken``: broken by transfer from other models, if any were given."""

    x: Tensor
    y: Tensor
    suite_broken: Tensor
    whitebox_broken: Tensor
    eps: float
    transfer_broken: Tensor | None = None


def _broken(model: Classifier, atk: Attack, x: Tensor, y: Tensor, batch_size: int) -> Tensor:
    out = []
    for i in range(0, x.shape[0], batch_size):
        res = atk(model, x[i : i + batch_size], y[i : i + batch_size])
        out.append(res.logits_adv.argmax(1) != y[i : i + batch_size])
    return torch.cat(out)


def _noise_broken(model: Classifier, norm: str, a: AuditInput, draws: int, seed: int) -> Tensor:
    gen = torch.Generator(device=a.x.device).manual_seed(seed)
    lp = get_norm(norm)
    low = model.low.to(a.x.device, a.x.dtype)
    high = model.high.to(a.x.device, a.x.dtype)
    broken = torch.zeros_like(a.y, dtype=torch.bool)
    for _ in range(draws):
        if norm == "linf":
            d = (torch.randint(0, 2, a.x.shape, generator=gen, device=a.x.device) * 2 - 1) * a.eps
            d = d.to(a.x.dtype)
        else:
            d = torch.randn(a.x.shape, generator=gen, device=a.x.device, dtype=a.x.dtype)
            d = lp.project(d * 1e6, a.eps)
        xn = torch.maximum(torch.minimum(a.x + d, high), low)
        with torch.no_grad():
            broken |= model.logits(xn, check=False).argmax(1) != a.y
    return broken


def _loss_path(model: Classifier, norm: str, a: AuditInput, steps: int = 20) -> list[float]:
    """Mean cross-entropy at each point of a steepest-ascent path (the norm's direction, no
    random start, step 2.5·eps/steps, projected onto the eps-ball and the bounds)."""
    lp = get_norm(norm)
    step = 2.5 * a.eps / steps
    low = model.low.to(a.x.device, a.x.dtype)
    high = model.high.to(a.x.device, a.x.dtype)
    xa = a.x.clone()
    path = []
    with attack_mode(model):
        for i in range(steps + 1):
            with torch.enable_grad():
                xg = xa.detach().requires_grad_(True)
                logits = model.logits(xg, check=False).float()
                loss = torch.nn.functional.cross_entropy(logits, a.y)
                (g,) = torch.autograd.grad(loss, xg)
            path.append(float(loss.detach()))
            if i == steps:
                break
            xa = a.x + lp.project(xa + step * lp.direction(g) - a.x, a.eps)
            xa = torch.maximum(torch.minimum(xa, high), low)
    return path


def _compare(
    code: str, probe: Tensor, reference: Tensor, what: str, n: int, ref: str = "the suite"
) -> Flag | None:
    count = int((probe & ~reference).sum())
    if count > MIN_COUNT and count > TOLERANCE * n:
        return Flag(
            code,
            f"{what} broke {count} of {n} probe samples ({count / n:.1%}) that {ref} left robust",
            {"count": count, "n": n},
        )
    return None


def run_audit(
    model: Classifier,
    norm: str,
    a: AuditInput,
    *,
    seed: int = 0,
    batch_size: int = 500,
    square_queries: int = 1000,
) -> tuple[dict[str, Any], list[Flag]]:
    """Run the probes on ``a`` and return ``({"n", "eps", "probes": {name: accuracy}}, flags)``."""
    n = int(a.y.shape[0])
    if n == 0:
        return {"n": 0, "eps": a.eps, "probes": {}}, []
    acc: dict[str, float] = {}
    flags: list[Flag] = []

    def run(name: str, attack: str, **kw: Any) -> Tensor:
        broken = _broken(
            model, attacks.build(attack, norm=norm, seed=seed, **kw), a.x, a.y, batch_size
        )
        acc[name] = 1.0 - float(broken.float().mean())
        return broken

    single_name = "fgsm" if norm == "linf" else "fgm"
    run(single_name, single_name, eps=a.eps)
    run("pgd-20", "pgd", eps=a.eps, steps=20, step_size=2.5 * a.eps / 20)
    if acc[single_name] + max(TOLERANCE, MIN_COUNT / n) < acc["pgd-20"]:
        flags.append(
            Flag(
                "single-step-beats-iterative",
                f"{single_name} leaves accuracy {acc[single_name]:.1%} but PGD-20 "
                f"{acc['pgd-20']:.1%} at eps {a.eps:g}: the iterative attack is stuck",
                {single_name: acc[single_name], "pgd-20": acc["pgd-20"], "eps": a.eps},
            )
        )
    strong = run("pgd-100-ce", "pgd", eps=a.eps, steps=100, step_size=a.eps / 40, early_stop=True)
    strong |= run(
        "pgd-100-margin",
        "pgd",
        eps=a.eps,
        steps=100,
        step_size=a.eps / 40,
        loss="margin",
        early_stop=True,
    )
    acc["pgd-100 (ce+margin)"] = 1.0 - float(strong.float().mean())
    flag = _compare(
        "more-iterations-help", strong, a.suite_broken, "PGD-100 (CE and margin losses)", n
    )
    flags += [flag] if flag else []
    if "square" in attacks.names() and a.x.ndim == 4:  # Square needs images
        sq = run("square", "square", eps=a.eps, n_queries=square_queries)
        best_whitebox = a.whitebox_broken | strong
        flag = _compare(
            "blackbox-beats-whitebox", sq, best_whitebox, "Square (black-box)", n, WHITE
        )
        flags += [flag] if flag else []
    noise = _noise_broken(model, norm, a, 10, seed)
    acc["noise"] = 1.0 - float(noise.float().mean())
    flag = _compare("noise-beats-attack", noise, a.suite_broken, "random noise of size eps", n)
    flags += [flag] if flag else []
    if a.transfer_broken is not None:
        flag = _compare(
            "transfer-beats-whitebox",
            a.transfer_broken,
            a.whitebox_broken | strong,
            "transfer",
            n,
            WHITE,
        )
        flags += [flag] if flag else []
    span = float((model.high - model.low).max())
    big = span if norm == "linf" else span * math.sqrt(a.x[0].numel())
    run("pgd-50@large-eps", "pgd", eps=big, steps=50, step_size=2.5 * big / 50)
    if acc["pgd-50@large-eps"] > 0.05:
        flags.append(
            Flag(
                "large-eps-not-broken",
                f"PGD-50 at eps {big:g} (the whole input range) leaves accuracy "
                f"{acc['pgd-50@large-eps']:.1%}; any input can be turned into any other there",
                {"eps": big, "accuracy": acc["pgd-50@large-eps"]},
            )
        )
    path = _loss_path(model, norm, a)
    if not path[-1] > path[0] * (1 + 1e-3) + 1e-6:
        flags.append(
            Flag(
                "loss-not-increasing",
                f"the mean cross-entropy along a 20-step steepest-ascent path goes from "
                f"{path[0]:.4g} to {path[-1]:.4g}: the gradient does not lead uphill",
                {"loss_path": path},
            )
        )
    return {"n": n, "eps": a.eps, "probes": acc}, flags
