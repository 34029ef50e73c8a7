"""Emulated testbeds for the benchmarks: made in a temporary folder, always torn
down, and the product's commands run in their server namespace."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported lazily: a benchmark's baseline helper must start as fast as a naive script
    from imaging.testbed.layout import Layout

SETTLE_TIMEOUT = 60.0  # for the nodes of a fresh testbed to come up


def lacks_root(script: str) -> bool:
    """True, after saying so on stderr, when not root: testbeds make network namespaces."""
    if os.geteuid() == 0:
        return False
    print(f"{script} needs root (the testbed uses network namespaces)", file=sys.stderr)
    return True


@contextmanager
def temporary_testbed(count: int, *, prefix: str, work: Path | None = None,
                      **options: Any) -> Iterator[Layout]:
    """A testbed of ``count`` nodes in a fresh folder (under ``work``), torn down and
    removed whatever happens; ``options`` go to ``imaging.testbed.lifecycle.up``."""
    from imaging.testbed import lifecycle

    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=work))
    try:
        record = asyncio.run(lifecycle.up(directory, count, **options))
        try:
            yield record.layout
        finally:
            asyncio.run(lifecycle.down(directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def in_server(layout: Layout, argv: list[str]) -> list[str]:
    """``argv`` run in the testbed's server namespace."""
    return ["ip", "netns", "exec", layout.server_ns, *argv]


def product_env(layout: Layout) -> dict[str, str]:
    """Our environment with ``IMAGING_CONFIG`` pointing at the testbed."""
    return dict(os.environ, IMAGING_CONFIG=str(layout.config_path))


def wait_for_stage(layout: Layout, *stages: str, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until every node is at one of the boot ``stages``; RuntimeError after ``timeout`` seconds."""
    from imaging.testbed import lifecycle

    deadline = time.monotonic() + timeout
    while True:
        _, statuses = asyncio.run(lifecycle.status(layout.directory))
        late = [f"{s.name}:{s.stage}" for s in statuses if s.stage not in stages]
        if not late:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(late)} nodes not at {'/'.join(stages)} after {timeout:g} s: {' '.join(late[:8])}")
        time.sleep(0.1)
