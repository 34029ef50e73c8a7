"""Fixtures for tests on the emulated testbed (they need root).

``testbed`` is a session-wide testbed of :data:`NODES` nodes, always torn
down; tests that change a node put it back (faults cleared, rebooted) or use
their own.  :func:`started_testbed` starts a private one.  The
:class:`Testbed` handle offers what end-to-end tests need: the directory,
config and inventory paths, running a command in the server namespace,
setting a node's pxelinux symlink, CMC requests with curl, waiting for a
boot stage, and faults.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from imaging.testbed import lifecycle, pxe, state
from imaging.testbed.disks import DiskReport, DiskSpec, inspect, make_disk
from imaging.testbed.layout import Layout, NodeInfo
from imaging.testbed.node import NodeStatus

NODES = 4
BOOT_DELAY = 0.3
TELNET_CLIENT = Path(__file__).with_name("telnet_client.py")
TOOLS = ("ip", "dnsmasq", "busybox", "dropbear", "dropbearkey", "ssh", "ssh-keygen", "mkfs.vfat", "mcopy",
         "mtype", "zstd", "nft", "unshare", "curl", "udp-sender", "udp-receiver", "nc")


def missing_requirements() -> str | None:
    """Why the testbed cannot run here, or None."""
    if os.geteuid() != 0:
        return "the emulated testbed needs root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    return f"missing tools: {', '.join(missing)}" if missing else None


@dataclass
class Testbed:
    """A running emulated testbed, as tests use it."""

    __test__ = False

    dir: Path
    layout: Layout

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

    def run(self, *argv: str, timeout: float = 30.0, input: bytes | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Run a command in the server namespace (``IMAGING_CONFIG`` set); output captured as text."""
        result = lifecycle.run_in_server(self.dir, list(argv), capture=True, timeout=timeout, input=input)
        return subprocess.CompletedProcess(result.args, result.returncode,
                                           result.stdout.decode(errors="replace"),
                                           result.stderr.decode(errors="replace"))

    def popen(self, *argv: str) -> subprocess.Popen[str]:
        """Start a command in the server namespace, output captured as text."""
        env = {**os.environ, "IMAGING_CONFIG": str(self.config)}
        return subprocess.Popen(["ip", "netns", "exec", self.layout.server_ns, *argv], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def used_disk(self, number: int, spec: DiskSpec, identity: str) -> DiskReport:
        """Give node ``number`` a disk made like a used system's (written while the node is off, with at
        least 48 MiB of deleted data in its free blocks); the disk's report."""
        assert self.cmc(number, "off").stdout.strip() == "ok"
        self.wait_stage(number, "off")
        disk = self.disk(number)
        disk.unlink()
        info = asyncio.run(make_disk(disk, spec, identity))
        assert info.deleted >= 48 << 20
        return asyncio.run(inspect(disk))

    def assert_disks_hold(self, numbers: tuple[int, ...], report: DiskReport) -> None:
        """Power the nodes off, check that each disk holds what ``report`` says (table, fsck-clean file
        systems, every file's sha256, swap), and power them on again."""
        for number in numbers:
            assert self.cmc(number, "off").stdout.strip() == "ok"
        for number in numbers:
            self.wait_stage(number, "off")
            got = asyncio.run(inspect(self.disk(number)))
            assert all(p.clean for p in got.partitions), [(p.number, p.check) for p in got.partitions]
            assert got == report, self.node(number).name
            assert self.cmc(number, "on").stdout.strip() == "ok"

    def serve_once(self, path: Path, port: int) -> subprocess.Popen[str]:
        """Serve ``path`` once on the server's ``port`` (``nc -l``); returns when it listens."""
        server = self.popen("sh", "-c", f"exec nc -l -N {self.layout.server_ip} {port} < {path}")
        deadline = time.monotonic() + 5
        while f":{port}" not in self.run("ss", "-Hltn", f"sport = :{port}").stdout:
            assert time.monotonic() < deadline and server.poll() is None, "nc -l did not start"
            time.sleep(0.02)
        return server

    def set_next_boot(self, number: int, imaging_os: bool) -> None:
        """Point node ``number``'s next-boot symlink (pxelinux's or GRUB's) at the imaging OS, or remove it
        (local disk)."""
        pxe.set_next_boot(self.layout, self.node(number), imaging_os, state.load(self.dir).boot)

    @property
    def controller(self) -> str:
        """How the product names the nodes' power controllers: ``CMC``, ``BMC (ipmi)``, ``BMC (redfish)``."""
        power = state.load(self.dir).power
        return "CMC" if power == "cmc" else f"BMC ({power})"

    def unreachable(self, seconds: int) -> str:
        """The product's line for a node whose power controller does not answer within ``seconds``."""
        return {"CMC": f"unreachable (timeout {seconds}s)",
                "BMC (ipmi)": f"BMC (ipmi) unreachable (no session within {seconds}s)",
                "BMC (redfish)": f"BMC (redfish) unreachable (timeout {seconds}s)"}[self.controller]

    def cmc(self, number: int, verb: str, timeout: float = 3.0) -> subprocess.CompletedProcess[str]:
        """``curl`` the node's CMC: ``GET http://<cmc>/<verb>``."""
        return self.run("curl", "-sS", "-m", str(timeout), f"http://{self.node(number).cmc_ip}/{verb}",
                        timeout=timeout + 5)

    def telnet(self, number: int, command: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run a shell command on the node's imaging OS over telnet (telnetlib3 client)."""
        return self.run(sys.executable, str(TELNET_CLIENT), self.node(number).control_ip, command,
                        str(timeout), timeout=timeout + 10)

    def telnet_popen(self, number: int, command: str, timeout: float = 30.0) -> subprocess.Popen[str]:
        """Start :meth:`telnet` in the background (e.g. a receiver while a sender runs)."""
        return self.popen(sys.executable, str(TELNET_CLIENT), self.node(number).control_ip, command,
                          str(timeout))

    def ssh(self, number: int, command: str, timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
        """Run a command on the node's installed OS with OpenSSH as root, with the testbed's key."""
        return self.run("ssh", "-i", str(self.layout.client_key), "-o", "StrictHostKeyChecking=no",
                        "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                        "-o", f"ConnectTimeout={timeout:g}", f"root@{self.node(number).control_ip}", command,
                        timeout=timeout + 10)

    def port_open(self, number: int, port: int) -> bool:
        """Whether a TCP connection to the node's port succeeds (``nc -z``)."""
        return self.run("nc", "-z", "-w", "1", self.node(number).control_ip, str(port)).returncode == 0

    def status(self) -> dict[str, NodeStatus]:
        """Every node's status, by name."""
        _, statuses = asyncio.run(lifecycle.status(self.dir))
        return {s.name: s for s in statuses}

    def wait_stage(self, number: int, *stages: str, timeout: float = 15.0) -> NodeStatus:
        """Wait until node ``number``'s boot stage is one of ``stages``; its status."""
        name = self.node(number).name
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()[name]
            if status.stage in stages:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} still at stage {status.stage} ({status.detail}) after {timeout} s,"
                                     f" not {stages}")
            time.sleep(0.05)

    def fault(self, number: int, spec: str) -> list[str]:
        """Change node ``number``'s faults live."""
        return asyncio.run(lifecycle.set_fault(self.dir, self.node(number).name, spec))

    def boot(self, number: int, imaging_os: bool) -> NodeStatus:
        """Make node ``number`` boot the imaging OS (telnet) or its disk (ssh) now, and wait for it."""
        self.set_next_boot(number, imaging_os)
        if self.cmc(number, "status").stdout.strip() == "on":
            assert self.cmc(number, "reset").stdout.strip() == "ok"
        else:
            assert self.cmc(number, "on").stdout.strip() == "ok"
        return self.wait_stage(number, "telnet" if imaging_os else "ssh")


@contextmanager
def started_testbed(directory: Path, count: int, *, boot_delay: float = BOOT_DELAY,
                    faults: list[str] | None = None, cmc_only: bool = False,
                    disk_mib: int = 64, power: str | None = None, firmware: str = "bios") -> Iterator[Testbed]:
    """A testbed of ``count`` nodes in ``directory`` for the duration of the block; always torn down.

    The options are those of :func:`imaging.testbed.lifecycle.up`; ``faults``
    are ``fitNN:knob=value`` specs; ``power`` defaults to ``$IMAGING_TESTBED_POWER`` or ``cmc``, so that
    the whole suite can run with each power driver (``IMAGING_TESTBED_POWER=ipmi pytest tests/testbed``).
    Skips the test when not root or a tool is missing.
    """
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    record = asyncio.run(lifecycle.up(directory, count, boot_delay=boot_delay, faults=faults,
                                      cmc_only=cmc_only, disk_mib=disk_mib,
                                      power=power or os.environ.get(POWER_VARIABLE, "cmc"), firmware=firmware))
    try:
        yield Testbed(Path(record.directory), record.layout)
    finally:
        asyncio.run(lifecycle.down(directory))


POWER_VARIABLE = "IMAGING_TESTBED_POWER"  # the power driver of the testbeds the suite starts
HOST_FILES = (Path("/etc/resolv.conf"), Path("/etc/hosts"))


def host_files() -> dict[Path, tuple[bytes, int] | None]:
    """Content and mtime of the host files a node must never write (None if absent)."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) if p.exists() else None for p in HOST_FILES}


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A testbed of NODES nodes shared by the session, all booted to ssh at start.

    At the end, checks that the host's /etc/resolv.conf and /etc/hosts are unchanged."""
    before = host_files()
    with started_testbed(tmp_path_factory.mktemp("testbed"), NODES) as bed:
        for number in range(1, NODES + 1):
            bed.wait_stage(number, "ssh")
        yield bed
    assert host_files() == before, "the testbed wrote the host's /etc"


@pytest.fixture
def testbed_dir(testbed: Testbed) -> Path:
    """The session testbed's directory."""
    return testbed.dir


@pytest.fixture
def testbed_config(testbed: Testbed) -> Path:
    """The session testbed's ``imaging.conf``."""
    return testbed.config
