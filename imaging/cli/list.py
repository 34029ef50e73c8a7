"""`imaging-list [FILTER…]`: the images of the repository and of the current directory."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .common import Context

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from ..images import Broken, Image


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `list`."""
    parser.add_argument("filters", nargs="*", metavar="FILTER",
                        help="show only images one of whose names contains a FILTER")
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")
    parser.add_argument("-l", "--long", action="store_true",
                        help="also show the folder and the sha256 of the .sha256 sidecar")
    parser.add_argument("--verify", action="store_true",
                        help="check each image against its .sha256 sidecar (reads every image);"
                             " exit 1 on a mismatch or an entry that is broken")
    parser.add_argument("--sort", choices=("date", "name", "size"), default="date",
                        help="order of the rows (default: date, newest last)")


def _verify_problem(entries: Sequence[Image | Broken], verdicts: dict[Path, str]) -> str | None:
    """The one line --verify fails with: images whose sidecar disagrees or that cannot be
    read, and entries that are broken; None when there are none."""
    bad = [e.name for e in entries if verdicts[e.path] == "MISMATCH" or verdicts[e.path].startswith("unreadable")]
    broken = [f"{e.name} ({e.status().removeprefix('broken: ')})" for e in entries
              if e.status() != "ok" and e.name not in bad]
    problems = ([f"checksum mismatch or unreadable image: {', '.join(bad)}"] if bad else []) + (
        [f"broken: {', '.join(broken)}"] if broken else [])
    return "; ".join(problems) + "; repair or remove them" if problems else None


def run(args: argparse.Namespace, ctx: Context) -> int:
    """List the images and the broken entries named like images; exit 1 when filters
    match nothing, or with --verify when an image fails its check or an entry is broken."""
    import os
    import sys

    from ..errors import ImagingError
    from ..images import Image, verify
    from .listing import SORT_KEYS, matches, print_json, print_table

    repository = ctx.repository
    folder = ctx.config.get_path("images", "images_dir")
    if not (folder.is_dir() and os.access(folder, os.R_OK | os.X_OK)):
        why = "not a folder" if folder.exists() and not folder.is_dir() else "missing or unreadable"
        print(f"{ctx.prog}: warning: the repository {folder} is {why}; only ./ is listed"
              " (set [images] images_dir)", file=sys.stderr)
    scan = repository.scan()
    entries = [e for e in scan.entries() if matches(e, args.filters)]
    entries.sort(key=SORT_KEYS[args.sort])
    try:
        default = repository.resolve(ctx.config.get_str("images", "default_image")).image
    except ImagingError:
        default = None
    default = next((i for i in scan.images if default is not None and i.path == default.path), None)
    verdicts = ({e.path: verify(e) if isinstance(e, Image) else "-" for e in entries}
                if args.verify else None)
    if args.json:
        print_json(entries, default, verdicts)
    else:
        print_table(entries, default, args.long, verdicts)
    if args.filters and not entries:
        raise ImagingError(f"no image matches {' '.join(args.filters)}")
    problem = _verify_problem(entries, verdicts) if verdicts is not None else None
    if problem:
        raise ImagingError(problem)
    return 0
