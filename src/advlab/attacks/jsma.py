"""JSMA [``jsma``] (Papernot et al., "The Limitations of Deep Learning in Adversarial Settings",
EuroS&P 2016): the Jacobian-based saliency map attack.

A targeted, L0 (few changed features) attack. Each iteration computes the Jacobian of the
model's outputs at the current point and, over pairs of features ``(p, q)`` of the search
domain, the sums ``α = Σ_{i∈{p,q}} ∂F_t/∂x_i`` (target class) and
``β = Σ_{i∈{p,q}} Σ_{j≠t} ∂F_j/∂x_i`` (all other classes). With ``θ = +1`` (increase features)
it picks the pair with ``α > 0``, ``β < 0`` that maximizes ``α·|β|``; with ``θ = -1``
(decrease) the pair with ``α < 0``, ``β > 0`` maximizing ``|α|·β``. Both features move by ``θ``
(clipped to the bounds) and leave the search domain. It stops when the target is reached, when
``γ`` (the maximum distortion, a fraction of the features) would be exceeded, or when no pair
satisfies the sign conditions (the paper's algorithm then has nothing to pick; the sample keeps
its last iterate and counts as a failure unless it is already at the target).

Choices, stated:

* ``F`` is the softmax output by default (``saliency="probs"``), as in the paper (and in the
  defensive-distillation experiments that use it); then ``Σ_j ∂F_j = 0`` and ``β = -α``.
  ``saliency="logits"`` uses the Jacobian of the logits instead, as CleverHans and later work
  (Carlini & Wagner's JSMA-Z) do; it does not vanish when the softmax saturates. On the 8x8
  digits LeNet (first 200 test images, random targets, γ = 0.145) the paper's form reaches the
  target on 68% of the images, the logits form on 35%.
* Search domain: features not saturated in the direction of ``θ`` (``x < high`` for ``θ = +1``,
  ``x > low`` for ``θ = -1``) and not modified yet. In ``[0, 1]`` bounds a ±1 step saturates a
  feature, so this is the paper's domain; with wider bounds it keeps every feature changed at
  most once (CleverHans does the same), so at most ``2·⌊γ·F/2⌋ ≤ γ·F`` features change.
* ``target``: JSMA is targeted; without ``target=`` each sample gets a uniformly random class
  other than its label (``default_target = "random"``, drawn from the attack's seeded
  generator). The paper attacks every sample towards each of the other classes; a random
  target is an unbiased sample of that protocol. Pass ``target=`` for specific classes.
* A feature is one element of the input (one channel of one pixel for colour images).

Defaults from the paper's MNIST experiments: ``θ = +1``, ``γ = 0.145``.

Memory: the pairwise map is ``(n, F, F)`` (614,656 entries per MNIST image), so it is built in
chunks of samples holding at most ``PAIR_BUDGET`` entries each (about 2^23; a few tensors of that
size live at once).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from advlab.attacks.base import MinNormAttack
from advlab.attacks.jacobian import jacobian, retire
from advlab.attacks.problem import Problem
from advlab.attacks.registry import attacks

PAIR_BUDGET = 1 << 23  # entries of the (chunk, F, F) pairwise map built at once
SALIENCY = ("probs", "logits")


def best_pairs(alpha: Tensor, beta: Tensor, domain: Tensor, theta: float) -> tuple[Tensor, Tensor]:
    """The most salient admissible feature pair per sample.

    ``alpha``, ``beta``: ``(n, F)`` per-feature target / other-classes derivatives;
    ``domain``: ``(n, F)`` bool, features that may still change. Returns ``pairs (n, 2)`` (int64,
    ``p < q``) and ``found (n,)`` (bool: some pair satisfies the sign conditions).
    """
    n, nf = alpha.shape
    chunk = max(1, PAIR_BUDGET // (nf * nf))
    pairs = torch.zeros(n, 2, dtype=torch.long, device=alpha.device)
    found = torch.zeros(n, dtype=torch.bool, device=alpha.device)
    for s in range(0, n, chunk):
        al, be, dom = alpha[s : s + chunk], beta[s : s + chunk], domain[s : s + chunk]
        a = al.unsqueeze(2) + al.unsqueeze(1)  # (c, F, F) α of every pair
        b = be.unsqueeze(2) + be.unsqueeze(1)  # (c, F, F) β of every pair
        ok = (a > 0) & (b < 0) if theta > 0 else (a < 0) & (b > 0)
        ok &= dom.unsqueeze(2) & dom.unsqueeze(1)
        score = a.mul_(b).neg_().masked_fill_(~ok, 0.0).triu_(1)  # (c, F, F) -α·β, p < q only
        val, flat = score.flatten(1).max(1)  # (c,)
        pairs[s : s + chunk, 0] = flat // nf
        pairs[s : s + chunk, 1] = flat % nf
        found[s : s + chunk] = val > 0
    return pairs, found


@attacks.register("jsma")
class JSMA(MinNormAttack):
    """Jacobian-based saliency map attack (Papernot et al. 2016); see the module docstring.

    Args:
        theta: ``+1`` (default, increase features) or ``-1`` (decrease them).
        gamma: maximum distortion, a fraction of the features in ``(0, 1]`` (default 0.145, the
            paper's MNIST setting); at most ``⌊γ·F/2⌋`` iterations of two features each.
        saliency: ``"probs"`` (default: softmax outputs, the paper's form) or ``"logits"``.
        norm: ``"l0"`` only (changed features). seed: seeds the random default target.

    Each iteration costs one forward pass and 1 (``"probs"``) or 2 (``"logits"``) input
    gradients per active sample: only ``∂F_t`` and ``∂ Σ_{j≠t} F_j`` are needed, not all ``K``
    rows of the Jacobian.
    """

    norms: ClassVar[tuple[str, ...]] = ("l0",)
    default_target: ClassVar[str | None] = "random"

    def __init__(
        self,
        *,
        theta: float = 1.0,
        gamma: float = 0.145,
        saliency: str = "probs",
        norm: str = "l0",
        seed: int | None = 0,
    ) -> None:
        super().__init__(norm=norm, seed=seed)
        if isinstance(theta, bool) or not isinstance(theta, int | float) or abs(theta) != 1:
            raise ValueError(f"theta must be +1 (increase) or -1 (decrease); got {theta!r}")
        if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not 0 < gamma <= 1:
            raise ValueError(f"gamma must be a fraction of the features in (0, 1]; got {gamma!r}")
        if saliency not in SALIENCY:
            raise ValueError(f"saliency must be 'probs' or 'logits'; got {saliency!r}")
        self.theta = float(theta)
        self.gamma = float(gamma)
        self.saliency = saliency

    def saliency_grads(self, p: Problem, xa: Tensor, idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Logits ``(n, K)`` and ``α``, ``β`` ``(n, F)`` at ``xa``: the input gradients of the
        target output and of the sum of the other outputs (``β = -α`` for probabilities, which
        sum to 1). One forward pass and 1 (probs) or 2 (logits) gradients per sample."""
        _, t = p.labels(idx)
        if t is None:  # unreachable: default_target makes every call targeted
            raise ValueError("jsma is targeted; pass target=")
        tc = t.view(-1, 1)

        def outputs(z: Tensor) -> Tensor:  # (n, K) -> (n, 1) or (n, 2)
            if self.saliency == "probs":
                return torch.softmax(z, 1).gather(1, tc)
            zt = z.gather(1, tc)
            return torch.cat([zt, z.sum(1, keepdim=True) - zt], 1)

        logits, _, jac = jacobian(p, xa, idx, outputs)
        jac = jac.flatten(2)  # (n, C, F)
        alpha = jac[:, 0]
        beta = -alpha if self.saliency == "probs" else jac[:, 1]
        return logits, alpha, beta

    def minimize(self, p: Problem, idx: Tensor) -> Tensor:
        x0 = p.x[idx]  # (n, ...)
        nf = x0[0].numel()
        iters = int(nf * self.gamma) // 2
        out = x0.clone()
        xa = x0.clone()
        free = torch.lt(x0, p.high) if self.theta > 0 else torch.gt(x0, p.low)
        dom = free.reshape(len(idx), nf)  # (n, F) features that may still change
        act = torch.arange(len(idx), device=x0.device)  # positions still being attacked
        for it in range(iters):
            logits, alpha, beta = self.saliency_grads(p, xa, idx[act])  # (n, K), (n, F) x2
            if it > 0:  # samples at the target are done (the clean point never is)
                done = p.is_adv(logits, idx[act])
                act, xa, dom, alpha, beta = retire(out, done, act, xa, dom, alpha, beta)
                if act.numel() == 0:
                    return out
            pairs, found = best_pairs(alpha, beta, dom, self.theta)  # (n, 2), (n,)
            act, xa, dom, pairs = retire(out, ~found, act, xa, dom, pairs)  # stuck: give up
            if act.numel() == 0:
                return out
            step = torch.full(pairs.shape, self.theta, dtype=xa.dtype, device=xa.device)
            flat = xa.reshape(len(act), nf).scatter_add(1, pairs, step)  # (n, F)
            xa = p.clip(flat.view_as(xa))
            dom = dom.scatter(1, pairs, False)
        out[act] = xa
        return out
