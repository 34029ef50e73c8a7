"""`imaging-load [-i IMAGE] SPEC…`: load an image on nodes by multicast."""

from __future__ import annotations

import argparse

from .. import registry
from ..errors import UsageError
from .common import Context, add_node_arguments, mibps, replayed_options, run_node_job, seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `load`."""
    parser.add_argument("-i", "--image", metavar="IMAGE",
                        help="path, file name, alias or radical (default: [images] default_image)")
    parser.add_argument("-b", "--bandwidth", type=mibps, metavar="MIBPS",
                        help="multicast bandwidth in Mibps for every node (default: [nodes] bandwidth per node)")
    parser.add_argument("-t", "--timeout", type=seconds, metavar="SECONDS",
                        help="deadline of the whole command (default: [nodes] load_timeout)")
    parser.add_argument("--transport", choices=registry.TRANSPORT_NAMES,
                        help="how the image travels (default: [transport] kind)")
    parser.add_argument("-n", "--no-reset", action="store_true",
                        help="leave the nodes in the imaging OS when done")
    parser.add_argument("--wait-lock", type=seconds, default=0.0, metavar="SECONDS",
                        help="wait that long for nodes busy with another command (default: refuse)")
    parser.add_argument("-c", "--curses", action="store_true", help="full-screen live table")
    parser.add_argument("--json", action="store_true", help="one JSON event per line, then a JSON summary")
    add_node_arguments(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Check everything before any node is touched, then load; exit 0 only if every node succeeded."""
    from ..jobs.imagingos import JobState
    from ..jobs.load import load, preflight
    from ..transports import transport_for
    from .settings import load_plan, next_boot

    config = ctx.config
    nodes = ctx.select_nodes()
    transport = transport_for(args.transport or config.get_str("transport", "kind"), config)
    name = args.image if args.image is not None else config.get_str("images", "default_image")
    if not name:
        raise UsageError("-i names no image (an empty name); give an image name, or omit -i for"
                         " [images] default_image")
    image = ctx.repository.resolve(name, transport.name).image
    plan = load_plan(config, ctx.inventory, nodes, image, transport, bandwidth=args.bandwidth,
                     timeout=args.timeout, reset_after=not args.no_reset, lock_wait=args.wait_lock)
    state = JobState(next_boot(config, nodes))
    preflight(plan, state)  # before any node is touched, and before the lease is asked for
    ctx.require_lease(nodes, plan.timeout)

    options = replayed_options(args, image=image.name)
    if args.image is None:
        options += ["-i", image.name]  # the retry loads the same image even if the default changes meanwhile
    return run_node_job(ctx.prog, nodes, lambda st, emit: load(plan, st, emit, checked=True), state, plan.timeout,
                        args, options, plan.lock_dir)
