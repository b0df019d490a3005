"""Evaluation suite, strength and speed: advlab's ``standard`` suite vs torchattacks' AutoAttack.

Issue 5's targets, measured side by side in one run on the same models and the same first
``--n`` MNIST test images (eps 0.3, Linf):

* strength: ``advlab.evaluate(clf, (x, y), suite="standard", eps=0.3, audit=False)`` robust
  accuracy <= torchattacks ``AutoAttack(model, norm="Linf", eps=0.3, version="standard",
  n_classes=10, seed=0)`` robust accuracy + 0.3 points;
* speed: advlab's wall time >= 1.5x shorter than AutoAttack's, same device, same threads.

Models (``--models``): ``plain`` (LeNet trained normally, the cached model of
``attack_speed.py``), ``adv`` (LeNet PGD-trained with advlab's ``pgd`` recipe, see
``_models.recipe_trained_model``) and ``masked`` (the plain LeNet behind a non-differentiable
input quantization, ``round(x·(L−1))/(L−1)``: its input gradient is exactly zero, so only
Square, a score-based attack, can find anything).

AutoAttack's robust accuracy is computed here from its ``x_adv`` (an ``x_adv`` outside [0, 1] or
the eps-ball does not count as a success). torchattacks 3.5.1's ``AutoAttack`` builds APGD,
APGD-T and FAB with their class defaults, 10 steps, where the paper and the reference code use
100; ``--ta-paper`` adds a row with the same four torchattacks attacks at 100 steps
(``MultiAttack``, as AutoAttack itself does), the like-for-like budget of advlab's suite.

Also printed: each attack's time and cumulative accuracy (torchattacks' per attack, measured by
wrapping each sub-attack); the *floor*, the passes each library made (advlab's counters; for the
peer, images through the model with and without an input gradient) priced at bare forward and
forward+backward cost per image at the run's batch size (a lower bound: late cascade batches are
smaller); after the timed runs, advlab's audit (``audit=True``) on the ``adv`` and ``masked``
models (first ``--audit-n`` images, untimed) and the flags it raises. ``--quick-10k`` instead
times ``evaluate(..., suite="quick", eps=0.3)`` on 10,000 test images with ``madry-mnist``.

    python benchmarks/eval_suite.py --n 1000 --threads 1
    python benchmarks/eval_suite.py --n 1000 --threads 1 --ta-paper --models adv,masked
    python benchmarks/eval_suite.py --quick-10k --threads 1
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _models import load_split, recipe_trained_model, trained_model
from _peers import import_peer
from advlab import models
from advlab.attacks import attack_mode
from advlab.evaluation import RobustnessReport, evaluate
from advlab.utils import resolve_device

os.environ.setdefault("ADVLAB_PROGRESS", "0")  # no progress bars (read when a bar is made)
EPS = 0.3
CLOCK: Callable[[], float] = time.perf_counter  # --clock cpu: time.process_time
TOL = 1e-5  # float slack when checking bounds and the eps-ball
MODELS = ("plain", "adv", "masked")


# ---------------------------------------------------------------------------------- models
class Quantize(nn.Module):
    """``round(x·(levels−1))/(levels−1)`` on pixel values in [0, 1] (``levels=2``: binarize at
    0.5). Its gradient is zero everywhere: gradient masking by construction."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, x: Tensor) -> Tensor:
        k = self.levels - 1
        return torch.round(x * k) / k


def masked_model(plain: models.Classifier, levels: int) -> models.Classifier:
    """``plain``'s network behind :class:`Quantize`, in pixel space (before any normalization
    of ``plain``, which moves inside the net here)."""
    layers: list[nn.Module] = [Quantize(levels)]
    if plain.mean is not None and plain.std is not None:
        mean, std = plain.mean.view(1, -1, 1, 1), plain.std.view(1, -1, 1, 1)
        layers.append(_Affine(mean, std))
    clf = models.Classifier(
        nn.Sequential(*layers, plain.net),
        bounds=plain.bounds,
        num_classes=plain.num_classes,
        input_shape=plain.input_shape,
    )
    return clf.to(plain.device).eval()


class _Affine(nn.Module):
    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def build_model(kind: str, args: argparse.Namespace, dev: torch.device) -> tuple[Any, str]:
    """``(Classifier, where it came from)`` for ``plain``, ``adv`` or ``masked``."""
    if kind == "adv":
        return recipe_trained_model(
            "lenet", train_limit=args.train_limit, device=dev, data_dir=args.data_dir
        )
    plain, origin = trained_model(
        "lenet", robust=False, train_limit=0, device=dev, data_dir=args.data_dir
    )
    if kind == "plain":
        return plain, origin
    return masked_model(plain, args.levels), f"plain LeNet behind Quantize({args.levels}); {origin}"


class PeerView(nn.Module):
    """What the peer calls: the Classifier (``checked``: input validation on every call, as
    ``clf(x)``) or its forward without the checks; counts images through the model, with and
    without an input gradient (for the floor)."""

    def __init__(self, clf: models.Classifier, checked: bool) -> None:
        super().__init__()
        self.clf, self.checked = clf, checked
        self.fwd = 0
        self.grad = 0

    def forward(self, x: Tensor) -> Tensor:
        self.fwd += x.shape[0]
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad += x.shape[0]
        return self.clf(x) if self.checked else self.clf.logits(x, check=False)


# --------------------------------------------------------------------------------- running
def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@dataclass
class Run:
    """One contender on one model."""

    label: str
    seconds: float = float("nan")
    acc: float = float("nan")
    per_attack: list[tuple[str, float, float, int]] = field(default_factory=list)
    # (attack, cumulative accuracy after it, seconds, images it attacked)
    fwd: int = 0  # images through the model without an input gradient
    grad: int = 0  # images through the model with one (forward+backward)
    note: str = ""
    attack_clock: str = "wall"  # the clock of per_attack's seconds
    error: str | None = None
    report: RobustnessReport | None = None


def run_advlab(clf: models.Classifier, x: Tensor, y: Tensor, bs: int) -> Run:
    dev = x.device
    _sync(dev)
    t0 = CLOCK()
    rep = evaluate(clf, (x, y), suite="standard", eps=EPS, audit=False, batch_size=bs, device=dev)
    _sync(dev)
    r = Run("advlab standard", CLOCK() - t0, rep.robust_accuracy(EPS), report=rep)
    for a in rep.to_dict()["per_eps"][-1]["attacks"]:
        r.per_attack.append((a["attack"], a["accuracy"], a["seconds"], a["attacked"]))
        queries = round(a["queries_mean"] * a["attacked"])
        grads = round(a["gradients_mean"] * a["attacked"])
        r.grad += grads
        r.fwd += max(queries - grads, 0)
    probe = min(256, len(x))  # evaluate's own passes: precheck (2 forwards, 1 gradient on the
    r.fwd += len(x) + 2 * probe  # probe images) and the clean logits of each batch
    r.grad += probe
    return r


def _ta_attacks(ta: Any, view: nn.Module, steps: int | None) -> Any:
    """AutoAttack as the issue names it (``steps=None``), or the same four torchattacks
    attacks with ``steps`` for APGD, APGD-T and FAB (MultiAttack, as AutoAttack builds it)."""
    if steps is None:
        return ta.AutoAttack(view, norm="Linf", eps=EPS, version="standard", n_classes=10, seed=0)
    kw = {"eps": EPS, "norm": "Linf", "seed": 0, "n_restarts": 1, "steps": steps}
    return ta.MultiAttack(
        [
            ta.APGD(view, loss="ce", **kw),
            ta.APGDT(view, n_classes=10, **kw),
            ta.FAB(view, multi_targeted=True, n_classes=10, **kw),
            ta.Square(view, eps=EPS, norm="Linf", seed=0, n_queries=5000, n_restarts=1),
        ]
    )


def run_peer(
    ta: Any, clf: models.Classifier, x: Tensor, y: Tensor, bs: int, steps: int | None, checked: bool
) -> Run:
    label = "torchattacks AA" if steps is None else f"torchattacks AA-{steps}"
    view = PeerView(clf, checked).eval()
    atk = _ta_attacks(ta, view, steps)
    multi = getattr(atk, "_autoattack", atk)
    names = ["apgd-ce", "apgd-t", "fab-t", "square"]
    log: list[list[float]] = [[0.0, 0.0, 0.0] for _ in names]  # seconds, images in, calls

    def timed(k: int, fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        def wrapped(images: Tensor, labels: Tensor) -> Tensor:
            t0 = CLOCK()
            out = fn(images, labels)
            _sync(images.device)
            log[k][0] += CLOCK() - t0
            log[k][1] += images.shape[0]
            log[k][2] += 1
            return out

        return wrapped

    for k, sub in enumerate(multi.attacks):
        sub.forward = timed(k, sub.forward)
    r = Run(label, attack_clock="cpu" if CLOCK is time.process_time else "wall")
    try:
        _sync(x.device)
        t0 = CLOCK()
        x_adv = torch.cat([atk(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)])
        _sync(x.device)
        r.seconds = CLOCK() - t0
    except Exception as e:  # one line in the table, the run goes on
        r.error = f"failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
        return r
    finally:
        clf.zero_grad(set_to_none=True)
        clf.eval()
    r.acc, invalid = robust_accuracy(clf, x, y, x_adv)
    if invalid:
        r.note = f"WARNING {invalid} x_adv outside [0, 1] or the eps-ball (not counted)"
    r.fwd, r.grad = view.fwd - view.grad, view.grad
    n = len(x)
    for k, name in enumerate(names):
        # images into attack k+1, summed over batches = still correct after attack k (a batch
        # that stops early had none left)
        after = log[k + 1][1] if k + 1 < len(names) else r.acc * n
        r.per_attack.append((name, after / n, log[k][0], int(log[k][1])))
    return r


@torch.no_grad()
def robust_accuracy(
    clf: models.Classifier, x: Tensor, y: Tensor, x_adv: Tensor
) -> tuple[float, int]:
    """Accuracy at ``x_adv``, where an ``x_adv`` outside [0, 1] or the eps-ball (or not
    finite) counts as not broken; and the number of such invalid rows."""
    flat, delta = x_adv.flatten(1), (x_adv - x).flatten(1)
    valid = torch.isfinite(flat).all(1)
    valid &= (flat.amin(1) >= -TOL) & (flat.amax(1) <= 1 + TOL)
    valid &= delta.abs().amax(1) <= EPS + TOL
    pred = clf.logits(torch.nan_to_num(x_adv).clamp(0, 1), check=False).argmax(1)
    broken = valid & (pred != y)
    return 1 - float(broken.float().mean()), int((~valid).sum())


def pass_costs(clf: models.Classifier, x: Tensor, y: Tensor, reps: int = 5) -> tuple[float, float]:
    """Seconds per image of a bare forward and of a forward+backward (input gradient only,
    parameters frozen, CE loss) on the batch ``x``; the best of ``reps``."""
    fwd, fb = [], []
    with attack_mode(clf, "eval"):
        for _ in range(reps):
            _sync(x.device)
            t0 = CLOCK()
            with torch.no_grad():
                clf.logits(x, check=False)
            _sync(x.device)
            fwd.append(CLOCK() - t0)
            xg = x.detach().requires_grad_(True)
            t0 = CLOCK()
            loss = F.cross_entropy(clf.logits(xg, check=False), y, reduction="sum")
            torch.autograd.grad(loss, xg)
            _sync(x.device)
            fb.append(CLOCK() - t0)
    return min(fwd) / len(x), min(fb) / len(x)


# -------------------------------------------------------------------------------- printing
def _f(v: float, spec: str) -> str:
    return "-" if v != v else format(v, spec)


def print_details(runs: list[Run], costs: tuple[float, float]) -> None:
    t_f, t_fb = costs
    for r in runs:
        if r.error:
            print(f"  {r.label}: {r.error}")
            continue
        floor = r.fwd * t_f + r.grad * t_fb
        parts = ", ".join(
            f"{a} {acc:.3f} ({s:.1f}s, {n} in)" for a, acc, s, n in r.per_attack if n or s
        )
        print(
            f"  {r.label:<20} acc {r.acc:.3f} in {r.seconds:.1f}s | per attack (cumulative acc, "
            f"{r.attack_clock} s): "
            f"{parts}\n  {'':<20} passes: {r.grad:,} fwd+bwd + {r.fwd:,} fwd images -> floor "
            f"{floor:.1f}s, time/floor {r.seconds / floor if floor else float('nan'):.2f}"
            + (f" | {r.note}" if r.note else "")
        )


def print_table(rows: list[tuple[str, float, Run, list[Run]]]) -> None:
    print(
        f"\n{'model':<8} {'clean':>6} {'advlab':>7} {'peer':<22} {'peer acc':>8} "
        f"{'diff pts':>8} {'advlab s':>9} {'peer s':>8} {'speedup':>8}  targets (strength: "
        f"diff <= +0.3 pts; speed: >= 1.5x)"
    )
    for kind, clean, adv, peers in rows:
        for p in peers or [Run("(no peer)")]:
            diff = (adv.acc - p.acc) * 100
            speed = p.seconds / adv.seconds
            verdict = []
            if p.error is None and p.acc == p.acc:
                verdict.append(f"strength {'met' if diff <= 0.3 + 1e-9 else 'MISSED'}")
                verdict.append(f"speed {'met' if speed >= 1.5 else 'MISSED'}")
            print(
                f"{kind:<8} {clean:6.3f} {adv.acc:7.3f} {p.label:<22} {_f(p.acc, '8.3f')} "
                f"{_f(diff, '+8.1f')} {adv.seconds:9.1f} {_f(p.seconds, '8.1f')} "
                f"{_f(speed, '7.2f') + 'x' if speed == speed else '-':>8}  "
                f"{', '.join(verdict) or (p.error or '')}"
            )


def print_audit(kind: str, clf: models.Classifier, x: Tensor, y: Tensor, bs: int) -> None:
    t0 = time.perf_counter()
    rep = evaluate(
        clf, (x, y), suite="standard", eps=EPS, audit=True, audit_n=len(x), batch_size=bs
    )
    doc = rep.to_dict()
    print(
        f"\naudit of {kind} (audit=True, {len(x)} images, {time.perf_counter() - t0:.0f}s, "
        f"untimed): robust {rep.robust_accuracy(EPS):.3f}"
    )
    probes = (doc.get("audit") or {}).get("probes") or {}
    for name, block in probes.items():
        print(f"  probe {name}: {_short(block)}")
    for flag in rep.flags or []:
        print(f"  FLAG {flag}")
    if not rep.flags:
        print("  (no flags)")


def _short(block: Any) -> str:
    if isinstance(block, dict):
        keep = {k: v for k, v in block.items() if not isinstance(v, list | dict)}
        return ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in keep.items()
        )
    return str(block)


# ------------------------------------------------------------------------------------ main
def quick_10k(args: argparse.Namespace, dev: torch.device) -> None:
    clf, origin = trained_model(
        "madry-mnist", robust=False, train_limit=10000, device=dev, data_dir=args.data_dir
    )
    test = load_split("test", args.data_dir)
    x, y = test.x[:10000].to(dev), test.y[:10000].to(dev)
    bs = args.batch_size or 500
    print(f"model madry-mnist ({origin}); {test.name} test[:{len(x)}]; batch {bs}")
    _sync(dev)
    t0 = CLOCK()
    rep = evaluate(clf, (x, y), suite="quick", eps=EPS, audit=False, batch_size=bs, device=dev)
    _sync(dev)
    took = CLOCK() - t0
    d = rep.to_dict()["per_eps"][-1]["attacks"]
    grads = sum(a["gradients_mean"] * a["attacked"] for a in d)
    queries = sum(a["queries_mean"] * a["attacked"] for a in d)
    t_f, t_fb = pass_costs(clf, x[:bs], y[:bs])
    floor = grads * t_fb + (queries - grads) * t_f
    per = ", ".join(f"{a['attack']} {a['accuracy']:.3f} ({a['seconds']:.0f}s)" for a in d)
    print(
        f"quick suite, eps {EPS}, {len(x)} images: {took / 60:.2f} min ({took:.0f}s); clean "
        f"{rep.clean_accuracy:.4f}, robust {rep.robust_accuracy(EPS):.4f}; {per}\n"
        f"passes {grads:,.0f} fwd+bwd + {queries - grads:,.0f} fwd images -> floor {floor:.0f}s, "
        f"time/floor {took / floor:.2f}; flags: {[f.code for f in rep.flags] or 'none'}"
    )


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="first N MNIST test images")
    p.add_argument("--models", default=",".join(MODELS), help="comma list of plain,adv,masked")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-size", type=int, default=0, help="0 = all N at once (both sides)")
    p.add_argument("--skip-peers", action="store_true", help="advlab only")
    p.add_argument("--ta-paper", action="store_true", help="also AA with 100-step attacks")
    p.add_argument("--levels", type=int, default=2, help="grey levels of the masked model")
    p.add_argument("--train-limit", type=int, default=20000, help="adv model training images")
    p.add_argument("--audit-n", type=int, default=200, help="images of the audit runs (0: none)")
    p.add_argument(
        "--peer-forward",
        choices=("checked", "unchecked"),
        default="unchecked",
        help="the peer calls the Classifier with its per-call input checks, or without them "
        "(advlab's attacks skip them; default)",
    )
    p.add_argument("--quick-10k", action="store_true", help="time the quick suite on 10k images")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (CPU device; with --threads 1 "
        "the compute time, barely touched by other processes' load). advlab's per-attack "
        "seconds come from its report and are always wall time",
    )
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    if args.clock == "cpu":
        if dev.type != "cpu":
            raise SystemExit("--clock cpu measures CPU time: use it with --device cpu")
        global CLOCK
        CLOCK = time.process_time
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"device {dev}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{args.clock} clock; load "
        f"average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    if args.quick_10k:
        quick_10k(args, dev)
        return
    ta = None
    if not args.skip_peers:
        ta, msg = import_peer("torchattacks")
        print(f"peer torchattacks: {msg if ta else 'skipped, ' + msg}")
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    for k in kinds:
        if k not in MODELS:
            raise SystemExit(f"unknown model {k!r}; known: {', '.join(MODELS)}")
    test = load_split("test", args.data_dir)
    x, y = test.x[: args.n].to(dev), test.y[: args.n].to(dev)
    bs = args.batch_size or len(x)
    print(f"data {test.name} test[:{len(x)}], batch {bs}, eps {EPS} Linf")
    built = {k: build_model(k, args, dev) for k in kinds}
    rows = []
    for kind in kinds:
        clf, origin = built[kind]
        with torch.no_grad():
            clean = float((clf.logits(x, check=False).argmax(1) == y).float().mean())
        print(f"\n=== {kind}: {origin}; clean {clean:.3f}; load {os.getloadavg()[0]:.2f} ===")
        warm = slice(0, min(8, len(x)))
        run_advlab(clf, x[warm], y[warm], bs)  # warm-up (first-call costs), untimed
        adv = run_advlab(clf, x, y, bs)
        peers = []
        if ta is not None:
            checked = args.peer_forward == "checked"
            for steps in [None, 100] if args.ta_paper else [None]:
                peers.append(run_peer(ta, clf, x, y, bs, steps, checked))
        costs = pass_costs(clf, x[:bs], y[:bs])
        print(
            f"  pass cost at batch {min(bs, len(x))}: forward {costs[0] * 1e6:.1f} us/image, "
            f"forward+backward {costs[1] * 1e6:.1f} us/image"
        )
        print_details([adv, *peers], costs)
        rows.append((kind, clean, adv, peers))
    print_table(rows)
    if args.audit_n:
        for kind in kinds:
            if kind in ("adv", "masked"):
                clf = built[kind][0]
                m = min(args.audit_n, len(x))
                print_audit(kind, clf, x[:m], y[:m], bs)


if __name__ == "__main__":
    main()
