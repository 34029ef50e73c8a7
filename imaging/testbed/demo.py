"""``imaging-testbed demo``: a testbed of N nodes, then the product's commands
against it as a user would type them (status, load with the live display,
wait, list), then everything stopped.

The product runs as separate processes (``python -m imaging …``) in the
server namespace: the testbed imports nothing of the product's jobs.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

from . import lifecycle
from .images import make_image

DEMO_IMAGE = "demo-ubuntu"


def _step(directory: Path, *argv: str) -> int:
    """Show and run ``imaging-<command> …`` in the server namespace; its exit code."""
    print(f"\n$ imaging-{argv[0]} {shlex.join(argv[1:])}", flush=True)
    command = [sys.executable, "-m", "imaging", *argv]
    return lifecycle.run_in_server(directory, command, env=dict(os.environ)).returncode


async def prepare(directory: Path, count: int, image_mib: int) -> None:
    """Start the testbed and put a demo image of ``image_mib`` MiB (random content) in its repository."""
    record = await lifecycle.up(directory, count, boot_delay=0.5, disk_mib=image_mib + 16)
    print(f"testbed up: {record.count} nodes in namespaces {record.layout.server_ns} and its nodes,"
          f" server {record.layout.server_ip}")
    image = await make_image(DEMO_IMAGE, record.layout.images_dir, size_mib=image_mib, compressed=True,
                             random_fill=True)
    print(f"demo image: {image.path.name}, {image_mib} MiB ({image.identity})")


def run(directory: Path, count: int, image_mib: int) -> int:
    """The whole demonstration; the testbed is always stopped.  0 when every step succeeded."""
    import asyncio
    start = time.monotonic()
    failures = 0
    try:
        asyncio.run(prepare(directory, count, image_mib))
        for argv in (("status", "-a"), ("load", "-i", DEMO_IMAGE, "-a"), ("wait", "-a", "-t", "30"),
                     ("list",)):
            failures += _step(directory, *argv) != 0
    finally:
        asyncio.run(lifecycle.down(directory))
        print(f"\ntestbed down; the demo took {time.monotonic() - start:.0f} s,"
              f" {'all steps succeeded' if not failures else f'{failures} step(s) failed'}")
    return 1 if failures else 0
