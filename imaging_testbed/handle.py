"""The testbed's public handle, which tests and benchmarks share: :func:`started` brings a testbed up for
the duration of a block, :class:`Testbed` drives a running one from outside.

A :class:`Testbed` runs commands in the server namespace (the product pointed at the testbed by
``IMAGING_CONFIG``), speaks to a node as a user would (``curl`` to its card, telnet to its imaging OS,
OpenSSH to its installed OS), points its next boot, reads every node's power and boot stage and waits
for one, and sets faults live.  It is synchronous: a test or a benchmark script calls it between runs of
the product.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import lifecycle, pxe, state
from .layout import Layout, NodeInfo
from .node import NodeStatus
from .programs import CURL, IP, NC, SSH


@dataclass
class Testbed:
    """A running testbed (emulated nodes or VMs), driven from outside it."""

    __test__ = False  # not a pytest test class

    dir: Path
    layout: Layout

    @classmethod
    def at(cls, directory: Path) -> Testbed:
        """The handle of the testbed running in ``directory``."""
        return cls(directory, state.load(directory).layout)

    @property
    def config(self) -> Path:
        """``DIR/imaging.conf``: point the product at the testbed with ``IMAGING_CONFIG``."""
        return self.layout.config_path

    @property
    def inventory(self) -> Path:
        """``DIR/inventory.json``."""
        return self.layout.inventory_path

    def node(self, number: int) -> NodeInfo:
        """Node ``number``'s names and addresses."""
        return self.layout.node(number)

    def disk(self, number: int) -> Path:
        """The file that is node ``number``'s disk."""
        return self.layout.disk_path(self.node(number))

    def env(self) -> dict[str, str]:
        """Our environment with ``IMAGING_CONFIG`` pointing at the testbed."""
        return {**os.environ, "IMAGING_CONFIG": str(self.config)}

    def in_server(self, argv: list[str]) -> list[str]:
        """``argv`` run in the server namespace (``ip netns exec``)."""
        return [IP, "netns", "exec", self.layout.server_ns, *argv]

    def run(self, *argv: str, timeout: float = 30.0, input: bytes | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Run a command in the server namespace (``IMAGING_CONFIG`` set); output captured as text."""
        result = lifecycle.run_in_server(self.dir, list(argv), capture=True, timeout=timeout, input=input)
        return subprocess.CompletedProcess(result.args, result.returncode,
                                           result.stdout.decode(errors="replace"),
                                           result.stderr.decode(errors="replace"))

    def popen(self, *argv: str) -> subprocess.Popen[str]:
        """Start a command in the server namespace, output captured as text."""
        return subprocess.Popen(self.in_server(list(argv)), env=self.env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def set_next_boot(self, number: int, imaging_os: bool) -> None:
        """Point node ``number``'s next-boot link (pxelinux's or GRUB's, as the testbed boots) at the imaging
        OS, or remove it (local disk)."""
        pxe.set_next_boot(self.layout, self.node(number), imaging_os, state.load(self.dir).boot)

    @property
    def controller(self) -> str:
        """How the product names the nodes' power controllers: ``CMC``, ``BMC (ipmi)``, ``BMC (redfish)``."""
        power = state.load(self.dir).power
        return "CMC" if power == "cmc" else f"BMC ({power})"

    def cmc(self, number: int, verb: str, timeout: float = 3.0) -> subprocess.CompletedProcess[str]:
        """``curl`` the node's card: ``GET http://<cmc>/<verb>``."""
        return self.run(CURL, "-sS", "-m", str(timeout), f"http://{self.node(number).cmc_ip}/{verb}",
                        timeout=timeout + 5)

    def telnet(self, number: int, command: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the node's imaging OS over telnet (:mod:`.telnet_client`)."""
        return self.run(*self._telnet_argv(number, command, timeout), timeout=timeout + 10)

    def telnet_popen(self, number: int, command: str, timeout: float = 30.0) -> subprocess.Popen[str]:
        """Start :meth:`telnet` in the background (e.g. a receiver while a sender runs)."""
        return self.popen(*self._telnet_argv(number, command, timeout))

    def _telnet_argv(self, number: int, command: str, timeout: float) -> list[str]:
        return [sys.executable, "-m", "imaging_testbed.telnet_client", self.node(number).control_ip, command,
                str(timeout)]

    def ssh(self, number: int, command: str, timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
        """Run a command on the node's installed OS with OpenSSH as root, with the testbed's key."""
        return self.run(SSH, "-i", str(self.layout.client_key), "-o", "StrictHostKeyChecking=no",
                        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                        "-o", f"ConnectTimeout={timeout:g}", f"root@{self.node(number).control_ip}", command,
                        timeout=timeout + 10)

    def port_open(self, number: int, port: int) -> bool:
        """Whether a TCP connection to the node's port succeeds (``nc -z``)."""
        return self.run(NC, "-z", "-w", "1", self.node(number).control_ip, str(port)).returncode == 0

    def status(self) -> dict[str, NodeStatus]:
        """Every node's status, by name."""
        _, statuses = asyncio.run(lifecycle.status(self.dir))
        return {s.name: s for s in statuses}

    def wait_stage(self, number: int, *stages: str, timeout: float = 15.0) -> NodeStatus:
        """Wait until node ``number``'s boot stage is one of ``stages``; its status.  TimeoutError after
        ``timeout`` seconds, naming the stage it is at."""
        name = self.node(number).name
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()[name]
            if status.stage in stages:
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} still at stage {status.stage} ({status.detail}) after {timeout} s,"
                                   f" not {stages}")
            time.sleep(0.05)

    def wait_all(self, *stages: str, timeout: float = 60.0) -> None:
        """Wait until every node's boot stage is one of ``stages``; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            late = [f"{s.name}:{s.stage}" for s in self.status().values() if s.stage not in stages]
            if not late:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(late)} nodes not at {'/'.join(stages)} after {timeout:g} s:"
                                   f" {' '.join(late[:8])}")
            time.sleep(0.1)

    def fault(self, number: int, spec: str) -> list[str]:
        """Change node ``number``'s faults live."""
        return asyncio.run(lifecycle.set_fault(self.dir, self.node(number).name, spec))

    def boot(self, number: int, imaging_os: bool) -> NodeStatus:
        """Make node ``number`` boot the imaging OS (telnet) or its disk (ssh) now, and wait for it."""
        self.set_next_boot(number, imaging_os)
        verb = "reset" if self.cmc(number, "status").stdout.strip() == "on" else "on"
        answer = self.cmc(number, verb).stdout.strip()
        if answer != "ok":
            raise RuntimeError(f"{self.node(number).name}: its card answered {answer!r} to {verb}")
        return self.wait_stage(number, "telnet" if imaging_os else "ssh")


@contextmanager
def started(directory: Path, count: int, **options: Any) -> Iterator[Testbed]:
    """A testbed of ``count`` nodes in ``directory`` for the duration of the block, always torn down;
    ``options`` are :func:`imaging_testbed.lifecycle.up`'s."""
    record = asyncio.run(lifecycle.up(directory, count, **options))
    try:
        yield Testbed(Path(record.directory), record.layout)
    finally:
        asyncio.run(lifecycle.down(directory))
