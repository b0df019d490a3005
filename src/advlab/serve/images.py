"""Images in and out of the JSON API: float grids or base64 PNG in, float grids out.

An image is grayscale, white digit on black as in MNIST: 0 = background, 1 = ink.
Accepted sizes are the model's own ``H x W``, 28 x 28 and 280 x 280 (the page's drawing
canvas); others are refused. A larger image is reduced to the model's size by area averaging
(``F.interpolate(mode="area")``); nothing is centred or rescaled (the page does MNIST-style
centring before it sends a drawing).
"""

from __future__ import annotations

import base64
import binascii
import io
import math

import torch
import torch.nn.functional as F
from torch import Tensor

CANVAS = 280
MNIST = 28
MAX_SIDE = CANVAS
MAX_PNG_CHARS = 400_000  # base64 characters (~300 kB of PNG)


class ImageError(ValueError):
    """An image the API refuses; the message says what was expected and what came."""


def allowed_sizes(model_hw: tuple[int, int]) -> list[tuple[int, int]]:
    sizes = [model_hw, (MNIST, MNIST), (CANVAS, CANVAS)]
    return sorted(set(sizes))


def _check_size(hw: tuple[int, int], model_hw: tuple[int, int]) -> None:
    allowed = allowed_sizes(model_hw)
    if hw not in allowed:
        names = ", ".join(f"{h}x{w}" for h, w in allowed)
        raise ImageError(f"image must be {names} (rows x columns); got {hw[0]}x{hw[1]}")


def grid_to_tensor(rows: list[list[float]], model_hw: tuple[int, int]) -> Tensor:
    """A list of rows of floats in [0, 1] -> ``(H, W)`` float32, checked (rectangular, allowed
    size, finite, in range)."""
    if not rows:
        raise ImageError("image is empty; send a list of rows of floats in [0, 1]")
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        lengths = sorted({len(r) for r in rows})
        raise ImageError(f"image rows must all have the same length; got lengths {lengths}")
    _check_size((len(rows), width), model_hw)
    x = torch.tensor(rows, dtype=torch.float32)  # (H, W)
    if not bool(torch.isfinite(x).all()):
        raise ImageError("image contains NaN or infinite values; send floats in [0, 1]")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ImageError(f"image values must be in [0, 1]; got values in [{lo:g}, {hi:g}]")
    return x


def png_to_tensor(text: str, model_hw: tuple[int, int]) -> Tensor:
    """A base64 PNG (optionally a ``data:image/png;base64,`` URL) -> ``(H, W)`` float32 in
    [0, 1] (converted to grayscale; 255 = ink). The header is checked before decoding."""
    from PIL import Image, UnidentifiedImageError

    if len(text) > MAX_PNG_CHARS:
        raise ImageError(f"base64 image is {len(text)} characters; the limit is {MAX_PNG_CHARS}")
    if text.startswith("data:"):
        head, sep, text = text.partition(",")
        if not sep or not head.startswith("data:image/png;base64"):
            raise ImageError("image data URL must start with data:image/png;base64,")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("image is a string but not valid base64 (expected a PNG)") from None
    try:
        png = Image.open(io.BytesIO(raw))
        if png.format != "PNG":
            raise ImageError(f"image must be a PNG; got {png.format}")
        w, h = png.size
        _check_size((h, w), model_hw)  # before decoding the pixels
        data = bytes(png.convert("L").tobytes())
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise ImageError("image is not a readable PNG") from None
    x = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(h, w)
    return x.to(torch.float32) / 255.0


def to_model_input(x: Tensor, model_hw: tuple[int, int]) -> Tensor:
    """``(H, W)`` -> ``(1, 1, h, w)`` at the model's size (area averaging when larger)."""
    x = x.reshape(1, 1, *x.shape)
    if tuple(x.shape[-2:]) != model_hw:
        x = F.interpolate(x, size=model_hw, mode="area").clamp(0.0, 1.0)
    return x


def to_grid(x: Tensor, decimals: int = 4) -> list[list[float]]:
    """``(1, 1, H, W)`` or ``(H, W)`` -> rows of floats rounded to ``decimals`` (JSON size)."""
    scale = 10.0**decimals
    rows: list[list[float]] = (
        torch.round(x.detach().reshape(x.shape[-2:]).cpu() * scale) / scale
    ).tolist()
    return rows


def finite(value: float) -> float | None:
    """``value`` for JSON, ``None`` when it is not finite."""
    return value if math.isfinite(value) else None
