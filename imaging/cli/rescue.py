"""`imaging-rescue SPEC…`: boot nodes into the imaging OS and leave them there (their next-boot link kept,
so they stay there through their next reboots: a broken disk can be looked at over telnet);
`--list` prints the nodes whose next boot is the imaging OS, `--reset` takes nodes out of it."""

from __future__ import annotations

import argparse
import json

from ..boot.nextboot import NextBoot
from ..inventory import Node
from .common import Context, add_node_arguments, replayed_options, run_node_job, seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rescue`."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true",
                      help="print the nodes whose next boot is the imaging OS, of those given (default $NODES),"
                           " else of every node")
    mode.add_argument("--reset", action="store_true",
                      help="take the nodes given (default $NODES) out of the imaging OS: remove their link to it"
                           " and reset them, so they boot their disks; without any, every node whose link"
                           " points at it")
    parser.add_argument("-t", "--timeout", type=seconds, metavar="SECONDS",
                        help="deadline of the command (default: [nodes] boot_timeout and a cmc_timeout; with"
                             " --reset, the power commands' reset deadline)")
    parser.add_argument("--wait-lock", type=seconds, default=0.0, metavar="SECONDS",
                        help="wait that long for nodes busy with another command (default: refuse)")
    parser.add_argument("--json", action="store_true", help="one JSON object per node")
    add_node_arguments(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Rescue the nodes, list those in rescue, or take them out; exit 0 only if every node succeeded."""
    from ..jobs.imagingos import JobState
    from ..jobs.rescue import leave, rescue
    from .settings import next_boot, rescue_plan

    named = ctx.names_nodes()
    nodes = ctx.select_nodes(default_all=args.list or args.reset)
    nextboot = next_boot(ctx.config, nodes)
    if args.list or (args.reset and not named):  # the nodes left in the imaging OS, of those chosen
        nextboot.check(nodes, need="read")
        nodes = [node for node in nodes if nextboot.boots_imaging_os(node)]
        if args.list or not nodes:
            show(nodes, nextboot, args.json)
            return 0
    nextboot.check(nodes, need="unlink" if args.reset else "boot")
    plan = rescue_plan(ctx.config, nodes, leaving=args.reset, timeout=args.timeout, lock_wait=args.wait_lock)
    ctx.require_lease(nodes, plan.timeout)
    job = leave if args.reset else rescue
    return run_node_job(ctx.prog, nodes, lambda state, emit: job(plan, state, emit), JobState(nextboot),
                        plan.timeout, args, replayed_options(args), plan.lock_dir)


def show(nodes: list[Node], nextboot: NextBoot, as_json: bool) -> None:
    """Print the nodes whose next boot is the imaging OS, with their link; a line saying so when none is."""
    for node in nodes:
        if as_json:
            print(json.dumps({"hostname": node.hostname, "number": node.number, "link": str(nextboot.link_of(node))}))
        else:
            print(f"{node.hostname}  next boot: imaging OS ({nextboot.link_of(node)})")
    if not nodes and not as_json:
        print("no node's next boot is the imaging OS")
