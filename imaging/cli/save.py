"""`imaging-save [-o NAME] SPEC…`: save nodes' disks into images, each node to its own file."""

from __future__ import annotations

import argparse

from .. import registry
from .common import Context, add_node_arguments, replayed_options, run_node_job, seconds

DEFAULT_RADICAL = "image"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `save`."""
    parser.add_argument("-o", "--output", metavar="NAME", default=DEFAULT_RADICAL,
                        help="radical of the saved image's name: saving__<host>__<date>__NAME.<ext>"
                             f" (default {DEFAULT_RADICAL})")
    parser.add_argument("-c", "--comment", default="", help="comment stamped on the saved OS's /etc/imaging-image")
    parser.add_argument("-t", "--timeout", type=seconds, metavar="SECONDS",
                        help="deadline of the whole command (default: [nodes] save_timeout)")
    parser.add_argument("--transport", choices=registry.TRANSPORT_NAMES,
                        help="image format (default: [transport] kind)")
    parser.add_argument("--raw", action="store_true",
                        help="save every byte of the disk (udpcast: .img.zst; frisbee: imagezip -r) instead of what"
                             " its file systems use (the default: udpcast's .ptcl.zst, the partition table and each"
                             " partition by partclone; frisbee's .ndz by imagezip)")
    parser.add_argument("--repo", action="store_true", help="write into the repository ([images] images_dir), not ./")
    parser.add_argument("--force", action="store_true", help="overwrite an existing image of the same name")
    parser.add_argument("--keep-partial", action="store_true",
                        help="on failure keep what was received as <name>.partial")
    parser.add_argument("-n", "--no-reset", action="store_true", help="leave the nodes in the imaging OS when done")
    parser.add_argument("--wait-lock", type=seconds, default=0.0, metavar="SECONDS",
                        help="wait that long for nodes busy with another command (default: refuse)")
    parser.add_argument("--json", action="store_true", help="one JSON event per line, then a JSON summary")
    add_node_arguments(parser)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Check names, folder and nodes before any node is touched, then save; exit 0 only if all succeeded."""
    import os
    import sys
    from datetime import datetime
    from pathlib import Path

    from ..errors import UsageError
    from ..images import save_name, validate_name
    from ..jobs.imagingos import JobState
    from ..jobs.save import preflight, save
    from ..leases import current_login
    from ..selector import format_ranges
    from ..transports import transport_for
    from .settings import next_boot, save_plan

    validate_name(args.output)
    config = ctx.config
    nodes = ctx.select_nodes()
    transport = transport_for(args.transport or config.get_str("transport", "kind"), config)
    folder = config.get_path("images", "images_dir") if args.repo else Path.cwd()
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write into {folder}; save into a writable folder"
                         + (" (without --repo)" if args.repo else ""))
    extension = transport.save_extension
    if args.raw:
        if transport.raw_extension is None:
            raise UsageError(f"--raw: the {transport.name} transport has no raw format; drop --raw")
        extension = transport.raw_extension
    now = datetime.now()
    targets = {n.number: folder / save_name(n.hostname, now, args.output, extension) for n in nodes}
    plan = save_plan(config, ctx.inventory, nodes, targets, transport, timeout=args.timeout,
                     reset_after=not args.no_reset, lock_wait=args.wait_lock, radical=args.output,
                     comment=args.comment, user=current_login(), raw=args.raw, force=args.force)
    state = JobState(next_boot(config, nodes), keep_partial=args.keep_partial)
    preflight(plan, state)
    unstamped = [n.number for n in nodes if plan.stamp[n.number] is None]
    if args.comment and unstamped:
        print(f"{ctx.prog}: warning: the comment (-c) is not stamped on {format_ranges(unstamped)}:"
              " [nodes] root_partition is none there; set it to the partition holding the saved OS's /etc",
              file=sys.stderr)
    ctx.require_lease(nodes, plan.timeout)
    options = replayed_options(args)
    return run_node_job(ctx.prog, nodes, lambda st, emit: save(plan, st, emit, checked=True), state, plan.timeout,
                        args, options, plan.lock_dir)
