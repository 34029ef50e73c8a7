"""`imaging-wait SPEC…`: wait until nodes answer ssh (or telnet)."""

from __future__ import annotations

import argparse

from .common import Context, add_node_arguments, seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `wait`."""
    parser.add_argument("-t", "--timeout", type=seconds, metavar="SECONDS",
                        help="deadline (default: [nodes] wait_timeout)")
    parser.add_argument("-u", "--user", help="ssh user (default: [networking] ssh_user)")
    parser.add_argument("--telnet", action="store_true",
                        help="wait for the imaging OS's telnet instead of ssh")
    parser.add_argument("--json", action="store_true", help="one JSON object per node")
    add_node_arguments(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print each node as it comes up or fails; exit 0 only if all are up."""
    import asyncio

    from ..jobs.wait import wait
    from .display import show_result
    from .settings import ssh_settings, telnet_settings

    nodes = ctx.select_nodes()
    timeout = args.timeout if args.timeout is not None else ctx.config.get_float("nodes", "wait_timeout")
    options = ({"telnet_settings": telnet_settings(ctx.config)} if args.telnet
               else {"ssh_settings": ssh_settings(ctx.config, args.user)})

    async def main() -> bool:
        ok = True
        async for result in wait(nodes, timeout, **options):
            show_result(result, args.json, timed=True)
            ok = ok and result.ok
        return ok

    return 0 if asyncio.run(main()) else 1
