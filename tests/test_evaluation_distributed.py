"""Sharded evaluation (issue 5): 2 gloo processes give the numbers of one process."""

from __future__ import annotations

import datetime
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from advlab import data, models
from advlab.evaluation import evaluate
from advlab.utils import dist as dist_utils

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(240)]


def _model() -> models.Classifier:
    torch.manual_seed(0)
    return models.build("lenet", input_shape=(1, 8, 8), num_classes=10)


KW: dict[str, Any] = {
    "eps": [0.05, 0.1],
    "suite": "quick",
    "n": 90,
    "batch_size": 20,
    "audit_n": 30,
    "device": "cpu",
}


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(1)
    with dist_utils.process_group("cpu", timeout=datetime.timedelta(seconds=120)):
        report = evaluate(_model(), data.load("digits", "test"), **KW).to_dict()
        Path(out, f"rank{rank}.json").write_text(json.dumps(report))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_processes_equal_one(tmp_path: Path) -> None:
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    single = evaluate(_model(), data.load("digits", "test"), **KW).to_dict()
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["samples"] == single["samples"]
        for a, b in zip(got["per_eps"], single["per_eps"], strict=True):
            assert a["robust"] == b["robust"] and a["confusion"] == b["confusion"]
            assert [x["correct"] for x in a["attacks"]] == [x["correct"] for x in b["attacks"]]
        assert got["flags"] == single["flags"] and got["audit"] == single["audit"]
        assert got["config"]["world_size"] == 2
