"""`imaging-monitor SPEC…`: every node's power, OS and image, live: a web page, JSON, server-sent events and
Prometheus metrics on ``[monitor] listen``; ``--once``: one JSON snapshot on stdout."""

from __future__ import annotations

import argparse

from .common import Context, add_node_arguments, seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the monitor."""
    parser.add_argument("--once", action="store_true", help="look at every node once, print the JSON and exit")
    parser.add_argument("--listen", metavar="HOST:PORT", help="where to serve (default: [monitor] listen)")
    parser.add_argument("--cycle", type=seconds, metavar="SECONDS",
                        help="seconds between two looks at a node (default: [monitor] cycle)")
    add_node_arguments(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Serve until interrupted (or, with ``--once``, print one snapshot); 1 when some node's controller
    did not answer the snapshot."""
    import asyncio
    import json

    from ..config import split_listen
    from ..errors import UsageError
    from ..monitor.service import serve, snapshot
    from .settings import power_options, probe_settings

    nodes = ctx.select_nodes()
    config = ctx.config
    power = power_options(config, nodes)
    probing = probe_settings(config)
    if args.once:
        views = asyncio.run(snapshot(nodes, power, probing, config.get_path("locks", "lock_dir")))
        print(json.dumps(views, indent=1))
        return 1 if any(v["power"] == "unreachable" for v in views) else 0
    listen = args.listen or config.get_str("monitor", "listen")
    try:
        host, port = split_listen(listen)
    except ValueError:
        raise UsageError(f"--listen {listen}: want an address and a port, e.g. 127.0.0.1:8090") from None
    cycle = args.cycle if args.cycle is not None else config.get_float("monitor", "cycle")
    asyncio.run(serve(nodes, power, probing, cycle, host, port, ctx.prog, config.get_path("locks", "lock_dir")))
    return 0
