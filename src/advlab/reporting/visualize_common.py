"""Helpers shared by the visualization figures (:mod:`advlab.reporting.visualize`).

Every figure is split in two: a ``compute_*`` function that runs the model (and, where the
figure is about an attack, the attack) and returns a plain ``dict`` of tensors, numbers and
strings, savable with :func:`save_data` (``.pt`` via ``torch.save``, loadable with
``weights_only=True``; ``.json`` for list-only data); and a ``plot_*`` function that takes only
that dict and returns a matplotlib ``Figure`` (save it with
:func:`advlab.reporting.plots.save_figure`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure
from torch import Tensor

from advlab.attacks.base import attack_mode
from advlab.models import Classifier
from advlab.utils.files import atomic_torch_save, atomic_write_json

Data = dict[str, Any]
DIVERGING = "RdBu_r"  # signed maps only, always with a labelled colorbar (negative blue, red +)
STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (3, 1, 1, 1, 1, 1)))
MARKERS = ("o", "s", "^", "v", "D", "x", "P", "*", "<", ">")


# ------------------------------------------------------------------------------- model access
@contextmanager
def frozen(clf: Classifier) -> Iterator[None]:
    """Run the body with ``clf`` in eval mode and its parameters frozen; both restored after
    (the same guard the attacks use), so no figure changes a model's mode or gradients."""
    if not isinstance(clf, Classifier):
        raise TypeError(
            f"model must be an advlab Classifier; got {type(clf).__name__} "
            "(wrap it: advlab.models.Classifier(net, bounds=..., mean=..., std=...))"
        )
    with attack_mode(clf, "eval"):
        yield


def check_batch(clf: Classifier, x: Tensor, name: str = "x") -> None:
    """``x`` must be a non-empty batch ``(N, ...)`` the model accepts (shape, bounds, no NaN)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch (N, ...); got {tuple(x.shape)}")
    clf.check_input(x)


def logits_of(clf: Classifier, x: Tensor) -> Tensor:
    """Logits ``(N, K)`` of ``x`` without gradients, in eval mode (mode restored)."""
    with frozen(clf), torch.no_grad():
        out: Tensor = clf.logits(x)
    return out.detach()


def labels_or_pred(x: Tensor, y: Tensor | None, logits: Tensor) -> Tensor:
    """``y`` checked against ``x`` and the class count, or the predicted labels when ``None``."""
    if y is None:
        return logits.argmax(1)
    if not isinstance(y, Tensor) or y.is_floating_point() or y.shape != (x.shape[0],):
        raise ValueError(f"y must be integer labels of shape ({x.shape[0]},); got {y!r:.80}")
    k = logits.shape[1]
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise ValueError(f"y must be in [0, {k}); got values in [{int(y.min())}, {int(y.max())}]")
    return y.to(device=x.device, dtype=torch.long)


def pred_conf(logits: Tensor) -> tuple[Tensor, Tensor]:
    """``(pred (N,), softmax confidence of pred (N,))`` on the CPU."""
    p = torch.softmax(logits.detach().float(), 1).cpu()
    conf, pred = p.max(1)
    return pred, conf


def cpu(t: Tensor) -> Tensor:
    return t.detach().to("cpu").clone()


# --------------------------------------------------------------------------------- data files
def save_data(data: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a figure's data atomically: ``.json`` (tensors become nested lists) or anything
    else with ``torch.save`` (read back with ``load_data``)."""
    p = Path(path)
    if p.suffix == ".json":
        return atomic_write_json(p, _jsonable(data))
    return atomic_torch_save(p, dict(data))


def load_data(path: str | os.PathLike[str]) -> Data:
    """Read what :func:`save_data` wrote (``.pt`` with ``weights_only=True``: no code runs)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no figure data at {p}")
    if p.suffix == ".json":
        out = json.loads(p.read_text())
    else:
        out = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(out, dict):
        raise ValueError(f"{p} does not hold a figure's data (a dict)")
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v.detach().cpu().tolist()
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def as_tensor(v: Any, dtype: torch.dtype | None = None) -> Tensor:
    """Data read back from JSON holds lists: accept both."""
    return torch.as_tensor(v, dtype=dtype)


# ------------------------------------------------------------------------------------ drawing
def image_array(t: Tensor) -> tuple[np.ndarray, str | None]:
    """One input ``(C, H, W)`` / ``(H, W)`` / ``(D,)`` in pixel units -> ``imshow`` array and
    colormap (``"gray"`` for one channel; RGB for three or more, first three shown)."""
    a = t.detach().float().cpu().numpy()
    if a.ndim == 1:
        return a[None, :], "gray"
    if a.ndim == 2:
        return a, "gray"
    if a.shape[0] >= 3:
        return np.transpose(a[:3], (1, 2, 0)), None
    return a[0], "gray"


def show_input(ax: Axes, t: Tensor, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
    """An input image on ``ax`` at its true grey levels (``bounds`` -> black..white)."""
    arr, cmap = image_array(t)
    if cmap is None:  # colour: rescale to [0, 1] for imshow
        arr = np.clip((arr - bounds[0]) / (bounds[1] - bounds[0]), 0, 1)
        ax.imshow(arr, interpolation="nearest")
    else:
        ax.imshow(arr, cmap=cmap, vmin=bounds[0], vmax=bounds[1], interpolation="nearest")
    no_ticks(ax)


def amplified(delta: Tensor) -> tuple[Tensor, float]:
    """``delta`` mapped to ``[0, 1]`` around mid-grey (``0`` -> 0.5, ``±max|delta|`` -> 0/1) and
    the amplification factor used (``0.5 / max|delta|``; 0 when ``delta`` is zero)."""
    linf = float(delta.abs().max()) if delta.numel() else 0.0
    if linf == 0:
        return torch.full_like(delta, 0.5), 0.0
    return 0.5 + 0.5 * delta / linf, 0.5 / linf


def channel_reduce(t: Tensor, how: str) -> Tensor:
    """One input's map ``(C, H, W)`` -> ``(H, W)``: ``"sum"`` over channels (signed maps) or
    ``"maxabs"`` (magnitude maps, Simonyan et al. 2014). ``(D,)`` -> ``(1, D)``."""
    if t.ndim == 1:
        return t[None, :]
    if t.ndim == 2:
        return t
    if how == "sum":
        return t.sum(0)
    return t.abs().amax(0)


def signed_map(
    ax: Axes,
    arr: np.ndarray | Tensor,
    *,
    vmax: float | None = None,
) -> Any:
    """A signed map in the diverging colormap, symmetric around 0; returns the image (for the
    colorbar, which the caller must add with a label)."""
    a = arr.detach().float().cpu().numpy() if isinstance(arr, Tensor) else np.asarray(arr)
    v = float(np.abs(a).max()) if vmax is None else vmax
    v = v if v > 0 else 1.0
    im = ax.imshow(a, cmap=DIVERGING, vmin=-v, vmax=v, interpolation="nearest")
    no_ticks(ax)
    return im


def no_ticks(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def colorbar(fig: Figure | SubFigure, im: Any, axes: Any, label: str) -> None:
    fig.colorbar(im, ax=axes, label=label, shrink=0.9)


def image_name(data: Mapping[str, Any], i: int) -> str:
    """``"#7"``: the dataset index of image ``i`` when the data records ``"indices"`` (the
    command line does), else its position in the batch."""
    indices = data.get("indices")
    return f"#{int(indices[i])}" if indices is not None else f"#{i}"
