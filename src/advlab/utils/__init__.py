"""Small helpers shared by every layer: devices, seeding, atomic files, progress."""

from advlab.utils.device import resolve_device
from advlab.utils.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from advlab.utils.progress import progress

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "progress",
    "resolve_device",
]
