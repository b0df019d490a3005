"""Attack speed and strength: advlab vs torchattacks, Foolbox and ART, side by side in one run.

One process, one trained model, the same first ``--n`` MNIST test images, the same attack
settings in each library's vocabulary. For each attack it prints a table with the wall time
(median of ``--repeats`` runs, interleaved across libraries so machine noise hits them alike,
after a warm-up on a few images), the ratio to advlab's time, and the robust accuracy computed
here uniformly for every library (``x_adv`` outside the eps-ball or [0, 1] does not count as a
success, with a warning). Minimum-norm attacks also get the success rate on correctly
classified images and the mean L2 of the successful examples. Budget attacks also get two
references: the *floor*, ``k = steps`` bare forward+backward passes of the model on the same
batch at the attack's start point (CE loss, input gradient only, parameters frozen), and a
*plain torch loop*, the textbook attack hand-written in plain torch (the floor plus the step's
elementwise work).
A summary at the end checks the issue's targets: advlab (early stop off) at most 5 % over the
floor, and with early stop >= 1.5x (normally trained model) or >= 1.1x (adversarially
trained, ``--robust``) faster than the fastest peer.

On a shared CPU, ``--threads 1`` (and ``--clock cpu``, this process's CPU time) give far
steadier numbers than the default: spinning intra-op threads suffer badly from other load.

Contenders: advlab with ``early_stop=True`` (the evaluation setting) and ``early_stop=False``
(the textbook algorithm), torchattacks, Foolbox (``fb.PyTorchModel(model, bounds=(0, 1))``),
ART (``PyTorchClassifier``, cross-entropy loss, ``clip_values=(0, 1)``). A peer that is not
installed, or fails, is one line in the table; the run goes on.

    python benchmarks/attack_speed.py --n 200 --model lenet --attacks pgd,fgsm --threads 1
    python benchmarks/attack_speed.py --n 200 --robust --train-limit 10000 --threads 1
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _models import CACHE_ROOT, load_split, trained_model
from _peers import (
    BUDGET,
    PEERS,
    Entry,
    RunFn,
    Settings,
    advlab_entries,
    import_peer,
    peer_entry,
    register_all_attacks,
)
from advlab import models
from advlab.attacks import attack_mode
from advlab.utils import resolve_device

os.environ.setdefault("ADVLAB_PROGRESS", "0")  # no progress bars (read when a bar is made)
PLAIN = "plain torch loop"
TOL = 1e-5  # float slack when checking bounds and the eps-ball

DESCRIBE: dict[str, Callable[[Settings], str]] = {
    "pgd": lambda s: (
        f"PGD-{s.pgd_steps} Linf eps {s.eps:g}, step {s.pgd_step:g}, random start, CE loss"
    ),
    "fgsm": lambda s: f"FGSM Linf eps {s.eps:g}",
    "cw-l2": lambda s: (
        f"CW-L2 untargeted, {s.cw_search} binary-search steps x {s.cw_steps} steps, "
        f"lr {s.cw_lr:g}, c0 {s.cw_c0:g}, confidence 0"
    ),
    "deepfool": lambda s: (
        f"DeepFool L2, {s.df_steps} steps, overshoot {s.df_overshoot:g}, "
        f"{s.df_candidates} candidate classes"
    ),
}


class Unchecked(nn.Module):
    """The classifier's forward without its per-call input validation (``--peer-forward
    unchecked``): what a peer sees when a user hands it the bare network."""

    def __init__(self, clf: models.Classifier) -> None:
        super().__init__()
        self.clf = clf

    def forward(self, x: Tensor) -> Tensor:
        return self.clf.logits(x, check=False)


@dataclass
class Row:
    """An entry's timings and the checks of its last output."""

    entry: Entry
    times: list[float] = field(default_factory=list)
    x_adv: Tensor | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.entry.error is None

    @property
    def time(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")


# ------------------------------------------------------------------------------- running
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_batched(run: RunFn, x: Tensor, y: Tensor, bs: int) -> Tensor:
    """``run`` over batches of ``bs``; ``x_adv (N, ...)``."""
    return torch.cat([run(x[i : i + bs], y[i : i + bs]) for i in range(0, len(x), bs)])


def _start(x: Tensor, attack: str, s: Settings) -> Tensor:
    """Where the textbook attack takes its first gradient: PGD's uniform random start in the
    eps-ball (clipped to [0, 1]), FGSM's clean input."""
    if attack != "pgd":
        return x
    return (x + torch.empty_like(x).uniform_(-s.eps, s.eps)).clamp(0, 1)


def floor_run(clf: models.Classifier, attack: str, k: int, s: Settings) -> RunFn:
    """``k`` plain forward+backward passes (CE loss, gradient w.r.t. the input only, parameters
    frozen, eval mode) on each batch at the attack's start point: the least any k-step gradient
    attack can cost. Not at the clean images: on CPU a pass over clean MNIST digits is ~5%
    cheaper than one over the same digits plus eps-ball noise (measured on madry-mnist; the
    cost of the kernels depends on the data), and every attack step after the first is taken at
    a perturbed point."""

    def run(x: Tensor, y: Tensor) -> Tensor:
        with attack_mode(clf, "eval"):
            xs = _start(x, attack, s)
            for _ in range(k):
                xg = xs.detach().requires_grad_(True)
                loss = F.cross_entropy(clf.logits(xg, check=False), y, reduction="sum")
                loss.backward()  # type: ignore[no-untyped-call]
        return x

    return run


def plain_run(clf: models.Classifier, attack: str, s: Settings) -> RunFn:
    """The textbook attack as a careful user writes it in plain torch (no validation, no
    counters): PGD from a uniform random start, or FGSM, with sign steps, projection onto the
    eps-ball and clipping to [0, 1]. The floor plus the step's own elementwise work."""
    steps, step = (s.pgd_steps, s.pgd_step) if attack == "pgd" else (1, s.eps)

    def run(x: Tensor, y: Tensor) -> Tensor:
        with attack_mode(clf, "eval"):
            xa = _start(x, attack, s)
            lo, hi = (x - s.eps).clamp_min(0), (x + s.eps).clamp_max(1)  # (B, C, H, W)
            for _ in range(steps):
                xg = xa.detach().requires_grad_(True)
                loss = F.cross_entropy(clf.logits(xg, check=False), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, xg)
                xa = torch.minimum(torch.maximum(xa + step * grad.sign(), lo), hi)
        return xa

    return run


def _tidy(clf: models.Classifier, frozen: bool) -> None:
    """Undo what a peer may leave behind: parameter gradients, train mode."""
    clf.zero_grad(set_to_none=True)
    clf.eval()
    for p in clf.parameters():
        p.requires_grad_(not frozen)


class _TooSlowError(BaseException):
    """Raised inside a run that exceeds its time limit (a BaseException, so that a peer's own
    ``except Exception`` does not swallow it)."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the body with :class:`_TooSlowError` after ``seconds`` of wall time (SIGALRM; it
    lands between Python bytecodes, so a long single torch op finishes first). No limit where
    the platform has no SIGALRM."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise _TooSlowError

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def measure(
    rows: list[Row],
    clf: models.Classifier,
    x: Tensor,
    y: Tensor,
    bs: int,
    repeats: int,
    warmup: int,
    frozen: bool,
    max_run_s: float,
    clock: Callable[[], float] = time.perf_counter,
) -> None:
    """Warm every row up on ``warmup`` images, then time ``repeats`` interleaved rounds. A row
    whose warm-up projects (linearly in the number of images) to more than ``max_run_s`` seconds
    per run, or that runs past that share of it, is skipped with that reason."""
    dev = x.device
    for rnd in range(-1, repeats):  # round -1 is the warm-up
        xs, ys = (x[:warmup], y[:warmup]) if rnd < 0 else (x, y)
        limit = max_run_s * len(xs) / len(x)
        for row in rows:
            if not row.ok or row.entry.run is None:
                continue
            torch.manual_seed(1000 + rnd)  # peers draw random starts from the global RNG
            try:
                with _time_limit(limit):
                    _sync(dev)
                    t0 = clock()
                    out = run_batched(row.entry.run, xs, ys, min(bs, len(xs)))
                    _sync(dev)
                    took = clock() - t0
            except _TooSlowError:
                row.error = (
                    f"skipped, too slow: stopped after {limit:.3g}s on {len(xs)} images "
                    f"(--max-run-s {max_run_s:g} for {len(x)})"
                )
                continue
            except Exception as e:  # one line in the table, the run goes on
                row.error = f"failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
                continue
            finally:
                _tidy(clf, frozen)
            if rnd >= 0:
                row.times.append(took)
                row.x_adv = out
            elif took * len(x) / len(xs) > max_run_s:
                row.error = (
                    f"skipped, too slow: warm-up on {len(xs)} images took {took:.1f}s, about "
                    f"{took * len(x) / len(xs):.0f}s projected per run > --max-run-s {max_run_s:g}"
                )


# ------------------------------------------------------------------------------ checking
@dataclass
class Check:
    """Uniform verdict on one library's ``x_adv``."""

    robust_acc: float
    invalid: int  # samples outside [0, 1] or the eps-ball (or non-finite / wrong shape)
    worst: str  # the largest violation, for the warning
    blank: int = 0  # x_adv all zeros where x is not: Foolbox's CW returns that for a failure
    success: float | None = None  # minimum-norm: fraction of clean-correct samples broken
    mean_l2: float | None = None  # minimum-norm: mean L2 of those successes


@torch.no_grad()
def check(clf: models.Classifier, x: Tensor, y: Tensor, x_adv: Tensor, eps: float | None) -> Check:
    """Robust accuracy of ``x_adv``, computed the same way for every library; a sample whose
    ``x_adv`` is outside the bounds (or, for budget attacks, the Linf eps-ball) is not counted
    as broken. Minimum-norm attacks: success rate over the correctly classified inputs and mean
    L2 of those successes, leaving out all-zero outputs (a failure placeholder)."""
    if x_adv.shape != x.shape:
        return Check(float("nan"), len(x), f"shape {tuple(x_adv.shape)} != {tuple(x.shape)}")
    x_adv = x_adv.to(device=x.device, dtype=x.dtype)
    flat, delta = x_adv.flatten(1), (x_adv - x).flatten(1)  # (N, D)
    finite = torch.isfinite(flat).all(1)
    below = (-flat).amax(1).clamp_min(0)  # (N,) how far under 0
    above = (flat - 1).amax(1).clamp_min(0)  # (N,) how far over 1
    out_ball = (
        (delta.abs().amax(1) - eps).clamp_min(0) if eps is not None else torch.zeros_like(below)
    )
    valid = finite & (below <= TOL) & (above <= TOL) & (out_ball <= TOL)
    worst = (
        f"max below 0: {float(below.max()):.2g}, max above 1: {float(above.max()):.2g}, "
        f"max outside eps-ball: {float(out_ball.max()):.2g}"
    )
    pred = clf.logits(torch.nan_to_num(x_adv).clamp(0, 1), check=False).argmax(1)
    clean_ok = clf.logits(x, check=False).argmax(1) == y
    broken = valid & (pred != y)
    res = Check(1 - float(broken.float().mean()), int((~valid).sum()), worst)
    blank = (flat == 0).all(1) & (x.flatten(1) != 0).any(1)  # (N,)
    res.blank = int(blank.sum())
    if eps is None:  # a blank image is a failure placeholder, not a minimal perturbation
        hit = broken & clean_ok & ~blank
        res.success = float(hit.sum()) / max(int(clean_ok.sum()), 1)
        res.mean_l2 = float(delta[hit].norm(dim=1).mean()) if bool(hit.any()) else float("nan")
    return res


# ------------------------------------------------------------------------------- printing
@dataclass
class Outcome:
    """What the summary needs from one attack's table."""

    attack: str
    es: float | None = None  # advlab early-stop (or the only advlab setting), seconds
    tb: float | None = None  # advlab textbook, seconds
    floor: float | None = None
    plain: float | None = None  # the plain torch loop
    peer: tuple[str, float] | None = None  # fastest peer


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None or v != v else format(v, spec)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:+.1f}%"


def report(
    attack: str,
    rows: list[Row],
    floor: Row | None,
    clf: models.Classifier,
    x: Tensor,
    y: Tensor,
    s: Settings,
) -> Outcome:
    budget = attack in BUDGET
    eps = s.eps if budget else None
    out = Outcome(attack)
    timed = {r.entry.library: r.time for r in rows if r.ok and r.times}
    out.es = timed.get("advlab early-stop", timed.get("advlab"))
    out.tb = timed.get("advlab textbook")
    out.plain = timed.get(PLAIN)
    peers = [
        (r.entry.library, r.time)
        for r in rows
        if r.entry.library in PEERS and r.entry.comparable and r.ok and r.times
    ]
    out.peer = min(peers, key=lambda p: p[1]) if peers else None
    head = f"{'library':<18} {'time s':>9} {'/adv-es':>8} {'/adv-tb':>8} {'rob.acc':>8}"
    head += "" if budget else f" {'success':>8} {'mean L2':>8}"
    print(head + "  note")
    if floor is not None and floor.ok and floor.times:
        out.floor = floor.time
        runs = "/".join(f"{t:.3g}" for t in floor.times)
        over = f"; advlab textbook = {out.tb / floor.time:.3f}x floor" if out.tb else ""
        print(f"{floor.entry.library:<18} {floor.time:9.3f} {'':>26}  runs {runs}{over}")
    warnings = []
    for r in rows:
        lib = r.entry.library
        if not r.ok:
            why = f"skipped: {r.entry.error}" if r.entry.error else r.error
            print(f"{lib:<18} {'-':>9}  {why}")
            continue
        assert r.x_adv is not None  # a timed row has an output
        c = check(clf, x, y, r.x_adv, eps)
        line = f"{lib:<18} {r.time:9.3f} {_fmt(r.time / out.es if out.es else None, '8.2f')}"
        line += f" {_fmt(r.time / out.tb if out.tb else None, '8.2f')} {c.robust_acc:8.3f}"
        if not budget:
            line += f" {_fmt(c.success, '8.3f')} {_fmt(c.mean_l2, '8.3f')}"
        grads = r.entry.last.get("gradients")
        notes = [r.entry.note] if r.entry.note else []
        notes.append("runs " + "/".join(f"{t:.3g}" for t in r.times))
        if grads is not None:
            notes.append(f"grads/sample mean {float(grads.float().mean()):.1f}")
        if c.blank:
            notes.append(
                f"{c.blank} x_adv are all-zero images (a failure placeholder): counted in "
                "rob.acc as returned, left out of success and mean L2"
            )
        if c.invalid:
            notes.append(f"WARNING {c.invalid} invalid")
            warnings.append(
                f"  WARNING {lib}: {c.invalid} x_adv outside the threat model ({c.worst})"
            )
        print(f"{line}  {'; '.join(notes)}")
    for w in warnings:
        print(w)
    return out


def speed_target(attack: str, robust: bool) -> float | None:
    """Issue 3's speed target for ``attack`` (peer time / advlab time): PGD robust-accuracy
    evaluation >= 1.5x (normally trained model) or >= 1.1x (adversarially trained); CW-L2 and
    DeepFool faster than every peer (> 1x); none for FGSM."""
    if attack == "pgd":
        return 1.1 if robust else 1.5
    return 1.0 if attack in ("cw-l2", "deepfool") else None


def summary(outcomes: list[Outcome], robust: bool, s: Settings) -> None:
    pgd_need = speed_target("pgd", robust)
    print(
        f"\n=== summary: peer/es = fastest comparable peer's time / advlab early-stop's "
        f"(target: PGD >= {pgd_need}x on this {'adversarially' if robust else 'normally'} "
        "trained model, CW-L2 and DeepFool > 1x, none for FGSM); tb/floor = advlab textbook over "
        "the floor (target <= +5%); tb/plain = over the plain torch loop ==="
    )
    print(
        f"{'attack':<9} {'adv-es s':>9} {'adv-tb s':>9} {'fastest peer':>22} "
        f"{'peer/es':>8} {'peer/tb':>8} {'tb/floor':>9} {'tb/plain':>9}  targets"
    )
    for o in outcomes:
        peer = f"{o.peer[0]} {o.peer[1]:.3f}s" if o.peer else "(none)"
        sp_es = o.peer[1] / o.es if o.peer and o.es else None
        sp_tb = o.peer[1] / o.tb if o.peer and o.tb else None
        over = (o.tb / o.floor - 1) if o.tb and o.floor else None
        vs_plain = (o.tb / o.plain - 1) if o.tb and o.plain else None
        verdicts = []
        need = speed_target(o.attack, robust)
        if sp_es is not None and need is not None:
            verdicts.append(f"speed {'met' if sp_es >= need else 'MISSED'}")
        if over is not None:
            verdicts.append(f"overhead {'met' if over <= 0.05 else 'MISSED'}")
        print(
            f"{o.attack:<9} {_fmt(o.es, '9.3f')} {_fmt(o.tb, '9.3f')} {peer:>22} "
            f"{_fmt(sp_es, '8.2f')} {_fmt(sp_tb, '8.2f')} {_pct(over):>9} {_pct(vs_plain):>9}  "
            f"{', '.join(verdicts)}"
        )
    if any(o.attack == "fgsm" for o in outcomes):
        print("  (FGSM is a single step: its overhead is the whole per-call cost, not per step)")


# ---------------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="lenet", help="zoo preset: lenet, madry-mnist, small-cnn")
    p.add_argument("--n", type=int, default=1000, help="first N MNIST test images")
    p.add_argument("--batch-size", type=int, default=0, help="0 = all N at once")
    p.add_argument("--device", default="auto")
    p.add_argument("--attacks", default="pgd,fgsm,cw-l2,deepfool")
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--robust", action="store_true", help="PGD adversarially trained model")
    p.add_argument("--train-limit", type=int, default=0, help="training images (0 = all)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=8, help="images in the warm-up call")
    p.add_argument(
        "--max-run-s",
        type=float,
        default=600.0,
        help="skip a library whose run takes (or whose warm-up projects to) more seconds",
    )
    p.add_argument("--data-dir", default=None)
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (CPU device only; with "
        "--threads 1 it is the compute time, untouched by other processes' load)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0 = torch's default); 1 gives far steadier timings on a "
        "machine that other processes keep busy",
    )
    p.add_argument(
        "--peer-forward",
        choices=("checked", "unchecked"),
        default="checked",
        help="peers call the Classifier itself (checked: validates every input, as "
        "clf(x) does) or its forward without the input checks (as a bare network)",
    )
    p.add_argument(
        "--freeze-params",
        action="store_true",
        help="parameters requires_grad=False for the peers too (advlab always freezes them "
        "while attacking); default: as a user passes a model, trainable",
    )
    d = Settings()
    for name, v in vars(d).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(v), default=v)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    s = Settings(**{k: getattr(args, k) for k in vars(Settings())})
    device = resolve_device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        raise SystemExit("--clock cpu measures CPU time: use it with --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    known = register_all_attacks()
    attacks = []
    for a in (a.strip() for a in args.attacks.split(",") if a.strip()):
        if a not in DESCRIBE:
            print(f"skip {a}: the benchmark knows {', '.join(DESCRIBE)}")
        elif a not in known:
            print(f"skip {a}: advlab has no attack {a!r} registered yet (has: {', '.join(known)})")
        else:
            attacks.append(a)
    peers = {}
    for name in (p.strip() for p in args.peers.split(",") if p.strip()):
        if name not in PEERS:
            print(f"skip peer {name}: the benchmark knows {', '.join(PEERS)}")
            continue
        mod, msg = import_peer(name)
        print(f"peer {name}: {msg if mod else 'skipped, ' + msg}")
        if mod is not None:
            peers[name] = mod

    clf, origin = trained_model(
        args.model,
        robust=args.robust,
        train_limit=args.train_limit,
        device=device,
        data_dir=args.data_dir,
        cache_root=CACHE_ROOT,
    )
    test = load_split("test", args.data_dir)
    x, y = test.x[: args.n].to(device), test.y[: args.n].to(device)
    bs = args.batch_size or len(x)
    _tidy(clf, args.freeze_params)
    with torch.no_grad():
        clean = float((clf.logits(x, check=False).argmax(1) == y).float().mean())
    fwd = "clf(x): input checks on every call" if args.peer_forward == "checked" else "no checks"
    print(
        f"\nmodel {args.model} ({'PGD-adversarially' if args.robust else 'normally'} trained; "
        f"{origin})\ndata {test.name} test[:{len(x)}], clean accuracy {clean:.3f}; batch {bs}; "
        f"device {device}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"median of {args.repeats} ({args.clock} clock)\npeers get the Classifier ({fwd}), "
        f"parameters {'frozen' if args.freeze_params else 'trainable'}"
    )
    net: nn.Module = clf if args.peer_forward == "checked" else Unchecked(clf)
    outcomes = []
    for attack in attacks:
        print(f"\n=== {attack}: {DESCRIBE[attack](s)} ===")
        entries = advlab_entries(attack, clf, s)
        entries += [peer_entry(n, m, attack, net, clf, s, bs) for n, m in peers.items()]
        rows = [Row(e) for e in entries]
        floor = None
        if attack in BUDGET:
            k = s.passes(attack)
            floor = Row(Entry(f"floor ({k} f+b)", run=floor_run(clf, attack, k, s)))
            rows.append(Row(Entry(PLAIN, run=plain_run(clf, attack, s))))
        measure(
            [*([floor] if floor else []), *rows],
            clf,
            x,
            y,
            bs,
            args.repeats,
            min(args.warmup, len(x)),
            args.freeze_params,
            args.max_run_s,
            time.process_time if args.clock == "cpu" else time.perf_counter,
        )
        outcomes.append(report(attack, rows, floor, clf, x, y, s))
    summary(outcomes, args.robust, s)


if __name__ == "__main__":
    main()
