"""What `imaging-list` shows: the repository's images as a table or as JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .images import Image
from .units import human_size


def matches(image: Image, filters: Sequence[str]) -> bool:
    """True when no filter is given or one is a substring of one of its names."""
    return not filters or any(f in name for f in filters for name in image.file_names())


def record(image: Image, default: Image | None, verdict: str | None = None) -> dict[str, Any]:
    """One image as a JSON-ready dict (``verified`` when --verify gave a verdict)."""
    info = image.save_info
    extra = {"verified": verdict} if verdict is not None else {}
    return extra | {
        "name": image.name,
        "path": str(image.path),
        "date": image.when.isoformat(timespec="seconds"),
        "size": image.size,
        "transport": image.transport,
        "aliases": [alias.name for alias in image.aliases],
        "alias_paths": [str(alias) for alias in image.aliases],
        "default": image is default,
        "sha256": image.checksum(),
        "save": {"host": info["host"], "date": info["date"], "radical": info["radical"]} if info else None,
    }


def print_json(images: Sequence[Image], default: Image | None, verdicts: dict[Path, str] | None = None,
               out: TextIO | None = None) -> None:
    """The images as a JSON list."""
    out = out or sys.stdout
    json.dump([record(i, default, (verdicts or {}).get(i.path)) for i in images], out, indent=2)
    out.write("\n")


def _where(path: Path) -> str:
    return str(path.parent) if path.is_absolute() else str(path.parent.resolve())


def print_table(images: Sequence[Image], default: Image | None, long: bool,
                verdicts: dict[Path, str] | None = None, out: TextIO | None = None) -> None:
    """The images as a table: date, size, name, aliases, transport (+ folder, sha256)."""
    out = out or sys.stdout
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    columns = ("date", "size", "name", "aliases", "transport") + (("folder", "sha256") if long else ())
    for column in columns + (("verified",) if verdicts is not None else ()):
        table.add_column(column, justify="right" if column == "size" else "left",
                         overflow="fold", no_wrap=column == "name")
    for image in images:
        aliases = ", ".join(alias.name for alias in image.aliases)
        if image is default:
            aliases = f"{aliases} (default)".strip()
        row = [image.when.strftime("%Y-%m-%d %H:%M"), human_size(image.size), image.name,
               aliases, image.transport]
        if long:
            row += [_where(image.path), image.checksum() or "-"]
        if verdicts is not None:
            row.append(verdicts[image.path])
        table.add_row(*row)
    console = Console(file=out, width=None if out.isatty() else 250, highlight=False)
    console.print(table)
    console.print(f"{len(images)} image(s), {human_size(sum(i.size for i in images))}")
