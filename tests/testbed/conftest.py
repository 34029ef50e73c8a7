"""Fixtures for tests on the emulated testbed (they need root).

``testbed`` is a session-wide testbed of :data:`NODES` nodes, always torn
down; tests that change a node put it back (faults cleared, rebooted) or use
their own.  :func:`started_testbed` starts a private one.  :class:`Testbed`
is the testbed's public handle (:mod:`imaging_testbed.handle`: the directory,
config and inventory paths, running a command in the server namespace,
setting a node's next-boot link, card requests with curl, telnet and ssh to a
node, waiting for a boot stage, and faults), with the checks tests add.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from imaging_testbed import handle
from imaging_testbed.disks import DiskReport, DiskSpec, inspect, make_disk

NODES = 4
BOOT_DELAY = 0.3
TOOLS = ("ip", "dnsmasq", "busybox", "dropbear", "dropbearkey", "ssh", "ssh-keygen", "mkfs.vfat", "mcopy",
         "mtype", "zstd", "nft", "unshare", "curl", "udp-sender", "udp-receiver", "nc")


def missing_requirements() -> str | None:
    """Why the testbed cannot run here, or None."""
    if os.geteuid() != 0:
        return "the emulated testbed needs root"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    return f"missing tools: {', '.join(missing)}" if missing else None


class Testbed(handle.Testbed):
    """The testbed's public handle, with the checks end-to-end tests add."""

    __test__ = False

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

    def unreachable(self, seconds: int) -> str:
        """The product's line for a node whose power controller does not answer within ``seconds``."""
        return {"CMC": f"unreachable (timeout {seconds}s)",
                "BMC (ipmi)": f"BMC (ipmi) unreachable (no session within {seconds}s)",
                "BMC (redfish)": f"BMC (redfish) unreachable (timeout {seconds}s)"}[self.controller]


@contextmanager
def started_testbed(directory: Path, count: int, *, boot_delay: float = BOOT_DELAY,
                    faults: list[str] | None = None, cmc_only: bool = False,
                    disk_mib: int = 64, power: str | None = None, firmware: str = "bios") -> Iterator[Testbed]:
    """A testbed of ``count`` nodes in ``directory`` for the duration of the block; always torn down.

    The options are those of :func:`imaging_testbed.lifecycle.up`; ``faults``
    are ``fitNN:knob=value`` specs; ``power`` defaults to ``$IMAGING_TESTBED_POWER`` or ``cmc``, so that
    the whole suite can run with each power driver (``IMAGING_TESTBED_POWER=ipmi pytest tests/testbed``).
    Skips the test when not root or a tool is missing.
    """
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    with handle.started(directory, count, boot_delay=boot_delay, faults=faults, cmc_only=cmc_only,
                        disk_mib=disk_mib, power=power or os.environ.get(POWER_VARIABLE, "cmc"),
                        firmware=firmware) as bed:
        yield Testbed(bed.dir, bed.layout)


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
def restored(testbed: Testbed) -> Iterator[Testbed]:
    """The session testbed; afterwards every node healthy, its next-boot link gone and back on ssh."""
    yield testbed
    for number in range(1, NODES + 1):
        testbed.fault(number, "clear")
        testbed.set_next_boot(number, False)
    for number in range(1, NODES + 1):
        if testbed.status()[testbed.node(number).name].stage != "ssh":
            testbed.boot(number, imaging_os=False)


@pytest.fixture
def testbed_dir(testbed: Testbed) -> Path:
    """The session testbed's directory."""
    return testbed.dir


@pytest.fixture
def testbed_config(testbed: Testbed) -> Path:
    """The session testbed's ``imaging.conf``."""
    return testbed.config
