"""A node that is a qemu virtual machine, powered through QMP.

The machine's CMC speaks the same HTTP protocol as an emulated node's
(:mod:`imaging_testbed.cmc`); the verbs become qemu actions:

* ``on``: start qemu (the machine's power is its qemu process);
* ``reset``: QMP ``system_reset``: firmware, PXE, pxelinux, all over again;
* ``off``: QMP ``quit`` (a kill if qemu does not answer).

qemu runs in the server namespace (where the controller runs), its NIC a
tap on the control LAN bridge with the inventory MAC, booting by PXE first
(SeaBIOS: iPXE → pxelinux → the imaging OS, or the local disk; OVMF: its
PXE → GRUB's network image → the same, :mod:`.grub`), its disk a raw file
(``cache=unsafe``: the host sees the guest's writes at once).  The serial
console is appended to the node's console log by qemu itself, so it keeps
being logged if the controller dies; the controller follows the file for
the ``@state`` lines the guests' inits print.  If qemu exits by itself the
machine is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..faults import Faults
from ..layout import Layout, NodeInfo
from ..node import NodeSettings, PoweredNode
from ..procs import track, untrack
from ..programs import QEMU
from .grub import OVMF, UEFI_MEMORY_MIB

log = logging.getLogger(__name__)

QMP_TIMEOUT = 3.0  # seconds for one QMP command, connection included
QUIT_WAIT = 5.0  # seconds for qemu to exit after "quit" before it is killed
FOLLOW_INTERVAL = 0.1  # seconds between two reads of the console log
BIOS_MEMORY_MIB = 128


@dataclass(frozen=True)
class VmSettings:
    """How the testbed's virtual machines run."""

    accel: str = "tcg"  # tcg | kvm
    firmware: str = "bios"  # bios (SeaBIOS, qemu's own) | uefi (OVMF)
    qemu: str = QEMU

    @property
    def memory_mib(self) -> int:
        """The guest's memory: GRUB under OVMF needs more than syslinux under SeaBIOS."""
        return UEFI_MEMORY_MIB if self.firmware == "uefi" else BIOS_MEMORY_MIB


class QmpError(Exception):
    """A QMP command could not be carried out."""


async def qmp(socket: Path, command: str, timeout: float = QMP_TIMEOUT,
              proc: asyncio.subprocess.Process | None = None) -> object:
    """Run one QMP ``command`` on the qemu listening on ``socket``; its return value.

    Connects (retrying while qemu is still creating its socket, unless
    ``proc``, that qemu, has exited), negotiates, runs the command and
    disconnects, all within ``timeout`` seconds.  Raises QmpError when that fails.
    """
    from qemu.qmp import QMPClient, QMPError

    client = QMPClient(socket.stem)
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await client.connect(str(socket))
                    break
                except (QMPError, OSError) as exc:
                    if proc is not None and proc.returncode is not None:
                        raise QmpError(f"{command}: qemu has exited (status {proc.returncode})") from exc
                    await asyncio.sleep(0.05)
            try:
                return await client.execute(command)
            finally:
                with contextlib.suppress(QMPError, OSError, EOFError):
                    await client.disconnect()
    except TimeoutError:
        raise QmpError(f"{command}: qemu did not answer on {socket} within {timeout:g} s") from None
    except (QMPError, OSError, EOFError) as exc:
        raise QmpError(f"{command}: {exc}") from None


def _option_value(path: Path) -> str:
    """``path`` as a qemu option value (a comma is doubled, else it separates options)."""
    return str(path).replace(",", ",,")


def qemu_argv(layout: Layout, info: NodeInfo, vm: VmSettings) -> list[str]:
    """The qemu command line of ``info``'s machine."""
    accel = ["-accel", "kvm", "-cpu", "host"] if vm.accel == "kvm" else ["-accel", "tcg,tb-size=32"]
    firmware = ["-bios", str(OVMF)] if vm.firmware == "uefi" else []  # else qemu's SeaBIOS
    return [
        vm.qemu, "-name", f"{info.name},process=imaging-{info.name}",
        "-nodefaults", "-no-user-config", "-display", "none", *accel, *firmware,
        "-machine", "pc", "-m", str(vm.memory_mib), "-smp", "1",
        "-chardev", f"file,id=console,path={_option_value(layout.console_log(info))},append=on",
        "-serial", "chardev:console",
        "-netdev", f"tap,id=net0,ifname={info.veth},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=net0,mac={info.control_mac},bootindex=1",
        "-drive", f"file={_option_value(layout.disk_path(info))},if=none,id=disk0,format=raw,cache=unsafe",
        "-device", "virtio-blk-pci,drive=disk0,bootindex=2",
        "-device", "virtio-rng-pci",
        "-qmp", f"unix:{_option_value(layout.qmp_socket(info))},server=on,wait=off",
    ]


class VirtualMachine(PoweredNode):
    """One qemu machine: its process, its QMP socket and its console."""

    card = "QMP-driven CMC"

    def __init__(self, info: NodeInfo, layout: Layout, settings: NodeSettings, faults: Faults,
                 vm: VmSettings) -> None:
        super().__init__(info, layout, settings, faults)
        self.vm = vm
        self._proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None

    def _argv(self) -> list[str]:
        """The qemu command line (:func:`qemu_argv`)."""
        return qemu_argv(self.layout, self.info, self.vm)

    async def _power_up(self) -> None:
        disk = self.layout.disk_path(self.info)
        size = self.faults.disk_mib(self.settings.disk_mib) << 20
        if disk.stat().st_size != size:  # a disk keeps its size (a small-disk fault applies from power-on)
            os.truncate(disk, size)
        socket = self.layout.qmp_socket(self.info)
        socket.unlink(missing_ok=True)
        console = self.layout.console_log(self.info)
        self._log(f"--- power on: qemu starts ({self.vm.accel}) ---")
        offset = console.stat().st_size
        with open(console, "ab") as out:  # qemu's own messages go to the console log too
            proc = await asyncio.create_subprocess_exec(
                *self._argv(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        self._proc = proc
        track(self.layout.run_dir, self.info.name, proc.pid)
        self._watch = asyncio.create_task(self._watch_machine(proc, console, offset),
                                          name=f"watch-{self.info.name}")
        try:  # qemu answering QMP: it parsed its options and opened its tap and disk
            await qmp(socket, "query-status", proc=proc)
        except QmpError as exc:
            await self._power_down()
            raise QmpError(f"qemu did not start ({exc}); see {console}") from None

    async def _power_down(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.returncode is None:
                try:
                    await qmp(self.layout.qmp_socket(self.info), "quit", proc=proc)
                    async with asyncio.timeout(QUIT_WAIT):
                        await proc.wait()
                except (QmpError, TimeoutError) as exc:
                    log.warning("%s: %s; killing qemu", self.info.name, exc)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
        except BaseException:  # cut short (the controller stops): the machine must not outlive its power
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise
        self._proc = None
        if self._watch is not None:
            await self._watch
            self._watch = None
        untrack(self.layout.run_dir, self.info.name)
        self._log("--- power off ---")

    async def _restart(self) -> None:
        self._booting()  # before the reset: what the old boot prints from now on is not the new boot's
        try:
            await qmp(self.layout.qmp_socket(self.info), "system_reset", proc=self._proc)
        except QmpError as exc:
            log.warning("%s: reset: %s; power-cycling qemu", self.info.name, exc)
            await super()._restart()
            return
        self._log("--- reset ---")

    async def _watch_machine(self, proc: asyncio.subprocess.Process, console: Path, offset: int) -> None:
        """Follow the console until qemu exits; a qemu that exits by itself is a machine off."""
        follow = asyncio.create_task(self._follow(console, offset))
        code = await proc.wait()
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
        if self.powered and self._proc is proc:  # not a power-off: qemu died, or the guest powered off
            self._proc = None
            self.powered = False
            self.stage, self.detail = "off", f"qemu exited with status {code}"
            untrack(self.layout.run_dir, self.info.name)
            self._log(f"--- qemu exited with status {code} ---")
            log.warning("%s: qemu exited with status %s", self.info.name, code)

    async def _follow(self, console: Path, offset: int) -> None:
        """Read what the machine prints to its console from ``offset`` on, line by line."""
        pending = b""
        try:
            with open(console, "rb") as handle:
                handle.seek(offset)
                while True:
                    chunk = handle.read()
                    if not chunk:
                        await asyncio.sleep(FOLLOW_INTERVAL)
                        continue
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        self._console_line(line.decode(errors="replace").strip("\r"))
        except OSError as exc:  # the log removed or unreadable: the stage stops moving, and the log says why
            log.error("%s: cannot follow the console in %s: %s", self.info.name, console, exc)
