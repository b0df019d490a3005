"""Adversarial-training throughput: advlab's ``train`` + recipe vs hand-written PyTorch loops.

Same model (a zoo preset in a Classifier, same initial weights), same data (MNIST found by
``_models.load_split``; the bundled digits, else synthetic data, when it is missing), same batch
size, optimizer and learning rate. Prints images/s, median of ``--repeats`` interleaved runs
after a warm-up, for two pairs:

  * PGD-AT   a hand-written Madry et al. loop: per batch, k-step Linf PGD from a uniform random
             start (sign step, clamp to the eps-ball and [0, 1], model in eval mode), then the
             cross-entropy update on the PGD examples (train mode)
             vs ``train(..., recipe=build_recipe("pgd", steps=k))``
  * FGSM-RS  the same loop with one step of 1.25·eps (Wong et al. 2020)
             vs ``train(..., recipe=build_recipe("fast"))``

and the ratio advlab / hand-written (goal: >= 0.95): the median over rounds of each round's
ratio (a round runs every loop once, in alternating order, so slow drifts of a shared machine
cancel), and the ratio of the best runs. Both sides run one epoch over the same images with a
constant learning rate; the hand-written loops log their loss every batch like a careful
user's loop, and take input gradients with ``torch.autograd.grad`` (no parameter gradients
while crafting).

    python benchmarks/at_throughput.py --model lenet --threads 1 --limit 2048 --steps 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from _models import load_split
from advlab import data, models
from advlab.defenses.training import TrainConfig, build_recipe, train
from advlab.models import Classifier

os.environ.setdefault("ADVLAB_PROGRESS", "0")

Settings = argparse.Namespace
Loop = Callable[[Settings, data.TensorData], float]


def _load(limit: int, data_dir: str | None) -> data.TensorData:
    """MNIST (or the bundled digits) training images; synthetic 28x28 data when neither loads."""
    try:
        d = load_split("train", data_dir)
    except Exception as e:  # the digits need scikit-learn's bundled files
        print(f"no MNIST or digits ({e}); using synthetic data")
        d = data.load("synthetic", "train", n=max(limit, 1024), input_shape=(1, 28, 28))
    return d.subset(slice(0, limit)) if limit else d


def _fresh(args: Settings, d: data.TensorData) -> Classifier:
    torch.manual_seed(0)  # the same initial weights for every loop
    clf = models.build(args.model, input_shape=d.input_shape, num_classes=d.num_classes)
    return clf.to(args.device)


def _optimizer(args: Settings, clf: Classifier) -> torch.optim.Optimizer:
    if args.optimizer == "sgd":
        return torch.optim.SGD(clf.parameters(), lr=args.lr, momentum=0.9)
    return torch.optim.Adam(clf.parameters(), lr=args.lr)


def _pgd(clf: Classifier, x: Tensor, y: Tensor, eps: float, step: float, k: int) -> Tensor:
    """Hand-written Linf PGD ``(N, ...)``: uniform random start, ``k`` sign steps of ``step``,
    each followed by a clamp onto the eps-ball around ``x`` and [0, 1]."""
    lo, hi = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    xa = torch.min(torch.max(x + torch.empty_like(x).uniform_(-eps, eps), lo), hi)
    for _ in range(k):
        xa.requires_grad_(True)
        loss = F.cross_entropy(clf.logits(xa, check=False), y)
        (grad,) = torch.autograd.grad(loss, xa)
        xa = torch.min(torch.max(xa.detach() + step * grad.sign(), lo), hi)
    return xa


def _hand(args: Settings, d: data.TensorData, k: int, step: float) -> float:
    """Images/s of the hand-written adversarial-training loop (``k`` steps of ``step``)."""
    clf = _fresh(args, d)
    t0 = args.clock()
    opt = _optimizer(args, clf)
    x, y = d.x.to(args.device), d.y.to(args.device)
    perm = torch.randperm(len(x), device=args.device)
    for i in range(0, len(x), args.batch_size):
        idx = perm[i : i + args.batch_size]
        xb, yb = x[idx], y[idx]
        clf.eval()
        xa = _pgd(clf, xb, yb, args.eps, step, k)
        clf.train()
        logits = clf.logits(xa, check=False)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.detach())  # a hand-written loop logs its loss too
    _sync(args.device)
    return len(x) / (args.clock() - t0)


def _advlab(args: Settings, d: data.TensorData, recipe: str, kwargs: dict[str, object]) -> float:
    """Images/s of ``advlab.defenses.training.train`` with ``recipe`` (one epoch, no validation)."""
    clf = _fresh(args, d)
    cfg = TrainConfig(
        epochs=1,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        schedule="none",
        device=str(args.device),
        amp=False,
    )
    t0 = args.clock()
    train(clf, d, None, cfg, recipe=build_recipe(recipe, {"eps": args.eps, **kwargs}))
    _sync(args.device)
    return len(d) / (args.clock() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loops(args: Settings) -> dict[str, Loop]:
    step = args.step_size if args.step_size is not None else 2.5 * args.eps / args.steps
    alpha = 1.25 * args.eps  # Wong et al.'s FGSM-RS step, the fast recipe's default
    pgd = {"steps": args.steps, "step_size": step}
    return {
        "hand PGD-AT": lambda a, d: _hand(a, d, args.steps, step),
        "advlab pgd": lambda a, d: _advlab(a, d, "pgd", pgd),
        "hand FGSM-RS": lambda a, d: _hand(a, d, 1, alpha),
        "advlab fast": lambda a, d: _advlab(a, d, "fast", {}),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="lenet", choices=["lenet", "madry-mnist"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--limit", type=int, default=2048, help="training images (0 = all)")
    p.add_argument("--steps", type=int, default=10, help="PGD steps k of both PGD-AT loops")
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--step-size", type=float, default=None, help="PGD step (2.5·eps/k)")
    p.add_argument("--optimizer", default="adam", choices=["sgd", "adam"])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    p.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="wall clock, or this process's CPU time (CPU device only; steadier when shared)",
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from advlab.utils import resolve_device

    args.device = resolve_device(args.device)
    if args.clock == "cpu" and args.device.type != "cpu":
        raise SystemExit("--clock cpu measures CPU time: use it with --device cpu")
    args.clock = time.process_time if args.clock == "cpu" else time.perf_counter
    d = _load(args.limit, args.data_dir)
    loops = _loops(args)
    load0 = os.getloadavg()
    warm = d.subset(slice(0, 2 * args.batch_size))
    for fn in loops.values():
        fn(args, warm)
    rates: dict[str, list[float]] = {k: [] for k in loops}
    for r in range(args.repeats):  # interleaved, so machine noise hits every loop alike
        for name in list(loops)[:: 1 if r % 2 == 0 else -1]:
            rates[name].append(loops[name](args, d))
    med = {k: statistics.median(v) for k, v in rates.items()}
    load1 = os.getloadavg()
    print(
        f"model {args.model}, {d.name} x{len(d)}, batch {args.batch_size}, {args.optimizer} "
        f"lr {args.lr}, eps {args.eps}, PGD steps {args.steps}, device {args.device}, "
        f"torch threads {torch.get_num_threads()}, median of {args.repeats}, "
        f"load average {load0[0]:.2f} -> {load1[0]:.2f}"
    )
    for k, v in med.items():
        runs = ", ".join(f"{r:.0f}" for r in rates[k])
        print(f"  {k:<13} {v:9.1f} images/s   (runs: {runs})")
    for ours, hand in (("advlab pgd", "hand PGD-AT"), ("advlab fast", "hand FGSM-RS")):
        per_round = [a / b for a, b in zip(rates[ours], rates[hand], strict=True)]
        print(
            f"  ratio {ours:<11} / {hand:<12} {statistics.median(per_round):.3f} "
            f"(per-round median; best runs {max(rates[ours]) / max(rates[hand]):.3f})"
        )


if __name__ == "__main__":
    main()
