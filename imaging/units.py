"""Quantities shown to users."""

from __future__ import annotations


def human_size(size: float) -> str:
    """Bytes in binary units with one decimal: ``512 B``, ``1.5 KiB``, ``12.3 GiB``."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"
