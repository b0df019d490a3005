"""Reproductions of the seed decks' tables (registry ``reproductions``; DESIGN §2, issue 8).

A reproduction trains what it needs with advlab (models are cached by a key that names their
architecture, recipe, data size and seed), runs the paper's protocol and returns
:class:`Cell` values: our number beside the paper's. :func:`run` writes ``results.json``,
``table.md`` (paper | ours | difference, misses marked and explained) and the figures to the
output folder. ``quick=True`` keeps the protocol but uses fewer epochs, images and steps.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import re
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advlab._version import __version__
from advlab.attacks import Attack
from advlab.data import TensorData
from advlab.data import load as load_data
from advlab.defenses.training import Recipe, TrainConfig, train
from advlab.defenses.training.loop import STATE
from advlab.models import Classifier, build, load, save
from advlab.models.checkpoint import CheckpointError
from advlab.registry import Registry
from advlab.reproduce._runs import Outputs, check_batches, join, run_batch
from advlab.reproduce.tables import render_table
from advlab.utils.device import resolve_device
from advlab.utils.files import atomic_torch_save, atomic_write_json, atomic_write_text

SCHEMA_VERSION = 1
PARTIAL_JSON, PARTIAL_MD = "partial.json", "partial.md"  # a run in progress


@dataclass
class Cell:
    """One number of a table: ``ours`` beside ``paper`` (``None``: not reported / not run).

    ``unit`` is ``"%"`` (values in percent), ``"rate"`` (0–1) or a distance name; ``tolerance``
    is how far ours may be from the paper's value and still count as reproduced (``None``: only
    shown); ``note`` explains a known difference.
    """

    table: str
    row: str
    column: str
    paper: float | None
    ours: float | None
    unit: str = "%"
    tolerance: float | None = None
    note: str = ""
    bound: str = ""  # "": |ours - paper| <= tolerance; "max": ours <= paper + tol; "min": >=

    @property
    def difference(self) -> float | None:
        if self.paper is None or self.ours is None:
            return None
        return self.ours - self.paper

    @property
    def status(self) -> str:
        """``"ok"``, ``"miss"`` (outside the tolerance) or ``""`` (nothing to compare)."""
        d = self.difference
        if d is None or self.tolerance is None:
            return ""
        if self.bound == "max":
            return "ok" if d <= self.tolerance else "miss"
        if self.bound == "min":
            return "ok" if d >= -self.tolerance else "miss"
        return "ok" if abs(d) <= self.tolerance else "miss"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "difference": self.difference, "status": self.status}


@dataclass
class Outcome:
    cells: list[Cell]
    notes: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What a reproduction may use: output and cache folders, device, seed, quick mode."""

    out: Path
    cache: Path
    quick: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    data_dir: str | None = None
    log: Callable[[str], None] = print
    name: str = ""  # the reproduction's registry name (set by :func:`run`)
    started: float = field(default_factory=time.perf_counter)

    def data(self, name: str, split: str, n: int | None = None) -> TensorData:
        """A dataset split, optionally its first ``n`` samples (on the CPU)."""
        d = load_data(name, split, data_dir=self.data_dir)
        return d if n is None or n >= len(d) else d.subset(range(n))

    def model(
        self,
        key: str,
        preset: str,
        train_data: TensorData,
        config: TrainConfig,
        recipe: Recipe | None = None,
        **preset_args: Any,
    ) -> Classifier:
        """The model cached under ``key`` (``cache/key``), trained now if it is not there yet.

        Training checkpoints every epoch in ``cache/key.partial``: a run that is killed resumes
        from its last finished epoch next time (the weights equal an uninterrupted run's on
        CPU); a partial run with other settings is discarded. The folder goes once the model
        is saved."""
        folder = self.cache / key
        if (folder / "model.json").is_file():
            try:
                self.log(f"[cache] {key}")
                return load(folder, device=self.device)
            except CheckpointError as err:
                self.log(f"[cache] {key} unreadable ({err}); training again")
        partial = self.cache / f"{key}.partial"
        cfg = TrainConfig(**{**config.to_dict(), "device": str(self.device), "keep_best": False})
        self.log(f"[train] {key}: {preset}, {config.epochs} epoch(s) on {len(train_data)} samples")
        t0 = time.perf_counter()
        for attempt in range(2):
            with torch.random.fork_rng(devices=[]):  # initial weights from the seed
                torch.manual_seed(self.seed)
                clf = build(preset, **preset_args)
            resume = (partial / STATE).is_file()
            if resume:
                self.log(f"[train] {key}: resuming from {partial.name}")
            try:
                result = train(
                    clf, train_data, None, cfg, recipe=recipe, out=partial, resume=resume
                )
                break
            except ValueError as err:
                if attempt or "cannot resume" not in str(err):
                    raise
                self.log(f"[train] {key}: discarding {partial.name} ({err})")
                shutil.rmtree(partial)
        seconds = sum(float(h.get("seconds", 0.0)) for h in result.history)
        save(clf, folder, dataset=train_data.name, metrics={"train_seconds": seconds})
        shutil.rmtree(partial, ignore_errors=True)
        self.log(
            f"[train] {key}: done in {time.perf_counter() - t0:.0f} s "
            f"({len(result.history)} epochs, {seconds:.0f} s of training in all)"
        )
        return clf.to(self.device).eval()

    def partial(self, cells: list[Cell]) -> None:
        """Write the cells finished so far to ``out/partial.md`` and ``out/partial.json``
        (atomically; the same layout as ``table.md`` / ``results.json``, marked in progress),
        so that a long run's numbers can be read before it ends and survive a kill.
        :func:`run` removes both files once it has written the final ones."""
        doc = _document(self, Outcome(list(cells)), partial=True)
        atomic_write_json(self.out / PARTIAL_JSON, doc)
        atomic_write_text(self.out / PARTIAL_MD, render_table(doc))

    def attacked(
        self,
        key: str,
        attack: Attack,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        *,
        target: Tensor | None = None,
        batch: int = 250,
    ) -> Outputs:
        """``attack`` run on ``(x, y)`` (towards ``target``, one class per input, if given)
        against ``model``, ``batch`` inputs at a time: its points, predictions, successes and
        perturbation sizes, on ``x``'s device.

        Every finished batch is kept in ``cache/key.pt`` (written atomically), so a run killed
        during a long attack resumes at its first unfinished batch, and a later run with the
        same attack, inputs, targets and model weights reads the results instead of running
        the attack again. A file from another attack, other inputs or other weights is
        replaced."""
        check_batches(y, target, batch)
        path = self.cache / f"{key}.pt"
        stamp = {
            "attack": repr(attack),
            "batch": batch,
            "x": _digest(x),
            "y": _digest(y),
            "target": None if target is None else _digest(target),
            "model": _digest(*(v for v in model.state_dict().values() if isinstance(v, Tensor))),
        }
        parts: list[Outputs] = []
        if path.is_file():
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
                if saved["stamp"] == stamp:
                    parts = [Outputs(**p) for p in saved["parts"]]
                else:
                    self.log(f"[cache] {key}: from another run; attacking again")
            except Exception as err:  # a truncated or foreign file
                self.log(f"[cache] {key} unreadable ({err}); attacking again")
        if parts:
            self.log(f"[cache] {key}: {min(len(parts) * batch, len(x))} of {len(x)} inputs done")
        for i in range(len(parts) * batch, x.shape[0], batch):
            t = None if target is None else target[i : i + batch]
            parts.append(run_batch(attack, model, x[i : i + batch], y[i : i + batch], t).to("cpu"))
            atomic_torch_save(path, {"stamp": stamp, "parts": [p.to_dict() for p in parts]})
        return join(parts, x.device)


def slug(text: str) -> str:
    """A cache-key fragment: ``"FGSM Linf eps 0.010"`` -> ``"fgsm-linf-eps-0-010"``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _digest(*tensors: Tensor) -> str:
    """A SHA-1 of the tensors' shapes, dtypes and values (to recognise cached results)."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class Reproduction(ABC):
    """Base class: set ``name``, ``title``, ``papers`` and implement :meth:`run`."""

    name: str = ""
    title: str = ""
    papers: tuple[str, ...] = ()
    data: str = "mnist"

    @abstractmethod
    def run(self, ctx: Context) -> Outcome:
        """Train what the tables need, run the protocol, return the cells and notes."""


reproductions: Registry[Reproduction] = Registry("reproduction")


def _hardware(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run(
    name: str,
    out: str | os.PathLike[str],
    *,
    quick: bool = False,
    device: str | torch.device = "auto",
    seed: int = 0,
    cache: str | os.PathLike[str] | None = None,
    data_dir: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run reproduction ``name`` and write ``results.json`` and ``table.md`` into ``out``."""
    repro = reproductions.build(name)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    cache_dir = Path(cache) if cache is not None else folder / "models"
    ctx = Context(folder, cache_dir, quick, dev, seed, data_dir, log, name=repro.name)
    outcome = repro.run(ctx)
    doc = _document(ctx, outcome)
    atomic_write_json(folder / "results.json", doc)
    atomic_write_text(folder / "table.md", render_table(doc))
    for leftover in (PARTIAL_JSON, PARTIAL_MD):
        (folder / leftover).unlink(missing_ok=True)
    return doc


def _document(ctx: Context, outcome: Outcome, *, partial: bool = False) -> dict[str, Any]:
    """The ``results.json`` document of ``ctx``'s reproduction (``partial``: still running)."""
    repro = reproductions.build(ctx.name) if ctx.name else None
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": ctx.name,
        "title": repro.title if repro else ctx.name,
        "papers": list(repro.papers) if repro else [],
        "quick": ctx.quick,
        "seed": ctx.seed,
        "seconds": time.perf_counter() - ctx.started,
        "hardware": _hardware(ctx.device),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "advlab_version": __version__,
        "torch_version": torch.__version__,
        "config": outcome.config,
        "cells": [c.to_dict() for c in outcome.cells],
        "notes": outcome.notes,
        "figures": outcome.figures,
    }
    if partial:
        doc["partial"] = True
    return doc
