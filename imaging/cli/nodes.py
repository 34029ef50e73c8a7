"""`imaging-main nodes SPEC…`: print the hostnames a node spec selects."""

from __future__ import annotations

import argparse

from .common import Context, add_node_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `nodes`."""
    add_node_arguments(parser)
    parser.add_argument("--cmc", action="store_true", help="print the CMC hostnames instead")


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print the selected nodes on one line, for `export NODES=$(imaging-main nodes …)`."""
    nodes = ctx.select_nodes()
    print(" ".join(node.cmc.hostname if args.cmc else node.hostname for node in nodes))
    return 0
