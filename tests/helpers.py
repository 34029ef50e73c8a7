"""Helpers the tests share."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SKIPPABLE = 0x184D2A50  # a zstd skippable frame's magic: lets a real zstd file have any size


def make_image(folder: Path, name: str, size: int = 1024, mtime: float | None = None) -> Path:
    """An image file of ``size`` bytes (a ``.zst`` one a real zstd file: a frame of a small
    disk, then a skippable frame up to the size); its modification time set when given."""
    path = folder / name
    content = os.urandom(16) + bytes(max(0, size - 16))
    if name.endswith(".zst"):
        frame = subprocess.run(["zstd", "-q", "-c"], input=content[:4096], capture_output=True,
                               check=True).stdout
        pad = max(0, size - len(frame) - 8)
        content = frame + SKIPPABLE.to_bytes(4, "little") + pad.to_bytes(4, "little") + bytes(pad)
    path.write_bytes(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


ROOT = Path(__file__).resolve().parent.parent
SAMPLE_INVENTORY = ROOT / "inventory" / "sample-inventory.json"
