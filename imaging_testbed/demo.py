"""``imaging-testbed demo``: a testbed of N nodes, then the product's commands
against it as a user would type them (status, load with the live display,
wait, a file-system-aware save of one node, list -l; then with frisbee, Emulab's
programs, when they are built: a save by imagezip and its load on the other
nodes), then everything stopped.  ``demo --vm``: the same on qemu
machines booting over PXE, plus what each machine's ssh says it runs, and a
save.

The product runs as separate processes (``python -m imaging …``) in the
server namespace: the testbed imports nothing of the product's jobs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import frisbee, lifecycle, state
from .images import IDENTITY_FILE, make_image
from .layout import BRIDGE, Layout, NodeInfo
from .programs import SSH

DEMO_IMAGE = "demo-ubuntu"


def _step(directory: Path, *argv: str) -> int:
    """Show and run ``imaging-<command> …`` in the server namespace; its exit code."""
    print(f"\n$ imaging-{argv[0]} {shlex.join(argv[1:])}", flush=True)
    command = [sys.executable, "-m", "imaging", *argv]
    return lifecycle.run_in_server(directory, command, env=dict(os.environ)).returncode


async def prepare(directory: Path, count: int, image_mib: int) -> None:
    """Start the testbed and put a demo image of ``image_mib`` MiB in its repository: a partitioned disk
    (FAT, ext4 with files, swap) with deleted data in its free blocks."""
    record = await lifecycle.up(directory, count, boot_delay=0.5, disk_mib=image_mib + 16)
    print(f"testbed up: {record.count} nodes in namespaces {record.layout.server_ns} and its nodes,"
          f" server {record.layout.server_ip}")
    image = await make_image(DEMO_IMAGE, record.layout.images_dir, size_mib=image_mib, compressed=True,
                             random_fill=True, partitioned=True)
    print(f"demo image: {image.path.name}, {image_mib} MiB ({image.identity})")


def _identity(directory: Path, layout: Layout, node: NodeInfo) -> int:
    """Show what ``node``'s OS says it is, over ssh; ssh's exit code."""
    argv = [SSH, "-i", str(layout.client_key), "-o", "StrictHostKeyChecking=no", "-o",
            "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
            f"root@{node.control_ip}", "cat", IDENTITY_FILE]
    print(f"\n$ ssh root@{node.name} cat {IDENTITY_FILE}", flush=True)
    try:
        return lifecycle.run_in_server(directory, argv, env=dict(os.environ), timeout=60).returncode
    except subprocess.TimeoutExpired:
        print(f"ssh to {node.name} did not finish within 60 s", flush=True)
        return 1


def run(directory: Path, count: int, image_mib: int) -> int:
    """The whole demonstration; the testbed is always stopped.  0 when every step succeeded."""
    import asyncio

    def steps() -> int:
        asyncio.run(prepare(directory, count, image_mib))
        failures = sum(_step(directory, *argv) != 0 for argv in (
            ("status", "-a"), ("load", "-i", DEMO_IMAGE, "-a"), ("wait", "-a", "-t", "30"),
            ("save", "fit01", "-o", "demo", "--repo"), ("list", "-l")))
        if frisbee.locate() is None:
            print("\nno frisbee programs here (`make frisbee` builds them): the frisbee steps are left out")
            return failures
        others = f"2-{count}" if count > 1 else "1"
        return failures + sum(_step(directory, *argv) != 0 for argv in (
            ("save", "--transport", "frisbee", "fit01", "-o", "demo-frisbee", "--repo"),
            ("load", "--transport", "frisbee", "-i", "demo-frisbee", others), ("wait", others, "-t", "30")))

    return _with_testbed(directory, steps)


def run_vm(directory: Path, count: int, accel: str, kernel_package: Path | None) -> int:
    """The demonstration on ``count`` VMs: load the default image, wait for ssh,
    ask each machine what it runs, save the first one, list; always stopped."""
    import asyncio

    def steps() -> int:
        print("building (or reusing) the imaging OS and the boot images; starting the VMs…", flush=True)
        record = asyncio.run(lifecycle.up(directory, count, vm=True, accel=accel, kernel_package=kernel_package))
        layout = record.layout
        print(f"testbed up: {count} {record.accel} VMs on bridge {BRIDGE} of namespace {layout.server_ns};"
              f" consoles: imaging-testbed console --dir {directory} fitNN")
        failures = sum(_step(directory, *argv) != 0 for argv in (
            ("status", "-a"), ("load", "-a"), ("wait", "-a", "-t", "180")))
        failures += sum(_identity(directory, layout, node) != 0 for node in layout.nodes())
        failures += sum(_step(directory, *argv) != 0 for argv in (
            ("save", "fit01", "-o", "demo-vm", "--repo"), ("list",)))
        return failures

    return _with_testbed(directory, steps)


def _with_testbed(directory: Path, steps: Callable[[], int]) -> int:
    """Run ``steps`` (they start the testbed; they return how many failed), then stop the testbed."""
    import asyncio
    start = time.monotonic()
    failures = 1
    try:
        failures = steps()
    finally:
        if (directory / state.STATE_FILE).exists():
            asyncio.run(lifecycle.down(directory))
        print(f"\ntestbed down; the demo took {time.monotonic() - start:.0f} s,"
              f" {'all steps succeeded' if not failures else f'{failures} step(s) failed'}")
    return 1 if failures else 0
