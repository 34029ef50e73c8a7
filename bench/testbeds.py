"""Emulated testbeds for the benchmarks: made in a temporary folder, always torn
down, and the product's commands run in their server namespace, through the testbed's
public handle (:mod:`imaging_testbed.handle`), which the tests use too."""

from __future__ import annotations

import contextlib
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


@contextmanager
def rhubarbe_site(layout: Layout, cycle: float = 5.0) -> Iterator[Path | None]:
    """What R2lab's ``rhubarbe`` needs to run against the testbed, where it can be run: ``$RHUBARBE`` names
    the ``rhubarbe`` command of a Python 3.12 virtual environment (``pip install rhubarbe``).  Yields the
    folder to run it from (None, after saying why, when it cannot run): its ``rhubarbe.conf`` and inventory
    (the testbed's; JSON is YAML), and ``home/.ssh/id_ed25519``, the key the nodes accept, for its ssh
    (run it with ``HOME`` there).  rhubarbe reaches nodes and cards by hostname (``fit01``): the server
    namespace gets an ``/etc/hosts`` of its own for the run (``/etc/netns/<namespace>/hosts``, which ``ip
    netns exec`` mounts), removed afterwards."""
    import json  # here: the baseline helpers importing this module must start as fast as a naive script

    program = os.environ.get("RHUBARBE", "")
    if not program or not shutil.which(program) or not shutil.which("ping"):
        print("  rhubarbe: not run (set $RHUBARBE to the rhubarbe command of a Python 3.12 venv;"
              " it runs ping: iputils-ping)")
        yield None
        return
    folder = Path(layout.directory) / "rhubarbe"
    (folder / "home" / ".ssh").mkdir(parents=True, exist_ok=True)
    shutil.copy(layout.client_key, folder / "home" / ".ssh" / "id_ed25519")
    inventory = json.loads(Path(layout.inventory_path).read_text())
    (folder / "nodes.yaml").write_text(json.dumps({"nodes": inventory}))
    (folder / "rhubarbe.conf").write_text(
        f"[testbed]\ninventory_nodes_path = {folder / 'nodes.yaml'}\nall_scope = 1-{len(inventory)}\n"
        f"[monitor]\ncycle_nodes = {cycle:g}\n[sidecar]\nurl = ws://127.0.0.1:9/\n")
    hosts = Path("/etc/netns") / layout.server_ns / "hosts"
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{node[kind]['ip']} {node[kind]['hostname']}\n"
                                                       for node in inventory for kind in ("cmc", "control")))
    try:
        yield folder
    finally:
        shutil.rmtree(hosts.parent, ignore_errors=True)
        with contextlib.suppress(OSError):
            hosts.parent.parent.rmdir()  # /etc/netns, when nothing else is there
