"""``imaging-testbed``: the emulated testbed shipped with the product.

Subcommands: ``up N [--vm]``, ``list``, ``status``, ``down [NAME | --all]``, ``run -- CMD…``,
``fault NODE SPEC…``, ``console NODE``, ``demo [N] [--vm]``, ``lease add|list|clear|api``.
Those acting on a running testbed find it from the current folder without ``--dir``.
The testbed modules are imported only once a subcommand runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

DEFAULT_DIR = "testbed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The subcommands and their options."""
    from .bmc import POWER
    from .pxe import FIRMWARE

    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, summary: str, new: bool = False) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=summary, description=summary)
        if new:
            sub.add_argument("--dir", type=Path, default=Path(DEFAULT_DIR),
                             help=f"the testbed's directory (default ./{DEFAULT_DIR})")
        else:
            sub.add_argument("--dir", type=Path, default=None,
                             help="the testbed's directory (default: the testbed the current folder is in,"
                                  f" else ./{DEFAULT_DIR})")
        return sub

    up = action("up", "start N emulated nodes (or qemu VMs) and write DIR/imaging.conf and DIR/inventory.json",
                new=True)
    up.add_argument("count", type=int, metavar="N", help="how many nodes")
    _vm_options(up)
    up.add_argument("--boot-delay", type=float, default=1.0, metavar="S",
                    help="seconds from power-on to DHCP (default 1)")
    up.add_argument("--fault", action="append", default=[], metavar="NODE:KNOB=VALUE",
                    help="a fault from the start, e.g. fit03:cmc=blackhole (repeatable)")
    up.add_argument("--cmc-only", action="store_true",
                    help="management cards only, no node namespaces (control-plane benchmarks)")
    up.add_argument("--disk-size", type=int, metavar="MiB",
                    help="size of each node's disk file (default 64, VMs 48)")
    up.add_argument("--hard-drive", metavar="PATH",
                    help="where a node's disk appears inside it, under /dev (default /dev/sda, VMs /dev/vda)")
    up.add_argument("--image-size", type=int, metavar="MiB",
                    help="size of the default image once decompressed (default 8, VMs 32)")
    up.add_argument("--power", choices=POWER, default="cmc",
                    help="how the product reaches the nodes' power: their cards (cmc, the default), or a BMC per"
                         " node spoken to by IPMI (ipmi: OpenIPMI's ipmi_sim in front of the card)")
    up.add_argument("--firmware", choices=tuple(FIRMWARE), default="bios",
                    help="how the nodes boot from the network: bios (pxelinux, the default) or uefi (GRUB's network"
                         " image reading per-MAC configs; VMs run OVMF); the product's [nodes] boot follows")
    up.add_argument("--leases", action="store_true",
                    help="make the product check the testbed's leases API ([leases] backend = r2labapi)")

    status = action("status", "per node: power, boot state (telnet/ssh/none), faults")
    status.add_argument("--json", action="store_true", help="one JSON document instead of a table")

    down = action("down", "stop everything the testbed started and remove its namespaces (also when its"
                          " folder is gone: by NAME, or --all)")
    down.add_argument("name", nargs="?", metavar="NAME", help="a running testbed's name (imtbN, as list shows)")
    down.add_argument("--all", action="store_true", help="every running testbed of this machine")

    listing = actions.add_parser("list", help="the running testbeds of this machine",
                                 description="the running testbeds of this machine: name, nodes, kind, state"
                                             " (up, no-controller, gone) and folder")
    listing.add_argument("--json", action="store_true", help="one JSON document instead of a table")

    demo = action("demo", "up N nodes, then imaging-status, imaging-load, imaging-wait and imaging-list"
                          " against them, then down", new=True)
    demo.add_argument("count", type=int, nargs="?", metavar="N", help="how many nodes (default 8, VMs 3)")
    demo.add_argument("--image-size", type=int, default=64, metavar="MiB",
                      help="the demo image (default 64; VMs load their bootable default image)")
    _vm_options(demo)

    console = action("console", "show what a node printed on its console (a VM's serial console)")
    console.add_argument("node", help="fitNN, rebootNN or a number")
    console.add_argument("-f", "--follow", action="store_true", help="keep showing what it prints")

    run = action("run", "run a command in the server namespace with IMAGING_CONFIG=DIR/imaging.conf")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD",
                     help="the command and its arguments, after --")

    fault = action("fault", "change a node's faults live, e.g. fault fit03 cmc=blackhole, fault fit03 clear")
    fault.add_argument("node", help="fitNN, rebootNN or a number")
    fault.add_argument("specs", nargs="+", metavar="SPEC",
                       help="cmc=blackhole|garbage|slow:MS|ok reset=ignore|ok boot=never|slow:S|ok telnet=hang|ok"
                            " receiver=die:K|ok disk=small:MiB|noloop|ok ssh=never|ok loss=P%% clear")

    lease = action("lease", "the testbed's leases API (R2lab's GET /leases on the server, port 8088)")
    lease_actions = lease.add_subparsers(dest="lease_action", required=True, metavar="LEASE-ACTION")

    def lease_action(name: str, summary: str) -> argparse.ArgumentParser:
        sub = lease_actions.add_parser(name, help=summary, description=summary)
        sub.add_argument("--dir", type=Path, default=argparse.SUPPRESS, help="the testbed's directory")
        return sub

    add = lease_action("add", "book a lease for SLICE from FROM until UNTIL")
    add.add_argument("slice", metavar="SLICE", help="the slice name")
    add.add_argument("t_from", metavar="FROM", help="ISO 8601 (UTC if naive), or now, +10m, -1h, +2h30m, +1d")
    add.add_argument("t_until", metavar="UNTIL", help="as FROM")
    add.add_argument("--nodes", default="", metavar="SPEC", help="the nodes it is about (informative)")
    lease_action("list", "show the leases and the API's mode")
    lease_action("clear", "remove every lease")
    api = lease_action("api", "ok: answer; down: refuse connections; blackhole: drop its packets")
    api.add_argument("mode", choices=("ok", "down", "blackhole"))


def _vm_options(parser: argparse.ArgumentParser) -> None:
    """``--vm`` and the options of the VM tier."""
    parser.add_argument("--vm", action="store_true",
                        help="qemu virtual machines booting over PXE instead of emulated nodes (slower, real)")
    parser.add_argument("--accel", choices=("auto", "tcg", "kvm"),
                        help="VMs: KVM where a probe boot shows it works (auto, the default), or force one")
    parser.add_argument("--kernel-package", type=Path, metavar="DEB",
                        help="VMs: the Debian kernel package (default: the newest one make vm-packages fetched)")


def run(args: argparse.Namespace, ctx: Any) -> int:
    """Run the chosen subcommand; the exit code."""
    import asyncio

    from imaging.errors import UsageError

    from . import discovery, lifecycle, registry

    if args.action in ("up", "demo") and not args.vm and (args.accel or args.kernel_package):
        raise UsageError("--accel and --kernel-package are options of the VM tier: add --vm")
    if args.action == "list":
        _print_running(registry.running(), args.json)
        return 0
    if args.action == "down" and (args.name or args.all):
        if args.dir is not None or (args.name and args.all):
            raise UsageError("imaging-testbed down takes one of NAME, --all and --dir")
        stopped = asyncio.run(lifecycle.down_all()) if args.all else [asyncio.run(lifecycle.down_named(args.name))]
        for entry in stopped:
            print(f"testbed {entry.name} ({entry.directory}) is down")
        if not stopped:
            print("no testbed is running")
        return 0
    directory: Path = args.dir if args.action in ("up", "demo") else discovery.locate(args.dir, Path(DEFAULT_DIR))
    if args.action == "up":
        record = asyncio.run(lifecycle.up(directory, args.count, boot_delay=args.boot_delay,
                                          faults=args.fault, cmc_only=args.cmc_only,
                                          disk_mib=args.disk_size, image_mib=args.image_size,
                                          disk_path=args.hard_drive, leases=args.leases, vm=args.vm,
                                          accel=args.accel or "auto", kernel_package=args.kernel_package,
                                          power=args.power, firmware=args.firmware))
        layout = record.layout
        vms = f" ({record.accel} {record.firmware.upper()} VMs)"
        kind = vms if record.vm else " (CMCs only)" if record.cmc_only else ""
        print(f"testbed {layout.name} up: {record.count} nodes{kind},"
              f" server {layout.server_ip} in namespace {layout.server_ns}")
        print(f"config: {layout.config_path}")
        print(f"try: imaging-testbed run --dir {directory} -- imaging-load -a")
        return 0
    if args.action == "demo":
        from . import demo
        if args.vm:
            return demo.run_vm(directory, args.count or 3, args.accel or "auto", args.kernel_package)
        return demo.run(directory, args.count or 8, args.image_size)
    if args.action == "console":
        return _console(directory, args.node, args.follow)
    if args.action == "down":
        name = asyncio.run(lifecycle.down(directory))
        print(f"testbed {name} in {directory} is down")
        return 0
    if args.action == "status":
        record, statuses = asyncio.run(lifecycle.status(directory))
        if args.json:
            import json
            from dataclasses import asdict
            print(json.dumps({"index": record.index, "directory": record.directory,
                              "nodes": [asdict(s) for s in statuses]}, indent=1))
        else:
            _print_status(statuses)
        return 0
    if args.action == "fault":
        faults: list[str] = []
        for spec in args.specs:
            faults = asyncio.run(lifecycle.set_fault(directory, args.node, spec))
        print(f"{args.node}: {' '.join(faults) or 'no faults'}")
        return 0
    if args.action == "lease":
        params = {"mode": args.mode} if args.lease_action == "api" else {}
        if args.lease_action == "add":
            params = {"slice": args.slice, "from": args.t_from, "until": args.t_until, "nodes": args.nodes}
        answer = asyncio.run(lifecycle.lease(directory, args.lease_action, params))
        _print_leases(answer)
        return 0
    if args.action == "run":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        return lifecycle.run_command(directory, argv, env=dict(os.environ))
    raise AssertionError(args.action)


def _console(directory: Path, node: str, follow: bool) -> int:
    """Print ``node``'s console log (and follow it with ``tail -f``)."""
    import sys

    from imaging.errors import UsageError

    from . import discovery

    layout = discovery.load(directory).layout
    try:
        path = layout.console_log(layout.node_by_name(node))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not path.exists():
        print(f"{node} has printed nothing yet ({path})", file=sys.stderr)
        return 0 if not follow else _follow(path)
    if follow:
        return _follow(path)
    sys.stdout.write(path.read_text(errors="replace"))
    return 0


def _follow(path: Path) -> int:
    """Become ``tail -f`` on ``path`` (Ctrl-C ends it)."""
    from .programs import TAIL
    os.execvp(TAIL, [TAIL, "-n", "+1", "-F", str(path)])


def _print_running(found: list[Any], as_json: bool) -> None:
    """The running testbeds: a table (or JSON), one line each."""
    if as_json:
        import json
        from dataclasses import asdict
        print(json.dumps([asdict(r) | {"alive": r.alive} for r in found], indent=1))
        return
    if not found:
        print("no testbed is running")
        return
    print(f"{'name':<7} {'nodes':>5}  {'kind':<9} {'state':<14} folder")
    for r in found:
        folder = r.directory if r.folder else f"{r.directory} (its files are gone)"
        print(f"{r.name:<7} {r.count:>5}  {r.kind:<9} {r.state:<14} {folder}")


def _print_status(statuses: list[Any]) -> None:
    """A table: node, power, boot, stage, boot time, faults."""
    print(f"{'node':<8} {'power':<5} {'boot':<6} {'stage':<12} {'boot-s':>6}  faults")
    for s in statuses:
        seconds = f"{s.boot_seconds:.2f}" if s.boot_seconds is not None else "-"
        print(f"{s.name:<8} {s.power:<5} {s.boot:<6} {s.stage:<12} {seconds:>6}  {' '.join(s.faults) or '-'}")


def _print_leases(answer: dict[str, Any]) -> None:
    """The API's URL and mode, then one line per lease."""
    print(f"leases API {answer['url']}/leases: {answer['mode']}")
    for lease in answer["leases"]:
        nodes = f"  nodes {lease['nodes']}" if lease.get("nodes") else ""
        print(f"{lease['id']:>4} {lease['slice_name']:<20} {lease['t_from']} → {lease['t_until']}{nodes}")
    if not answer["leases"]:
        print("no leases")
