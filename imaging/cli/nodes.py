"""`imaging-main nodes SPEC…`: print the hostnames a node spec selects, as ClusterShell's
`nodeset` would: on one line (the default), one per line, counted, or folded."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from .common import Context, add_node_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `nodes`."""
    add_node_arguments(parser)
    parser.add_argument("--cmc", action="store_true", help="print the CMC hostnames instead")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("-c", "--count", action="store_true", help="print how many nodes are selected")
    shape.add_argument("-e", "--expand", action="store_true", help="print one hostname per line")
    shape.add_argument("-f", "--fold", action="store_true",
                       help="print the selection folded into a spec: 1-3,7")
    parser.add_argument("--brackets", action="store_true",
                        help="fold the hostnames as ClusterShell does, zero padding kept: fit[01-03,07]"
                             " (implies --fold)")


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print the selected nodes; by default on one line, for `export NODES=$(imaging-main nodes …)`."""
    from ..selector import fold_hostnames, format_ranges

    if args.brackets and (args.count or args.expand):
        raise UsageError("--brackets folds the hostnames: use it alone or with --fold,"
                         " not with --count or --expand")
    nodes = ctx.select_nodes()
    names = [node.cmc.hostname if args.cmc else node.hostname for node in nodes]
    if args.count:
        print(len(nodes))
    elif args.brackets:
        print(fold_hostnames(names))
    elif args.fold:
        print(format_ranges(node.number for node in nodes))
    else:
        print(("\n" if args.expand else " ").join(names))
    return 0
