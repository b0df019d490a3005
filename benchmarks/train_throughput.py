"""Training-loop throughput: advlab's ``train`` vs hand-written PyTorch loops, in one run.

Same model (a zoo preset wrapped in a Classifier), same data (MNIST, or the bundled digits when
MNIST is not available), same batch size, same optimizer. Prints images/s for:

  * advlab      ``advlab.defenses.training.train`` (one epoch, no validation)
  * plain       a hand-written loop over in-memory tensors with a shuffled index
                (the fastest loop a careful user writes by hand)
  * dataloader  a hand-written loop over ``torch.utils.data.DataLoader(TensorDataset)``
                (the textbook loop)

and the ratios advlab / plain and advlab / dataloader. Each loop runs ``--repeats`` times after
a warm-up epoch; the median is reported.

    python benchmarks/train_throughput.py --model lenet --batch-size 128 --limit 20000
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from advlab import data, models
from advlab.defenses.training import TrainConfig, train

os.environ.setdefault("ADVLAB_PROGRESS", "0")


def _load(limit: int) -> data.TensorData:
    try:
        d = data.load("mnist", "train", download=False)
    except data.DatasetNotFoundError:
        d = data.load("digits", "train")
    return d.subset(slice(0, limit)) if limit else d


def _fresh(name: str, d: data.TensorData, device: torch.device) -> models.Classifier:
    torch.manual_seed(0)
    return models.build(name, input_shape=d.input_shape, num_classes=d.num_classes).to(device)


def bench_advlab(name: str, d: data.TensorData, bs: int, device: torch.device) -> float:
    clf = _fresh(name, d, device)
    cfg = TrainConfig(epochs=1, batch_size=bs, lr=1e-3, device=str(device), amp=False)
    t0 = time.perf_counter()
    train(clf, d, None, cfg)
    _sync(device)
    return len(d) / (time.perf_counter() - t0)


def bench_plain(name: str, d: data.TensorData, bs: int, device: torch.device) -> float:
    clf = _fresh(name, d, device)
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    x, y = d.x.to(device), d.y.to(device)
    t0 = time.perf_counter()
    clf.train()
    perm = torch.randperm(len(x), device=device)
    for i in range(0, len(x), bs):
        idx = perm[i : i + bs]
        loss = F.cross_entropy(clf.logits(x[idx], check=False), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.detach())  # a hand-written loop logs its loss too
    _sync(device)
    return len(x) / (time.perf_counter() - t0)


def bench_dataloader(name: str, d: data.TensorData, bs: int, device: torch.device) -> float:
    clf = _fresh(name, d, device)
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(d.x, d.y), batch_size=bs, shuffle=True)
    t0 = time.perf_counter()
    clf.train()
    for xb, yb in loader:
        loss = F.cross_entropy(clf.logits(xb.to(device), check=False), yb.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.detach())
    _sync(device)
    return len(d) / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="lenet")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--limit", type=int, default=20000, help="training images (0 = all)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from advlab.utils import resolve_device

    device = resolve_device(args.device)
    d = _load(args.limit)
    loops: dict[str, Callable[[str, data.TensorData, int, torch.device], float]] = {
        "advlab": bench_advlab,
        "plain": bench_plain,
        "dataloader": bench_dataloader,
    }
    for fn in loops.values():  # warm-up
        fn(args.model, d.subset(slice(0, 2 * args.batch_size)), args.batch_size, device)
    rates: dict[str, list[float]] = {k: [] for k in loops}
    for _ in range(args.repeats):  # interleaved so machine noise hits every loop alike
        for k, fn in loops.items():
            rates[k].append(fn(args.model, d, args.batch_size, device))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"model {args.model}, {d.name} x{len(d)}, batch {args.batch_size}, device {device}, "
        f"torch threads {torch.get_num_threads()}, median of {args.repeats}"
    )
    for k, v in med.items():
        print(f"  {k:<11} {v:10.0f} images/s   (runs: {', '.join(f'{r:.0f}' for r in rates[k])})")
    print(f"  ratio advlab/plain      {med['advlab'] / med['plain']:.3f}")
    print(f"  ratio advlab/dataloader {med['advlab'] / med['dataloader']:.3f}")


if __name__ == "__main__":
    main()
