"""Checkpoints: safetensors + JSON sidecar round trip, wrong-architecture and missing errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from advlab import models
from advlab.models import CheckpointError, Classifier


def test_round_trip_rebuilds_preset(tmp_path: Path) -> None:
    torch.manual_seed(0)
    clf = models.build("lenet", input_shape=(1, 28, 28), mean=0.1307, std=0.3081)
    models.save(clf, tmp_path, dataset="mnist", metrics={"val_acc": 0.5})
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["preset"] == "lenet" and meta["dataset"] == "mnist"
    assert meta["torch_version"] == torch.__version__ and "advlab_version" in meta
    back = models.load(tmp_path)
    assert isinstance(back, Classifier) and not back.training
    assert back.bounds == clf.bounds
    x = torch.rand(3, 1, 28, 28)
    clf.eval()
    assert torch.equal(back(x), clf(x))
    # loading via the weights file path works too
    assert models.load(tmp_path / "weights.safetensors").preset == "lenet"


def test_wrong_architecture_is_a_clear_error(tmp_path: Path) -> None:
    models.save(models.build("lenet"), tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["preset"] = "madry-mnist"
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit the madry-mnist architecture"):
        models.load(tmp_path)


def test_bring_your_own_net(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    clf = Classifier(net, bounds=(-1.0, 1.0), input_shape=(6,), num_classes=3)
    models.save(clf, tmp_path)
    with pytest.raises(CheckpointError, match="bring-your-own"):
        models.load(tmp_path)
    back = models.load(tmp_path, net=nn.Sequential(nn.Flatten(), nn.Linear(6, 3)))
    x = torch.rand(2, 6) * 2 - 1
    assert torch.equal(back(x), clf(x))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        models.load(tmp_path, net=nn.Sequential(nn.Flatten(), nn.Linear(6, 4)))


def test_missing_or_corrupt_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        models.load(tmp_path / "nowhere")
    models.save(models.build("softmax"), tmp_path)
    (tmp_path / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        models.load(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        models.load(tmp_path)
