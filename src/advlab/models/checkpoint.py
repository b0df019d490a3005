"""Checkpoints: weights in safetensors plus a JSON sidecar that says how to rebuild the model.

A checkpoint is a folder with ``weights.safetensors`` (tensors only: loading never unpickles
arbitrary objects) and ``model.json`` (schema_version, preset name and arguments, bounds,
mean/std, num_classes, input_shape, dataset, training recipe, metrics, advlab and torch
versions). :func:`load` rebuilds the :class:`Classifier` from a zoo preset, or loads the
weights into a network you pass (bring-your-own architectures).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from advlab._version import __version__
from advlab.models.classifier import Classifier
from advlab.utils.files import atomic_write_json

WEIGHTS = "weights.safetensors"
META = "model.json"
SCHEMA_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the requested architecture."""


def _folder(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.parent if p.name in (WEIGHTS, META) else p


def save(
    clf: Classifier,
    path: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    recipe: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``clf`` to the folder ``path`` (created if needed); returns the folder.

    Both files are written atomically (weights first, then the sidecar), so an interrupted save
    leaves the previous checkpoint readable.
    """
    if not isinstance(clf, Classifier):
        raise TypeError(f"save() takes a Classifier; got {type(clf).__name__}")
    folder = _folder(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in clf.state_dict().items()}
    tmp = folder / f".{WEIGHTS}.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / WEIGHTS)
    meta = {
        "schema_version": SCHEMA_VERSION,
        **_architecture(clf),
        "dataset": dataset,
        "recipe": recipe or {},
        "metrics": metrics or {},
        "extra": extra or {},
        "advlab_version": __version__,
        "torch_version": torch.__version__,
        "saved_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    atomic_write_json(folder / META, meta)
    return folder


class DefenseHooks:
    """How checkpoints describe and rebuild defended models. ``advlab.defenses`` (a higher
    layer) installs them on import, so this module never imports it (DESIGN §2)."""

    describe: Callable[[Classifier], dict[str, Any] | None] | None = None
    rebuild: Callable[..., Classifier] | None = None


def set_defense_hooks(
    describe: Callable[[Classifier], dict[str, Any] | None], rebuild: Callable[..., Classifier]
) -> None:
    """``describe(clf)`` -> a defense spec (``None`` for a plain model); ``rebuild(name,
    *bases, **args)`` -> the untrained defended model."""
    DefenseHooks.describe = describe
    DefenseHooks.rebuild = rebuild


def _architecture(clf: Classifier) -> dict[str, Any]:
    """What rebuilds ``clf`` before its weights are loaded (a defense: its spec and bases)."""
    arch: dict[str, Any] = {
        "preset": clf.preset,
        "preset_args": clf.preset_args,
        "bounds": [clf.low.tolist(), clf.high.tolist()],
        "mean": None if clf.mean is None else clf.mean.tolist(),
        "std": None if clf.std is None else clf.std.tolist(),
        "num_classes": clf.num_classes,
        "input_shape": None if clf.input_shape is None else list(clf.input_shape),
        "outputs": clf.outputs,
    }
    spec = DefenseHooks.describe(clf) if DefenseHooks.describe is not None else None
    if spec is not None:
        spec["bases"] = [_architecture(b) for b in getattr(clf, "bases", [])]
        arch["defense"] = spec
    return arch


def _rebuild(meta: dict[str, Any], net: nn.Module | None, where: Path) -> Classifier:
    """An untrained Classifier with the architecture ``meta`` describes."""
    from advlab.models.zoo import build  # zoo imports classifier; keep import order one-way

    spec = meta.get("defense")
    if spec is not None:
        if DefenseHooks.rebuild is None:
            raise CheckpointError(
                f"{where} holds a defended model ({spec.get('name')}); import advlab.defenses "
                "to load it"
            )
        bases = [_rebuild(b, None, where) for b in spec.get("bases", [])]
        return DefenseHooks.rebuild(spec["name"], *bases, **spec.get("args", {}))
    common: dict[str, Any] = {
        "bounds": tuple(meta["bounds"]),
        "mean": meta["mean"],
        "std": meta["std"],
    }
    if net is not None:
        return Classifier(
            net,
            num_classes=meta["num_classes"],
            input_shape=meta["input_shape"],
            outputs=meta.get("outputs", "logits"),
            **common,
        )
    if meta.get("preset"):
        return build(meta["preset"], **meta["preset_args"], **common)
    raise CheckpointError(
        f"{where} holds a bring-your-own model (no preset); pass its network: "
        "load(path, net=MyNet())"
    )


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of the checkpoint at ``path`` (a folder, or one of its two files)."""
    file = _folder(path) / META
    if not file.is_file():
        raise CheckpointError(f"no checkpoint at {_folder(path)}: {META} not found")
    try:
        meta: dict[str, Any] = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {file}: {e}") from None
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(
            f"{file} has schema_version {meta.get('schema_version')!r}; this advlab reads "
            f"{SCHEMA_VERSION}"
        )
    return meta


def load(
    path: str | os.PathLike[str],
    *,
    net: nn.Module | None = None,
    device: str | torch.device = "cpu",
) -> Classifier:
    """Rebuild the :class:`Classifier` saved at ``path`` and put it in eval mode on ``device``.

    With ``net=None`` the architecture comes from the zoo preset named in the sidecar; pass
    ``net`` for a bring-your-own architecture. Weights that do not fit the architecture raise
    :class:`CheckpointError` listing the missing, unexpected and mis-shaped tensors.
    """
    folder = _folder(path)
    meta = read_meta(folder)
    if net is not None and meta.get("defense"):
        raise CheckpointError(
            f"{folder} holds a defended model ({meta['defense'].get('name')}); its bases are "
            "rebuilt from their presets, so net= cannot be used"
        )
    clf = _rebuild(meta, net, folder)
    load_weights(clf, folder / WEIGHTS)
    clf.eval()
    return clf.to(device)


def load_weights(clf: Classifier, file: str | os.PathLike[str]) -> None:
    """Load a safetensors file into ``clf`` strictly, with a readable error on mismatch."""
    try:
        state = load_file(str(file))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"cannot read weights {file}: {e}") from None
    own = clf.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mis_shaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if missing or unexpected or mis_shaped:
        what = clf.preset or type(clf.net).__name__
        parts = [
            f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
            for label, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("shape mismatch (file vs model)", mis_shaped),
            )
            if items
        ]
        raise CheckpointError(
            f"weights in {file} do not fit the {what} architecture; " + "; ".join(parts)
        )
    clf.load_state_dict(state)
