"""`imaging-main leases [--check] [--json]`: the current and upcoming leases."""

from __future__ import annotations

import argparse

from .common import Context


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `leases`."""
    parser.add_argument("--check", action="store_true",
                        help="exit 0 only if you may act on the nodes now (all of them with -a or SPEC…)")
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")
    parser.add_argument("-a", "--all-nodes", action="store_true", help="with --check: the configured all_scope")
    parser.add_argument("specs", nargs="*", metavar="SPEC", help="with --check: these nodes")


def run(args: argparse.Namespace, ctx: Context) -> int:
    """A table of leases (slice, from, until, remaining), the current one marked; or the --check verdict."""
    import asyncio
    import json
    from datetime import UTC, datetime

    from ..leases import current_login, fetch, judge
    from .settings import lease_settings

    settings = lease_settings(ctx.config)
    now = datetime.now(UTC)
    leases = asyncio.run(fetch(settings, now))
    login = current_login()
    nodes = [n.number for n in ctx.select_nodes()] if (args.specs or args.all_nodes) else []
    verdict = judge(leases, settings, login, nodes, now)
    upcoming = [lease for lease in leases if lease.end > now]
    if args.json:
        print(json.dumps({"backend": settings.backend, "allowed": verdict.allowed, "reason": verdict.reason,
                          "leases": [{"slice": lease.slice, "from": lease.start.isoformat(),
                                      "until": lease.end.isoformat(), "current": lease.active(now),
                                      "nodes": sorted(lease.nodes) if lease.nodes else None}
                                     for lease in upcoming]}))
    else:
        print(f"{'':2}{'slice':<20} {'from (UTC)':<17} {'until (UTC)':<17} remaining")
        for lease in upcoming:
            left = int((lease.end - max(now, lease.start)).total_seconds() // 60)
            print(f"{'*' if lease.active(now) else ' ':2}{lease.slice:<20} {lease.start:%Y-%m-%d %H:%M}"
                  f"  {lease.end:%Y-%m-%d %H:%M}  {left // 60}h{left % 60:02d}")
        if not upcoming:
            print(f"  no lease now or to come (backend {settings.backend})")
        print(f"{login}: {'allowed' if verdict.allowed else 'refused'} ({verdict.reason})")
    return 0 if verdict.allowed or not args.check else 1
