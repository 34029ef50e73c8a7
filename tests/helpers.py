"""Helpers the tests share."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

SKIPPABLE = 0x184D2A50  # a zstd skippable frame's magic: lets a real zstd file have any size
NDZ_CHUNK = 1 << 20  # imagezip's chunk


def ndz_chunk(index: int, first: int, last: int, magic: int = 0x6969696B, data: int = 1000) -> bytes:
    """One 1 MiB imagezip chunk: the block header of imagehdr.h (magic, size, blockindex,
    blocktotal, regionsize, regioncount, firstsect, lastsect, reloccount), one region, then
    ``data`` bytes of (random) compressed data, padded; the layout imagezip writes."""
    header = struct.pack("<IIiiiiIIi", magic, data, index, 0, 4096, 1, first, last, 0)
    region = struct.pack("<II", first, last - first)
    return ((header + region).ljust(4096, b"\0") + os.urandom(min(data, NDZ_CHUNK - 4096))).ljust(NDZ_CHUNK, b"\0")


def make_image(folder: Path, name: str, size: int = 1024, mtime: float | None = None) -> Path:
    """An image file of ``size`` bytes (a ``.zst`` one a real zstd file: a frame of a small
    disk, then a skippable frame up to the size; a ``.ndz`` one imagezip's chunks, as many 1 MiB
    chunks as ``size`` needs); its modification time set when given."""
    path = folder / name
    content = os.urandom(16) + bytes(max(0, size - 16))
    if name.endswith(".ndz"):
        chunks = max(1, -(-size // NDZ_CHUNK))
        content = b"".join(ndz_chunk(n, 2048 * n, 2048 * (n + 1)) for n in range(chunks))
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
