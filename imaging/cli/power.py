"""`imaging-status|on|off|reset|info SPEC…`: talk to the nodes' power controllers (CMC, IPMI BMC)."""

from __future__ import annotations

import argparse

from .common import Context, add_node_arguments, seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the power commands."""
    parser.add_argument("-t", "--timeout", type=seconds, metavar="SECONDS",
                        help="deadline per node (default: from [nodes] cmc_timeout and idle_after_reset)")
    parser.add_argument("--json", action="store_true", help="one JSON object per node")
    parser.add_argument("--wait-lock", type=seconds, default=0.0, metavar="SECONDS",
                        help="on, off, reset: wait that long for nodes busy with another command (default: refuse)")
    parser.add_argument("--plain", action="store_true",
                        help="reset: only send the verb; do not check that the node went down")
    add_node_arguments(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Send the verb to every selected node; exit 0 only if every CMC answered as expected."""
    import asyncio

    from ..jobs.power import CHANGING, power
    from .display import show_result
    from .settings import power_settings

    nodes = ctx.select_nodes()
    settings = power_settings(ctx.config, nodes, args.timeout, args.wait_lock)
    if args.command in CHANGING:  # status and info only read: no lease, no lock
        ctx.require_lease(nodes)
    results = asyncio.run(power(nodes, args.command, settings, plain=args.plain))
    for result in results:
        show_result(result, args.json)
    return 0 if all(r.ok for r in results) else 1
