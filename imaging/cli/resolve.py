"""`imaging-main resolve NAME`: print the file that `-i NAME` would load."""

from __future__ import annotations

import argparse
import sys

from .. import registry
from .common import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `resolve`."""
    parser.add_argument("name", metavar="NAME", help="a path, file name, alias or radical")
    parser.add_argument("--transport", choices=registry.TRANSPORT_NAMES,
                        help="only images this transport loads")
    parser.add_argument("--check", action="store_true",
                        help="also check the file as a load does before touching any node"
                             " (not empty, complete zstd frames or frisbee chunks), reading only headers")


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print the resolved path (with --check, only if the file passes); tell on stderr
    which older candidates lost."""
    found = ctx.repository.resolve(args.name, args.transport)
    if args.check:
        found.image.check_content()
    print(found.image.path)
    for other in found.others:
        print(f"  (newer than {other.path})", file=sys.stderr)
    return 0
