"""`imaging-save -o NAME SPEC…`: save nodes' disks into images."""

from __future__ import annotations

import argparse

from ..errors import ImagingError
from .common import Context, add_node_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `save`."""
    parser.add_argument("-o", "--output", metavar="NAME", help="radical of the saved image's name")
    parser.add_argument("-c", "--comment", default="", help="comment stamped on the saved image")
    parser.add_argument("-t", "--timeout", type=float, metavar="SECONDS",
                        help="deadline of the whole command (default: [nodes] save_timeout)")
    parser.add_argument("--transport", choices=("frisbee", "udpcast"),
                        help="image format (default: [transport] kind)")
    parser.add_argument("--repo", action="store_true", help="write into the repository, not ./")
    parser.add_argument("--force", action="store_true", help="overwrite an existing image")
    parser.add_argument("-n", "--no-reset", action="store_true",
                        help="leave the nodes in the imaging OS when done")
    add_node_arguments(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Check the nodes and the name before any node is touched."""
    from ..images import validate_name
    nodes = ctx.select_nodes()
    if args.output is not None:
        validate_name(args.output)
    raise ImagingError(f"saving {len(nodes)} node(s) is not available in this version yet;"
                       " only the checks before saving ran")
