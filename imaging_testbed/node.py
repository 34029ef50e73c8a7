"""A node as the controller sees it: power, link, and the boot.

:class:`PoweredNode` holds what every node shares, the VMs of
:mod:`imaging_testbed.vm.machine` included; :class:`EmulatedNode` is the
fast tier's node.  Power state machine (driven by the CMC): ``on`` of an on node and ``reset``
of an off node do nothing.  For an emulated node, ``off`` and ``reset`` kill
everything the node runs (its PID namespace dies with its first process) and
take its link down; ``on`` and ``reset`` bring the link up and, after the
boot delay, attach the node's disk file to a loop device with its partitions
(:mod:`imaging_testbed.loopdev`) and start the firmware
(:mod:`imaging_testbed.firmware`) in the node's network namespace, a private
mount, UTS and PID namespace::

    ip netns exec NS unshare --mount --propagation private --uts --pid --fork \
        --kill-child --mount-proc sh DIR/bin/firmware

The controller holds the loop device open while the node is on and lets go of
it on ``off`` and ``reset`` once the node's processes are dead: the kernel then
writes what the node wrote into the file and detaches the device (AUTOCLEAR).
Where the machine gives no loop device (or with the ``disk=noloop`` fault)
the node's disk is the file itself, bind-mounted, without partitions, and its
console says so.

A node of a ``--cmc-only`` testbed has a power state and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TextIO

from imaging.errors import ImagingError

from . import firmware, loopdev
from .faults import Faults
from .layout import Layout, NodeInfo
from .procs import kill_netns, netns_pids, run, track, untrack
from .programs import IP, SH, UNSHARE

log = logging.getLogger(__name__)

KILL_WAIT = 3.0  # seconds for a node's processes to vanish after SIGKILL
STATE_LINE = re.compile(r"@state (?P<stage>\S+) ?(?P<detail>.*)$")


@dataclass(frozen=True)
class NodeSettings:
    """How every node of a testbed behaves."""

    boot_delay: float = 1.0  # seconds from power-on to DHCP
    disk_path: str = "/dev/sda"  # where the disk appears inside the node
    disk_mib: int = 64  # size of the disk file
    full: bool = True  # False in --cmc-only mode: no namespace, no boot
    boot: str = "pxelinux"  # the network boot loader the firmware runs: pxelinux (BIOS) or grub (UEFI)


@dataclass(frozen=True)
class NodeStatus:
    """What ``status`` shows for one node."""

    name: str
    power: str  # on | off
    boot: str  # telnet | ssh | none
    stage: str  # last firmware stage: off, waiting, dhcp, tftp, telnet, ssh, no-os, ...
    detail: str
    faults: list[str]
    boot_seconds: float | None  # from power-on/reset to telnet or ssh


class PoweredNode:
    """What every kind of node shares: the power state machine the CMC drives,
    the console log, and the boot stage announced by ``@state`` lines.

    Subclasses say how power goes on (:meth:`_power_up`) and off
    (:meth:`_power_down`), and may override :meth:`_restart` (a reset;
    default: off, then on).
    """

    card: ClassVar[str] = "emulated CMC"  # what the CMC's /info calls itself

    def __init__(self, info: NodeInfo, layout: Layout, settings: NodeSettings, faults: Faults) -> None:
        self.info = info
        self.layout = layout
        self.settings = settings
        self.faults = faults
        self.powered = False
        self.stage = "off"
        self.detail = ""
        self.boot_seconds: float | None = None
        self._powered_at = 0.0
        self._lock = asyncio.Lock()
        self._console: TextIO | None = None

    # --- the CMC's verbs ---------------------------------------------------
    async def power_on(self) -> None:
        """Power the node on; nothing if it is on already."""
        async with self._lock:
            if not self.powered:
                await self._start()

    async def power_off(self) -> None:
        """Power the node off: everything it runs stops."""
        async with self._lock:
            if self.powered:
                await self._stop()
                self.stage, self.detail = "off", ""

    async def reset(self) -> None:
        """Reboot an on node (unless its reset is ignored); nothing if it is off."""
        async with self._lock:
            if not self.powered or self.faults.reset_ignore:
                return
            await self._restart()

    def status(self) -> NodeStatus:
        """The node's power, boot state and faults."""
        boot = self.stage if self.stage in ("telnet", "ssh") else "none"
        return NodeStatus(self.info.name, "on" if self.powered else "off", boot, self.stage,
                          self.detail, self.faults.describe(), self.boot_seconds)

    async def shutdown(self) -> None:
        """Stop the node (the controller is going away), whatever its power
        state says: a transition cut short must not leave anything running."""
        async with self._lock:
            self.powered = False
            await self._power_down()
        if self._console is not None:
            self._console.close()
            self._console = None

    # --- for subclasses ----------------------------------------------------
    async def _start(self) -> None:
        self.powered = True
        self._booting()
        try:
            await self._power_up()
        except Exception as exc:  # e.g. its disk is gone: the node stays off, and says why
            log.exception("%s: power-on failed", self.info.name)
            self.powered = False
            self.stage, self.detail = "failed", f"power-on failed: {exc}"
            self._log(f"--- power-on failed: {exc} ---")

    async def _stop(self) -> None:
        self.powered = False
        await self._power_down()

    async def _restart(self) -> None:
        await self._stop()
        await self._start()

    async def _power_up(self) -> None:
        """Make the node run (power is on)."""
        raise NotImplementedError

    async def _power_down(self) -> None:
        """Stop everything the node runs (power is off); nothing when nothing runs."""
        raise NotImplementedError

    def _booting(self) -> None:
        """A boot starts now: the stage and boot time start over."""
        self._powered_at = time.monotonic()
        self.boot_seconds = None
        self.stage, self.detail = "waiting", ""

    def _log(self, line: str) -> None:
        """A line in the node's console log, time-stamped."""
        if self._console is None:
            self._console = open(self.layout.console_log(self.info), "a", buffering=1)  # noqa: SIM115
        self._console.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def _console_line(self, line: str) -> None:
        """Follow a line the node printed: ``@state WORD [detail]`` moves the boot stage
        (anywhere in the line: a kernel message may have landed before it on a serial console)."""
        found = STATE_LINE.search(line)
        if found:
            self.stage, self.detail = found["stage"], found["detail"]
            if self.stage in ("telnet", "ssh"):
                self.boot_seconds = round(time.monotonic() - self._powered_at, 3)


class EmulatedNode(PoweredNode):
    """One emulated node: its link and its firmware process."""

    def __init__(self, info: NodeInfo, layout: Layout, settings: NodeSettings, faults: Faults) -> None:
        super().__init__(info, layout, settings, faults)
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._loop: loopdev.LoopDevice | None = None

    # --- internals ---------------------------------------------------------
    async def _power_up(self) -> None:
        if self.settings.full:
            await self._link(up=True)
            self._task = asyncio.create_task(self._boot(), name=f"boot-{self.info.name}")

    async def _power_down(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.settings.full:
            await self._kill()
            await self._release_disk()
            await self._link(up=False)

    async def _link(self, up: bool) -> None:
        """Bring the node's eth0 up, or down with its addresses flushed."""
        commands = "link set eth0 up\n" if up else "link set eth0 down\naddr flush dev eth0\n"
        await run(IP, "-n", self.info.netns, "-batch", "-", input=commands)

    async def _kill(self) -> None:
        """Kill the firmware and everything in the node's namespace; wait until gone."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()  # unshare: --kill-child takes the PID namespace with it
            await self._proc.wait()
        self._proc = None
        untrack(self.layout.run_dir, self.info.name)
        deadline = time.monotonic() + KILL_WAIT
        while netns_pids(self.info.netns):
            if time.monotonic() > deadline:
                log.warning("%s: processes survive the kill; killing them one by one", self.info.name)
                kill_netns(self.info.netns)
                break
            await asyncio.sleep(0.01)

    async def _attach_disk(self, disk: Path, size: int) -> loopdev.LoopDevice | None:
        """Attach the disk file to a loop device of ``size`` bytes with its partitions; None, said in
        one console line, when this machine gives none (or the node has the ``disk=noloop`` fault)."""
        if self.faults.disk_noloop:
            reason = "fault disk=noloop"
        else:
            try:
                # synchronous (a few ms): once it returns, a power-off finds the device to let go of
                self._loop = loopdev.attach(disk, size)
                self._loop.limit_dirty()
            except loopdev.LoopUnavailable as exc:
                reason = str(exc)
            else:
                try:
                    found = await loopdev.add_partitions(self._loop)
                    names = " ".join(str(p.number) for p in found) or "none"
                    self._log(f"disk: {self._loop.path}, {size >> 20} MiB, partitions: {names}")
                except ImagingError as exc:
                    self._log(f"disk: {self._loop.path}, {size >> 20} MiB, no partition devices: {exc}")
                return self._loop
        self._log(f"disk: no loop device ({reason}): {self.settings.disk_path} is the disk file,"
                  " bind-mounted, without partition devices")
        return None

    async def _release_disk(self) -> None:
        """Let go of the loop device (the node's processes are dead): the kernel flushes and detaches it."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        await asyncio.to_thread(loop.close)
        # the last close of a node process may land just after ours: off is done when the file is whole
        deadline = time.monotonic() + KILL_WAIT
        while not loop.detached():
            if time.monotonic() > deadline:
                log.warning("%s: %s is still attached to the disk file: something holds it open",
                            self.info.name, loop.path)
                break
            await asyncio.sleep(0.01)

    def _environment(self, loop: loopdev.LoopDevice | None) -> dict[str, str]:
        """The firmware's inputs."""
        layout, faults = self.layout, self.faults
        # with a loop device the disk's size is the device's; without, a file size limit stands in
        limit = "" if loop is not None or faults.disk_small_mib is None else str(faults.disk_small_mib * 1024)
        disk = layout.disk_path(self.info)
        disk_stat = os.stat(disk)
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C",
            "TB_NODE": self.info.name,
            "TB_MAC": self.info.control_mac,
            "TB_BOOT": self.settings.boot,
            "TB_CONSOLE": str(layout.console_log(self.info)),
            "TB_SCRATCH": str(layout.nodes_dir / self.info.name),
            "TB_BIN": str(layout.bin_dir),
            "TB_DISK": str(disk),
            "TB_DISK_ID": f"{disk_stat.st_dev}:{disk_stat.st_ino}",
            "TB_DISK_PATH": self.settings.disk_path,
            "TB_LOOP": "" if loop is None else loop.name,
            "TB_HOST_KEY": str(layout.host_key),
            "TB_RSA_HOST_KEY": str(layout.rsa_host_key),
            "TB_CLIENT_PUB": str(layout.client_key) + ".pub",
            "TB_TELNET_HANG": "1" if faults.telnet_hang else "0",
            "TB_SSH_NEVER": "1" if faults.ssh_never else "0",
            "TB_RECEIVER_DIE": "" if faults.receiver_die is None else str(faults.receiver_die),
            "TB_DISK_LIMIT_KIB": limit,
        }

    async def _boot(self) -> None:
        """Boot; a failure to even start the firmware leaves the node on and dead."""
        try:
            await self._run_firmware()
        except (OSError, ValueError) as exc:  # ValueError: a console line beyond the reader's limit
            log.exception("%s: boot failed", self.info.name)
            self.stage, self.detail = "failed", f"boot failed: {exc}"

    async def _run_firmware(self) -> None:
        """After the boot delay, run the firmware and follow its stages."""
        faults = self.faults
        await asyncio.sleep(self.settings.boot_delay + faults.boot_slow)
        if faults.boot_never:
            self.stage, self.detail = "hung", "boot=never"
            self._log("firmware: boot=never: powered on, boots nothing")
            return
        disk = self.layout.disk_path(self.info)
        if not stat.S_ISREG(disk.lstat().st_mode):
            self.stage, self.detail = "disk-refused", f"{disk} is not a regular file"
            self._log(f"firmware: refusing to boot: {self.detail}")
            return
        # a disk keeps its size; a regular file does not (udp-receiver and ">" truncate it)
        size = faults.disk_mib(self.settings.disk_mib) << 20
        if disk.stat().st_size != size:
            os.truncate(disk, size)
        (self.layout.nodes_dir / self.info.name).mkdir(parents=True, exist_ok=True)
        self._log("--- power on: firmware starts ---")
        loop = await self._attach_disk(disk, size)
        self._proc = await asyncio.create_subprocess_exec(
            IP, "netns", "exec", self.info.netns,
            UNSHARE, "--mount", "--propagation", "private", "--uts", "--pid", "--fork",
            "--kill-child", "--mount-proc",
            SH, str(self.layout.bin_dir / firmware.FIRMWARE),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=self._environment(loop), start_new_session=True)
        track(self.layout.run_dir, self.info.name, self._proc.pid)
        assert self._proc.stdout is not None
        async for raw in self._proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            self._log(line)
            self._console_line(line)
        code = await self._proc.wait()
        self._log(f"--- firmware exited with status {code} ---")
        self.stage, self.detail = "halted", f"firmware exited with status {code}"
