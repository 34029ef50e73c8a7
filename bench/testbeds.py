"""Emulated testbeds for the benchmarks: made in a temporary folder, always torn
down, and the product's commands run in their server namespace, through the testbed's
public handle (:mod:`imaging_testbed.handle`), which the tests use too."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported lazily: a benchmark's baseline helper must start as fast as a naive script
    from imaging_testbed.handle import Testbed
    from imaging_testbed.layout import Layout

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
    removed whatever happens (:func:`imaging_testbed.handle.started`); ``options`` go to
    ``imaging_testbed.lifecycle.up``."""
    from imaging_testbed.handle import started

    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=work))
    try:
        with started(directory, count, **options) as bed:
            yield bed.layout
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _handle(layout: Layout) -> Testbed:
    """The testbed's public handle."""
    from imaging_testbed.handle import Testbed

    return Testbed(layout.directory, layout)


def in_server(layout: Layout, argv: list[str]) -> list[str]:
    """``argv`` run in the testbed's server namespace."""
    return _handle(layout).in_server(argv)


def product_env(layout: Layout) -> dict[str, str]:
    """Our environment with ``IMAGING_CONFIG`` pointing at the testbed."""
    return _handle(layout).env()


def wait_for_stage(layout: Layout, *stages: str, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until every node is at one of the boot ``stages``; TimeoutError after ``timeout`` seconds."""
    _handle(layout).wait_all(*stages, timeout=timeout)
