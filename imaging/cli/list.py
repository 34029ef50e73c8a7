"""`imaging-list [FILTER…]`: the images of the repository and of the current directory."""

from __future__ import annotations

import argparse

from .common import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `list`."""
    parser.add_argument("filters", nargs="*", metavar="FILTER",
                        help="show only images one of whose names contains a FILTER")
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")
    parser.add_argument("-l", "--long", action="store_true",
                        help="also show the folder and the sha256 of the .sha256 sidecar")
    parser.add_argument("--verify", action="store_true",
                        help="check each image against its .sha256 sidecar (reads every image)")
    parser.add_argument("--sort", choices=("date", "name", "size"), default="date",
                        help="order of the rows (default: date, newest last)")


def run(args: argparse.Namespace, ctx: Context) -> int:
    """List the images; exit 1 when filters match nothing."""
    import os
    import sys

    from ..errors import ImagingError
    from ..images import verify
    from ..listing import matches, print_json, print_table

    repository = ctx.repository
    folder = ctx.config.get_path("images", "images_dir")
    if not (folder.is_dir() and os.access(folder, os.R_OK | os.X_OK)):
        why = "not a folder" if folder.exists() and not folder.is_dir() else "missing or unreadable"
        print(f"{ctx.prog}: warning: the repository {folder} is {why}; only ./ is listed"
              " (set [images] images_dir)", file=sys.stderr)
    images = [i for i in repository.images() if matches(i, args.filters)]
    keys = {"date": lambda i: (i.mtime, i.name), "name": lambda i: i.name,
            "size": lambda i: (i.size, i.name)}
    images.sort(key=keys[args.sort])
    try:
        default = repository.resolve(ctx.config.get_str("images", "default_image")).image
    except ImagingError:
        default = None
    default = next((i for i in images if default is not None and i.path == default.path), None)
    verdicts = {i.path: verify(i) for i in images} if args.verify else None
    if args.json:
        print_json(images, default, verdicts)
    else:
        print_table(images, default, args.long, verdicts)
    if args.filters and not images:
        raise ImagingError(f"no image matches {' '.join(args.filters)}")
    if verdicts and any(v == "MISMATCH" or v.startswith("unreadable") for v in verdicts.values()):
        bad = ", ".join(p.name for p, v in verdicts.items() if v == "MISMATCH" or v.startswith("unreadable"))
        raise ImagingError(f"checksum mismatch or unreadable image: {bad}")
    return 0
