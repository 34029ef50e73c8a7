"""What `imaging-list` shows: the repository's images, and the entries named like
images that no load can use (shown as ``broken: …``), as a table or as JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..disklayout import describe
from ..images import Broken, Image
from ..units import human_size

Entry = Image | Broken
SORT_KEYS: dict[str, Callable[[Entry], Any]] = {
    "date": lambda e: (e.mtime, e.name),
    "name": lambda e: e.name,
    "size": lambda e: (e.size if isinstance(e, Image) else -1, e.name),
}


def matches(entry: Entry, filters: Sequence[str]) -> bool:
    """True when no filter is given or one is a substring of one of its names."""
    names = entry.file_names() if isinstance(entry, Image) else [entry.name]
    return not filters or any(f in name for f in filters for name in names)


def record(entry: Entry, default: Image | None, verdict: str | None = None) -> dict[str, Any]:
    """One entry as a JSON-ready dict: ``status`` is ``ok`` or ``broken: …``
    (``verified`` when --verify gave a verdict)."""
    extra = {"verified": verdict} if verdict is not None else {}
    info = entry.save_info
    if isinstance(entry, Broken):
        fields: dict[str, Any] = {"name": entry.name, "path": str(entry.path), "size": None,
                                  "aliases": [], "alias_paths": [], "default": False, "sha256": None,
                                  "layout": None}
    else:
        layout = entry.layout()
        fields = {"name": entry.name, "path": str(entry.path), "size": entry.size,
                  "aliases": [alias.name for alias in entry.aliases],
                  "alias_paths": [str(alias) for alias in entry.aliases],
                  "default": entry is default, "sha256": entry.checksum(),
                  "layout": describe(layout) if layout is not None else None}
    return extra | fields | {
        "date": entry.when.isoformat(timespec="seconds"),
        "transport": entry.transport,
        "status": entry.status(),
        "save": {"host": info["host"], "date": info["date"], "radical": info["radical"]} if info else None,
    }


def print_json(entries: Sequence[Entry], default: Image | None, verdicts: dict[Path, str] | None = None,
               out: TextIO | None = None) -> None:
    """The entries as a JSON list."""
    out = out or sys.stdout
    json.dump([record(e, default, (verdicts or {}).get(e.path)) for e in entries], out, indent=2)
    out.write("\n")


def _where(path: Path) -> str:
    return str(path.parent) if path.is_absolute() else str(path.parent.resolve())


def _layout_columns(entry: Entry) -> list[str]:
    """``data`` (what a file-system-aware image's file systems hold), ``needs`` (the disk size it takes)
    and its partitions; dashes for a raw image."""
    layout = entry.layout() if isinstance(entry, Image) else None
    if layout is None:
        return ["-", "-", "-"]
    parts = " ".join(f"{p.number}:{p.fs or p.method}" for p in layout.partitions)
    return [human_size(layout.used), human_size(layout.needed), f"{layout.label} {parts}"]


def print_table(entries: Sequence[Entry], default: Image | None, long: bool,
                verdicts: dict[Path, str] | None = None, out: TextIO | None = None) -> None:
    """The entries as a table: date, size, name, aliases, transport, the status when one is
    broken (+ data, disk size needed, partitions, folder, sha256; + verified)."""
    out = out or sys.stdout
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    statuses = [entry.status() for entry in entries]
    broken = sum(status != "ok" for status in statuses)
    columns = ("date", "size", "name", "aliases", "transport") + (("status",) if broken else ())
    columns += (("data", "needs", "partitions", "folder", "sha256") if long else ())
    columns += ("verified",) if verdicts is not None else ()
    for column in columns:
        table.add_column(column, justify="right" if column in ("size", "data", "needs") else "left",
                         overflow="fold", no_wrap=column == "name")
    for entry, status in zip(entries, statuses, strict=True):
        if isinstance(entry, Broken):
            size, aliases, sha256 = "-", "", "-"
        else:
            size, sha256 = human_size(entry.size), entry.checksum() or "-"
            aliases = ", ".join(alias.name for alias in entry.aliases)
            if entry is default:
                aliases = f"{aliases} (default)".strip()
        row = [entry.when.strftime("%Y-%m-%d %H:%M"), size, entry.name, aliases, entry.transport]
        row += ["" if status == "ok" else status] if broken else []
        if long:
            row += [*_layout_columns(entry), _where(entry.path), sha256]
        if verdicts is not None:
            row.append(verdicts[entry.path])
        table.add_row(*row)
    console = Console(file=out, width=None if out.isatty() else 1000, highlight=False)
    console.print(table)
    images = [e for e in entries if isinstance(e, Image)]
    console.print(f"{len(images)} image(s), {human_size(sum(i.size for i in images))}"
                  + (f"; {broken} broken" if broken else ""))
