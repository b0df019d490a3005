"""Data-parallel training (DESIGN §7): two CPU processes with gloo.

- 2 processes with global batch 32 reach the weights of 1 process with batch 32 (float rounding
  differs: DDP averages two 16-sample means; tolerance rtol 1e-5, atol 1e-6);
- a DDP run interrupted in epoch 2 (Ctrl-C on every process) and resumed from other initial
  weights ends exactly where an uninterrupted DDP run ends;
- only rank 0 writes files (checked with an audit hook in every process);
- ``torchrun -m advlab train`` end to end.

Processes are started with ``torch.multiprocessing`` (spawn) or ``torch.distributed.run`` on a
free port of 127.0.0.1, with timeouts everywhere so that a hang fails instead of blocking.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from advlab import data, models
from advlab.cli.main import main as cli_main
from advlab.defenses.training import Standard, TrainConfig, train
from advlab.models import Classifier
from advlab.utils import dist as dist_utils

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(240)]

WORLD = 2
LAUNCH_TIMEOUT = 150.0  # seconds for one 2-process launch
CFG = TrainConfig(epochs=2, batch_size=32, lr=3e-3, device="cpu", seed=3)  # Adam, cosine
RTOL, ATOL = 1e-5, 1e-6


def _data() -> tuple[data.TensorData, data.TensorData]:
    # 300 training samples: 9 batches of 32 and a last one of 12 (6 per process)
    full = data.load("synthetic", "train", n=400, num_classes=3, seed=1)
    return data.train_val_split(full, 0.25, seed=0)


def _model(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return models.build("mlp", input_shape=(1, 8, 8), num_classes=3)  # no dropout


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread, like each worker: on a busy 2-core machine 2 threads are far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Interrupt(Standard):
    """Raises KeyboardInterrupt at a given global step (on every process, like Ctrl-C)."""

    def __init__(self, at: int) -> None:
        self.at, self.seen = at, 0

    def loss(self, model: Classifier, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        self.seen += 1
        if self.seen == self.at:
            raise KeyboardInterrupt
        return super().loss(model, x, y)

    def config(self) -> dict[str, Any]:
        return {"name": "standard"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _record_writes(root: str, seen: list[str]) -> None:
    """Install an audit hook that records every file creation/write/rename/mkdir under root."""
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def hook(event: str, args: tuple[Any, ...]) -> None:
        try:
            if event == "open":
                path, mode, flags = args
                writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
                    isinstance(flags, int) and flags & write_flags
                )
            elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "os.truncate"):
                path, writing = args[0], True
            else:
                return
            if writing and isinstance(path, str | bytes | os.PathLike):
                full = os.path.abspath(os.fsdecode(path))
                if full.startswith(root):
                    seen.append(f"{event} {full}")
        except Exception:  # an audit hook must never break the audited call
            return

    sys.addaudithook(hook)


def _worker(rank: int, world: int, port: int, jobs: list[dict[str, Any]], tmp: str) -> None:
    """One process of a launch: join the group, run the training jobs, report to tmp/reports."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        ADVLAB_PROGRESS="0",
    )
    torch.set_num_threads(1)
    seen: list[str] = []
    _record_writes(os.path.join(tmp, "runs"), seen)
    reports = Path(tmp) / "reports"
    tr, va = _data()
    with dist_utils.process_group("cpu", timeout=datetime.timedelta(seconds=60)) as started:
        assert started and dist_utils.world_size() == world and dist_utils.rank() == rank
        for job in jobs:
            cfg = TrainConfig(**{**CFG.to_dict(), **job.get("config", {})})
            clf = _model(job.get("init_seed", 0))
            if job.get("expect_error"):
                try:
                    train(clf, tr, va, cfg)
                except ValueError as e:
                    outcome: dict[str, Any] = {"error": str(e)}
                else:
                    outcome = {"error": None}
            elif job.get("interrupt_at"):
                out = os.path.join(tmp, "runs", job["name"])
                try:
                    train(clf, tr, va, cfg, recipe=_Interrupt(job["interrupt_at"]), out=out)
                except KeyboardInterrupt:
                    saved = torch.load(os.path.join(out, "train_state.pt"), weights_only=True)
                    outcome = {"interrupted": True, "saved_epoch": saved["epoch"]}
                else:
                    outcome = {"interrupted": False}
            else:
                out = os.path.join(tmp, "runs", job["name"])
                res = train(clf, tr, va, cfg, out=out, resume=job.get("resume", False))
                outcome = {"state": clf.state_dict(), "history": res.history}
            torch.save(outcome, reports / f"{job['tag']}-rank{rank}.pt")
    (reports / f"writes-rank{rank}-{port}.json").write_text(json.dumps(seen))


def _launch(tmp: Path, jobs: list[dict[str, Any]]) -> int:
    """Run ``jobs`` in WORLD spawned processes; fail (not hang) after LAUNCH_TIMEOUT seconds."""
    (tmp / "reports").mkdir(parents=True, exist_ok=True)
    port = _free_port()
    ctx = torch.multiprocessing.start_processes(
        _worker,
        args=(WORLD, port, jobs, str(tmp)),
        nprocs=WORLD,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while not ctx.join(timeout=1.0):  # raises when a process fails (and stops the others)
        if time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            pytest.fail(f"the {WORLD}-process run did not finish within {LAUNCH_TIMEOUT:.0f} s")
    return port


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One launch runs, in order: an uninterrupted 2-epoch run; the same run interrupted in
    epoch 2; its resumption from other initial weights (a new model, optimizer and DDP wrapper
    that get everything from the saved state); a batch size that does not divide."""
    tmp = tmp_path_factory.mktemp("ddp")
    port = _launch(
        tmp,
        [
            {"tag": "full", "name": "full"},
            {"tag": "part", "name": "resume", "interrupt_at": 15},  # 10 steps per epoch
            {"tag": "resumed", "name": "resume", "resume": True, "init_seed": 123},
            {"tag": "bad", "expect_error": True, "config": {"batch_size": 33}},
        ],
    )

    def report(tag: str, rank: int) -> dict[str, Any]:
        out: dict[str, Any] = torch.load(tmp / "reports" / f"{tag}-rank{rank}.pt")
        return out

    writes = {
        rank: json.loads((tmp / "reports" / f"writes-rank{rank}-{port}.json").read_text())
        for rank in range(WORLD)
    }
    return {"tmp": tmp, "report": report, "writes": writes}


def test_two_processes_match_one_process_with_the_same_global_batch(
    runs: dict[str, Any], one_thread: None
) -> None:
    tr, va = _data()
    single = _model(0)
    ref = train(single, tr, va, CFG)
    rank0, rank1 = runs["report"]("full", 0), runs["report"]("full", 1)
    for k, v in rank0["state"].items():  # DDP keeps the replicas identical
        assert torch.equal(v, rank1["state"][k]), k
    for k, v in single.state_dict().items():
        torch.testing.assert_close(rank0["state"][k], v, rtol=RTOL, atol=ATOL, msg=k)
    # the history is global: all-reduced sums over both shards
    for got, want in zip(rank0["history"], ref.history, strict=True):
        for key in ("train_loss", "val_loss"):
            assert got[key] == pytest.approx(want[key], rel=1e-5), key
        for key in ("train_acc", "val_acc", "lr", "epoch"):
            assert got[key] == pytest.approx(want[key], abs=1e-9), key
    # the checkpoint holds the unwrapped weights (no DDP "module." prefix) of rank 0
    back = models.load(runs["tmp"] / "runs" / "full")
    for k, v in back.state_dict().items():
        assert torch.equal(v, rank0["state"][k]), k
    state = torch.load(runs["tmp"] / "runs" / "full" / "train_state.pt", weights_only=True)
    assert set(state["model"]) == set(single.state_dict())


def test_resume_under_ddp_matches_an_uninterrupted_run(runs: dict[str, Any]) -> None:
    full, resumed = runs["report"]("full", 0), runs["report"]("resumed", 0)
    for rank in range(WORLD):  # Ctrl-C in epoch 2: epoch 1 is committed for every process
        part = runs["report"]("part", rank)
        assert part["interrupted"] and part["saved_epoch"] == 1
    assert [r["epoch"] for r in resumed["history"]] == [1.0, 2.0]
    # bit-identical: same shards and seeds, and with 2 processes every all-reduced value is a
    # sum of two terms, whatever DDP's bucket layout (rebuilt after the first step of each run)
    for k, v in full["state"].items():
        assert torch.equal(resumed["state"][k], v), k
        assert torch.equal(runs["report"]("resumed", 1)["state"][k], v), k
    timing = {"seconds", "images_per_s"}
    for got, want in zip(resumed["history"], full["history"], strict=True):
        assert {k: v for k, v in got.items() if k not in timing} == {
            k: v for k, v in want.items() if k not in timing
        }


def test_only_rank_zero_writes_files(runs: dict[str, Any]) -> None:
    writes = runs["writes"]
    assert writes[0], "the audit hook saw no writes on rank 0"
    assert any("weights.safetensors" in w for w in writes[0])
    assert any("train_state.pt" in w for w in writes[0])
    assert writes[1] == []
    folder = runs["tmp"] / "runs" / "full"
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
    assert names == [
        "best",
        "best/model.json",
        "best/weights.safetensors",
        "model.json",
        "train_state.pt",
        "weights.safetensors",
    ]


def test_global_batch_must_divide_among_processes(runs: dict[str, Any]) -> None:
    for rank in range(WORLD):
        error = runs["report"]("bad", rank)["error"]
        assert error is not None and "global batch" in error and "(2)" in error


def test_torchrun_cli_matches_one_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    """``torchrun --nproc_per_node=2 -m advlab train`` end to end, against the same command in
    one process: same weights (within tolerance), one summary line, rank-0 files."""
    common = [
        "train",
        "--model",
        "mlp",
        "--dataset",
        "synthetic",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--limit",
        "480",  # 432 training samples (even: no padding), 48 validation
        "--device",
        "cpu",
        "--set",
        "model_args={hidden=[32]}",
    ]
    port = _free_port()
    env = {
        **os.environ,
        "ADVLAB_PROGRESS": "0",
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={WORLD}",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        "-m",
        "advlab",
        "-q",
        *common,
        "--out",
        str(tmp_path / "ddp"),
    ]
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=LAUNCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its workers
        proc.communicate()
        pytest.fail(f"torchrun did not finish within {LAUNCH_TIMEOUT:.0f} s")
    assert proc.returncode == 0, err
    assert out.count("test acc") == 1, out  # rank 0 prints, rank 1 does not
    for name in ("config.json", "eval.json", "weights.safetensors", "train_state.pt"):
        assert (tmp_path / "ddp" / name).is_file(), name

    assert cli_main(["-q", *common, "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    ddp, one = models.load(tmp_path / "ddp"), models.load(tmp_path / "one")
    for k, v in one.state_dict().items():
        torch.testing.assert_close(ddp.state_dict()[k], v, rtol=RTOL, atol=ATOL, msg=k)
    a = json.loads((tmp_path / "ddp" / "eval.json").read_text())
    b = json.loads((tmp_path / "one" / "eval.json").read_text())
    assert a["n"] == b["n"] and abs(a["accuracy"] - b["accuracy"]) <= 1 / a["n"]
