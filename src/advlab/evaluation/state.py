"""Resumable evaluation state: one atomically written file per finished batch.

``<dir>/config.json`` holds the fingerprint of the run (suite, eps, norm, seed, batch size, a
checksum of the data and of the model's weights); ``<dir>/batch_00012.pt`` holds batch 12's
record. A resumed run loads the finished batches and computes only the others; a state folder
written for a different run is refused rather than mixed in.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advlab.utils.files import atomic_torch_save, atomic_write_json


def tensor_digest(*tensors: Tensor) -> str:
    """A short SHA-256 of the tensors' bytes (CPU copies, in order)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def model_digest(model: nn.Module) -> str:
    return tensor_digest(*(t for _, t in sorted(model.state_dict().items())))


class EvalState:
    def __init__(self, folder: str | Path, fingerprint: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back from disk
        cfg = self.folder / "config.json"
        if cfg.is_file():
            try:
                old = json.loads(cfg.read_text())
            except (OSError, ValueError):
                old = None
            if old != self.fingerprint:
                raise ValueError(
                    f"the evaluation state in {self.folder} was written for a different run "
                    "(model, data, suite, eps, norm, seed or batch size differ); delete it or "
                    "choose another output folder"
                )

    def _path(self, batch: int) -> Path:
        return self.folder / f"batch_{batch:05d}.pt"

    def start(self) -> None:
        atomic_write_json(self.folder / "config.json", self.fingerprint)

    def load(self, batch: int) -> dict[str, Any] | None:
        path = self._path(batch)
        if not path.is_file():
            return None
        try:
            record: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged file is recomputed, never trusted
            return None
        return record if record.get("batch") == batch else None

    def save(self, batch: int, record: dict[str, Any]) -> None:
        atomic_torch_save(self._path(batch), record)
