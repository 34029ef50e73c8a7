"""The VM's power state machine against a real qemu that runs no guest
(``-machine none``: milliseconds of CPU, no root, no network): each CMC verb
must become the QMP command it stands for, and a qemu that dies by itself, or
a verb cut short, must never leave a machine running behind the controller's
back."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import pytest

from imaging_testbed.faults import Faults
from imaging_testbed.layout import Layout
from imaging_testbed.node import NodeSettings
from imaging_testbed.procs import tracked
from imaging_testbed.vm.machine import QEMU, VirtualMachine, VmSettings, qmp

pytestmark = pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"{QEMU} is not installed (make vm-packages)")


class BareMachine(VirtualMachine):
    """A VM whose qemu has no guest, no disk and no NIC: only its power and QMP."""

    extra: tuple[str, ...] = ()

    def _argv(self) -> list[str]:
        return [QEMU, "-machine", "none", "-nodefaults", "-no-user-config", "-display", "none",
                "-qmp", f"unix:{self.layout.qmp_socket(self.info)},server=on,wait=off", *self.extra]


@pytest.fixture
def machine(tmp_path: Path) -> BareMachine:
    layout = Layout(tmp_path, 0, 1)
    for folder in (layout.run_dir, layout.logs_dir, layout.disks_dir):
        folder.mkdir()
    layout.disk_path(layout.node(1)).write_bytes(b"")
    return BareMachine(layout.node(1), layout, NodeSettings(disk_mib=1), Faults(), VmSettings())


def pid_of(machine: BareMachine) -> int | None:
    """The PID tracked for the machine, if any."""
    found = [p.pid for p in tracked(machine.layout.run_dir) if p.name == machine.info.name]
    return found[0] if found else None


def console(machine: BareMachine) -> str:
    return machine.layout.console_log(machine.info).read_text()


async def test_on_reset_off_are_qmp_commands(machine: BareMachine) -> None:
    await machine.power_on()
    pid = pid_of(machine)
    assert machine.powered and pid is not None
    answer = await qmp(machine.layout.qmp_socket(machine.info), "query-status")
    assert isinstance(answer, dict) and answer["status"] == "running"
    await machine.reset()
    assert pid_of(machine) == pid, "a reset is system_reset, not a new qemu"
    assert "--- reset ---" in console(machine)
    assert machine.stage == "waiting"
    proc = machine._proc
    assert proc is not None
    await machine.power_off()
    assert proc.returncode == 0, "off is QMP quit: qemu exits by itself, not killed"
    assert not machine.powered and machine.stage == "off" and pid_of(machine) is None
    await machine.shutdown()


async def test_qemu_dying_by_itself_is_a_machine_off(machine: BareMachine) -> None:
    await machine.power_on()
    pid = pid_of(machine)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not machine.powered:
            break
        await asyncio.sleep(0.02)
    assert not machine.powered and machine.stage == "off"
    assert machine.detail == "qemu exited with status -9"
    assert pid_of(machine) is None
    await machine.power_on()  # and it can be powered on again
    assert machine.powered and pid_of(machine) not in (None, pid)
    await machine.shutdown()
    assert pid_of(machine) is None


async def test_concurrent_verbs_leave_one_consistent_machine(machine: BareMachine) -> None:
    await machine.power_on()
    await asyncio.gather(machine.reset(), machine.power_off(), machine.power_on(), machine.reset(),
                         machine.power_off(), machine.power_on())
    assert machine.powered and machine._proc is not None and machine._proc.returncode is None
    await machine.shutdown()
    assert pid_of(machine) is None and not machine.powered


async def test_a_verb_cut_short_leaves_no_qemu(machine: BareMachine) -> None:
    await machine.power_on()
    proc = machine._proc
    assert proc is not None
    off = asyncio.create_task(machine.power_off())
    await asyncio.sleep(0)  # off has started: cancel it mid-way, as a stopping CMC server does
    off.cancel()
    await asyncio.gather(off, return_exceptions=True)
    await machine.shutdown()
    assert proc.returncode is not None and pid_of(machine) is None


async def test_a_qemu_that_cannot_start_is_reported(machine: BareMachine) -> None:
    machine.extra = ("-no-such-option",)
    await machine.power_on()
    assert not machine.powered and machine.stage == "failed"
    assert "qemu did not start" in machine.detail and str(machine.layout.console_log(machine.info)) in machine.detail
    assert "-no-such-option" in console(machine)
    assert pid_of(machine) is None
