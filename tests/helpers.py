"""Helpers the tests share."""

from __future__ import annotations

import os
from pathlib import Path


def make_image(folder: Path, name: str, size: int = 1024, mtime: float | None = None) -> Path:
    """An image file of ``size`` bytes; its modification time set when given."""
    path = folder / name
    path.write_bytes(os.urandom(16) + bytes(max(0, size - 16)))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


ROOT = Path(__file__).resolve().parent.parent
SAMPLE_INVENTORY = ROOT / "inventory" / "sample-inventory.json"
