"""`imaging-load [-i IMAGE] SPEC…`: load an image on nodes by multicast."""

from __future__ import annotations

import argparse

from ..errors import ImagingError
from .common import Context, add_node_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `load`."""
    parser.add_argument("-i", "--image", metavar="IMAGE",
                        help="path, file name, alias or radical (default: [images] default_image)")
    parser.add_argument("-b", "--bandwidth", type=int, metavar="MIBPS",
                        help="multicast bandwidth in Mibps (default: [nodes] bandwidth)")
    parser.add_argument("-t", "--timeout", type=float, metavar="SECONDS",
                        help="deadline of the whole command (default: [nodes] load_timeout)")
    parser.add_argument("--transport", choices=("frisbee", "udpcast"),
                        help="how the image travels (default: [transport] kind)")
    parser.add_argument("-n", "--no-reset", action="store_true",
                        help="leave the nodes in the imaging OS when done")
    parser.add_argument("-c", "--curses", action="store_true", help="full-screen live table")
    parser.add_argument("--json", action="store_true", help="one JSON event per line")
    add_node_arguments(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Check the nodes and the image before any node is touched."""
    nodes = ctx.select_nodes()
    transport = args.transport or ctx.config.get_str("transport", "kind")
    name = args.image or ctx.config.get_str("images", "default_image")
    image = ctx.repository.resolve(name, transport).image
    raise ImagingError(f"loading {image.name} on {len(nodes)} node(s) is not available in this"
                       " version yet; only the checks before loading ran")
