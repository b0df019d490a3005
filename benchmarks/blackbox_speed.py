"""Black-box (score-based) attacks: advlab vs torchattacks and ART, side by side in one run.

One process, one trained model, the same images, each library's attack configured with the
same budget in its own vocabulary:

* **one-pixel** (Su et al. 2019), untargeted, ``--pixels`` pixels, ``--population`` candidates
  and ``--generations`` generations: advlab ``one-pixel`` (duplicate images skipped, its
  default; and, for transparency, with ``skip_duplicates=False``, every candidate queried)
  vs torchattacks ``OnePixel`` and ART ``PixelAttack`` (``es=1``: differential evolution).
  Both peers run SciPy's DE on one image at a time with ``popsize`` members per parameter, so
  the population is rounded down to a multiple of the ``(2 + C)·pixels`` parameters for every
  library (400 -> 399 on MNIST); ART fixes it at that rounding of 400. Measured: time, success
  rate on the correctly classified images, forward evaluations per image.
* **square** (Andriushchenko et al. 2020), Linf, ``--square-eps``, at each of
  ``--square-queries``: advlab ``square`` vs torchattacks ``Square`` (``p_init`` 0.8, margin
  loss, one restart, both). Measured: time, robust accuracy, forward evaluations per image.

Every library gets the same ``Counted`` module (the classifier's forward, counting the images
it is asked about), so "queries/img" is counted the same way for all; for advlab it is checked
against ``res.queries``. Success and accuracy are computed here, uniformly: an ``x_adv``
outside [0, 1], or changing more than ``--pixels`` pixels (one-pixel) or more than eps in
Linf (square), does not count as a success (with a warning). Times are wall-clock, one run
each (the runs are long), after a warm-up of the model's forward pass; use ``--threads 1`` on a
shared machine. The load average is printed before and after.

Data: ``--data mnist`` (default; LeNet from ``_models.trained_model``, cached in
``runs/bench/lenet``, and the MNIST test split, falling back to the bundled 8x8 digits when
MNIST is not found) or ``--data digits`` (LeNet trained here on the 8x8 digits in a few
seconds: one-pixel attacks succeed there, where MNIST LeNet resists one to five pixels).

    python benchmarks/blackbox_speed.py --threads 1
    python benchmarks/blackbox_speed.py --data digits --n-pixel 100 --threads 1
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from _models import load_split, trained_model
from _peers import import_peer
from advlab import attacks, data, models
from advlab.defenses.training import TrainConfig, train
from advlab.utils import resolve_device

os.environ.setdefault("ADVLAB_PROGRESS", "0")  # no progress bars (read when a bar is made)
TOL = 1e-5  # float slack when checking bounds and the eps-ball
RunFn = Callable[[Tensor, Tensor], Tensor]  # run(x, y) -> x_adv, all on the model's device


class Counted(nn.Module):
    """The classifier's forward (no per-call validation) counting the images it answers."""

    def __init__(self, clf: models.Classifier) -> None:
        super().__init__()
        self.clf = clf
        self.seen = 0

    def forward(self, x: Tensor) -> Tensor:
        self.seen += int(x.shape[0])
        return self.clf.logits(x, check=False)


@dataclass
class Row:
    """One contender of one table: how to run it and what it measured."""

    library: str
    run: RunFn | None = None
    note: str = ""
    error: str | None = None
    seconds: float = float("nan")
    x_adv: Tensor | None = None
    seen: int = 0  # forward evaluations (Counted)
    per_image: float = float("nan")  # per image
    extra: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------ model, data
def digits_model(device: torch.device) -> tuple[models.Classifier, str]:
    """LeNet trained on the 8x8 digits (12 epochs, as in the test suite's fixture)."""
    torch.manual_seed(0)
    train_set = data.load("digits", "train")
    clf = models.build("lenet", input_shape=(1, 8, 8), num_classes=10)
    cfg = TrainConfig(epochs=12, batch_size=64, lr=3e-3, schedule="cosine", device=str(device))
    t0 = time.perf_counter()
    train(clf, train_set, None, cfg)
    return clf.eval(), f"trained on digits x{len(train_set)} in {time.perf_counter() - t0:.0f}s"


def load(
    args: argparse.Namespace, device: torch.device
) -> tuple[models.Classifier, str, Tensor, Tensor]:
    if args.data == "digits":
        clf, how = digits_model(device)
        test = data.load("digits", "test")
    else:
        clf, how = trained_model(
            "lenet", robust=False, train_limit=0, device=device, data_dir=args.data_dir
        )
        test = load_split("test", args.data_dir)
    n = max(args.n, args.n_pixel)
    x, y = test.x[:n].to(device), test.y[:n].to(device)
    return clf.eval(), f"{how}; {test.name} test images", x, y


# ------------------------------------------------------------------------------ contenders
def advlab_run(
    name: str, counted: Counted, clf: models.Classifier, row: Row, **kw: object
) -> RunFn:
    """advlab's ``name`` on a Classifier over ``counted`` (so its forwards are counted too)."""
    model = models.Classifier(
        counted, bounds=(0.0, 1.0), num_classes=clf.num_classes, input_shape=clf.input_shape
    ).eval()
    atk = attacks.build(name, **kw)

    def run(x: Tensor, y: Tensor) -> Tensor:
        res = atk(model, x, y)
        row.extra["advlab queries"] = float(res.queries.sum())
        return res.x_adv

    return run


def peer_one_pixel(
    peer: str, counted: Counted, clf: models.Classifier, a: argparse.Namespace
) -> Row:
    mod, why = import_peer(peer)
    if mod is None:
        return Row(peer, error=why)
    c, h, w = tuple(clf.input_shape or ())
    if peer == "torchattacks":
        atk = mod.OnePixel(
            counted, pixels=a.pixels, steps=a.generations, popsize=a.population, inf_batch=128
        )

        def run(x: Tensor, y: Tensor) -> Tensor:
            out: Tensor = atk(x, y)
            return out.detach()

        note = "SciPy DE best1bin, F~U(0.5,1), CR 1, random init; one image at a time"
        return Row(peer, run=run, note=note)
    from art.attacks.evasion import PixelAttack
    from art.estimators.classification import PyTorchClassifier

    estimator = PyTorchClassifier(
        model=counted,
        loss=nn.CrossEntropyLoss(),
        input_shape=(c, h, w),
        nb_classes=int(clf.num_classes or 0),
        clip_values=(0.0, 1.0),
        device_type="gpu" if clf.device.type == "cuda" else "cpu",
    )
    art_atk = PixelAttack(
        estimator, th=a.pixels, es=1, max_iter=a.generations, targeted=False, verbose=False
    )

    def art_run(x: Tensor, y: Tensor) -> Tensor:
        adv = art_atk.generate(x=x.cpu().numpy(), y=y.cpu().numpy())
        return torch.from_numpy(np.asarray(adv, dtype=np.float32)).to(x.device)

    note = "DE best1bin, F~U(0.5,1), CR 1, Latin-hypercube init, 8-bit values; one image at a time"
    art_pop = (400 // ((2 + c) * a.pixels)) * (2 + c) * a.pixels
    if art_pop != a.population:
        note = f"not comparable: population fixed at {art_pop}; " + note
    return Row(peer, run=art_run, note=note)


def peer_square(counted: Counted, eps: float, queries: int) -> Row:
    mod, why = import_peer("torchattacks")
    if mod is None:
        return Row("torchattacks", error=why)
    atk = mod.Square(
        counted,
        norm="Linf",
        eps=eps,
        n_queries=queries,
        n_restarts=1,
        p_init=0.8,
        loss="margin",
        resc_schedule=True,
        seed=0,
    )

    def run(x: Tensor, y: Tensor) -> Tensor:
        out: Tensor = atk(x, y)
        return out.detach()

    return Row("torchattacks", run=run)


# ------------------------------------------------------------------------------ measuring
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(row: Row, counted: Counted, x: Tensor, y: Tensor) -> None:
    if row.run is None or row.error:
        return
    counted.seen = 0
    torch.manual_seed(0)  # peers draw from the global RNG
    try:
        _sync(x.device)
        t0 = time.perf_counter()
        out = row.run(x, y)
        _sync(x.device)
        row.seconds = time.perf_counter() - t0
    except Exception as e:  # one line in the table, the run goes on
        row.error = f"failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
        return
    row.x_adv = out.to(device=x.device, dtype=x.dtype)
    row.seen = counted.seen
    row.per_image = counted.seen / len(x)
    counted.clf.eval()


@torch.no_grad()
def verdict(
    clf: models.Classifier,
    x: Tensor,
    y: Tensor,
    x_adv: Tensor,
    *,
    pixels: int | None,
    eps: float | None,
) -> tuple[Tensor, int]:
    """``(broken (N,) bool, invalid count)``: misclassified and inside the threat model."""
    flat = x_adv.flatten(1)
    valid = torch.isfinite(flat).all(1) & (flat.amin(1) >= -TOL) & (flat.amax(1) <= 1 + TOL)
    if pixels is not None:  # changed pixels (any channel) per image
        valid &= (x_adv != x).any(1).flatten(1).sum(1) <= pixels
    if eps is not None:
        valid &= (x_adv - x).abs().flatten(1).amax(1) <= eps + TOL
    pred = clf.logits(torch.nan_to_num(x_adv).clamp(0, 1), check=False).argmax(1)
    return valid & (pred != y), int((~valid).sum())


def print_rows(
    rows: list[Row], metric: str, values: dict[str, float], invalid: dict[str, int]
) -> None:
    base = next(
        (r.seconds for r in rows if r.library.startswith("advlab") and r.error is None), None
    )
    print(f"{'library':<26} {'time s':>8} {'/advlab':>8} {metric:>8} {'queries/img':>12}  note")
    for r in rows:
        if r.error:
            print(f"{r.library:<26} {'-':>8}  skipped: {r.error}")
            continue
        ratio = r.seconds / base if base else float("nan")
        notes = [r.note] if r.note else []
        if "advlab queries" in r.extra:
            same = r.extra["advlab queries"] == r.seen
            notes.append(f"res.queries {'=' if same else 'DIFFERS FROM'} the count")
        if invalid.get(r.library):
            notes.append(f"WARNING {invalid[r.library]} x_adv outside the threat model")
        print(
            f"{r.library:<26} {r.seconds:8.2f} {ratio:8.2f} {values[r.library]:8.3f} "
            f"{r.per_image:12.0f}  {'; '.join(notes)}"
        )


# ------------------------------------------------------------------------------ sections
def one_pixel(
    clf: models.Classifier, counted: Counted, x: Tensor, y: Tensor, a: argparse.Namespace
) -> str:
    c = int(x.shape[1])
    params = (2 + c) * a.pixels
    a.population = max(a.population // params, 1) * params
    right = clf.logits(x, check=False).argmax(1) == y
    print(
        f"\n=== one-pixel: {a.pixels} pixel(s), population {a.population}, {a.generations} "
        f"generations, untargeted, {len(x)} images ({int(right.sum())} classified correctly) ==="
    )
    kw = {"pixels": a.pixels, "population": a.population, "generations": a.generations}
    rows = [Row("advlab")]
    rows[0].run = advlab_run("one-pixel", counted, clf, rows[0], **kw)
    rows[0].note = "DE/rand/1 F 0.5, no crossover, Gaussian init; duplicate images not re-queried"
    if not a.no_textbook:
        tb = Row("advlab skip_duplicates=F")
        tb.run = advlab_run("one-pixel", counted, clf, tb, skip_duplicates=False, **kw)
        tb.note = "every candidate queried (the paper's budget)"
        rows.append(tb)
    rows += [peer_one_pixel(peer, counted, clf, a) for peer in ("torchattacks", "art")]
    success: dict[str, float] = {}
    invalid: dict[str, int] = {}
    for r in rows:
        measure(r, counted, x, y)
        if r.x_adv is not None:
            broken, invalid[r.library] = verdict(clf, x, y, r.x_adv, pixels=a.pixels, eps=None)
            success[r.library] = float((broken & right).sum()) / max(int(right.sum()), 1)
    print_rows(rows, "success", success, invalid)
    return _summary("one-pixel", rows, success, higher_is_better=True)


def square(
    clf: models.Classifier, counted: Counted, x: Tensor, y: Tensor, a: argparse.Namespace
) -> list[str]:
    lines = []
    for q in a.square_queries:
        print(
            f"\n=== square Linf eps {a.square_eps:g}, {q} queries, p_init 0.8, one restart, "
            f"{len(x)} images ==="
        )
        rows = [Row("advlab")]
        rows[0].run = advlab_run("square", counted, clf, rows[0], eps=a.square_eps, n_queries=q)
        rows.append(peer_square(counted, a.square_eps, q))
        acc: dict[str, float] = {}
        invalid: dict[str, int] = {}
        for r in rows:
            measure(r, counted, x, y)
            if r.x_adv is not None:
                broken, invalid[r.library] = verdict(
                    clf, x, y, r.x_adv, pixels=None, eps=a.square_eps
                )
                acc[r.library] = 1 - float(broken.float().mean())
        print_rows(rows, "rob.acc", acc, invalid)
        lines.append(_summary(f"square {q}", rows, acc, higher_is_better=False))
    return lines


def _summary(what: str, rows: list[Row], value: dict[str, float], *, higher_is_better: bool) -> str:
    ours = rows[0]
    peers = [
        r
        for r in rows
        if not r.library.startswith("advlab")
        and r.error is None
        and r.x_adv is not None
        and not r.note.startswith("not comparable")
    ]
    if ours.x_adv is None or not peers:
        return f"{what:<12} (no comparison)"
    fastest = min(peers, key=lambda r: r.seconds)
    best = (
        max(value[r.library] for r in peers)
        if higher_is_better
        else min(value[r.library] for r in peers)
    )
    v = value[ours.library]
    strength = v >= best - 1e-9 if higher_is_better else v <= best + 1e-9
    speed = ours.seconds < fastest.seconds
    return (
        f"{what:<12} advlab {ours.seconds:7.2f}s {v:6.3f} | best peer value {best:6.3f}, fastest "
        f"peer {fastest.library} {fastest.seconds:7.2f}s ({fastest.seconds / ours.seconds:.2f}x) | "
        f"strength {'met' if strength else 'MISSED'}, speed {'met' if speed else 'MISSED'}"
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", choices=("mnist", "digits"), default="mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--n", type=int, default=100, help="images for square")
    p.add_argument("--n-pixel", type=int, default=20, help="images for one-pixel")
    p.add_argument("--pixels", type=int, default=1)
    p.add_argument("--population", type=int, default=400)
    p.add_argument("--generations", type=int, default=100)
    p.add_argument("--square-eps", type=float, default=0.15)
    p.add_argument(
        "--square-queries", type=lambda s: [int(v) for v in s.split(",")], default=[1000, 5000]
    )
    p.add_argument("--attacks", default="one-pixel,square")
    p.add_argument("--no-textbook", action="store_true", help="skip advlab skip_duplicates=False")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    # SciPy-style DE in the peers divides by a zero spread when asked never to converge
    warnings.filterwarnings("ignore", "divide by zero", RuntimeWarning)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    clf, how, x, y = load(a, device)
    counted = Counted(clf).eval()
    with torch.no_grad():  # warm the forward pass up
        for _ in range(3):
            counted(x)
    print(f"model: LeNet, {how}")
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    for peer in ("torchattacks", "art"):
        print(f"peer: {import_peer(peer)[1]}")
    todo = a.attacks.split(",")
    lines = []
    if "one-pixel" in todo:
        lines.append(one_pixel(clf, counted, x[: a.n_pixel], y[: a.n_pixel], a))
    if "square" in todo:
        lines += square(clf, counted, x[: a.n], y[: a.n], a)
    print(
        "\n=== summary: advlab vs the peers (one-pixel: success, higher is better; square: "
        "robust accuracy, lower is better) ==="
    )
    for line in lines:
        print(line)
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
