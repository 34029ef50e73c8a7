"""Steps load and save share: boot a node into the imaging OS, ask it about its disk,
and the state both hold while they run (undone synchronously whatever ends them)."""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import partclone, telnet
from ..boot.nextboot import NextBoot
from ..disklayout import Layout
from ..errors import NodeFailure
from ..events import Event, NodeResult
from ..inventory import Node
from ..locks import LockSet
from ..power.base import Power, PowerOptions
from ..power.reset import ResetSettings, ensure_reset
from ..savereceiver import SaveReceiver
from ..transports.base import Transport
from ..transports.sender import SenderProcess
from .pernode import run_node

log = logging.getLogger(__name__)
Emit = Callable[[Event], None]
FAILED_RESET = 2.0  # seconds for the reset of a failed node (the command line allows 3 past the deadline)
QUESTION_TIMEOUT = 30.0  # seconds for a short command on the node (a hung telnet must not take the deadline)
DISK_SIZE = "blockdev --getsize64 {disk} 2>/dev/null || stat -L -c %s {disk}"


@dataclass(frozen=True)
class BootSettings:
    """How a node is brought into the imaging OS."""

    reset: ResetSettings
    telnet: telnet.TelnetSettings
    boot_timeout: float  # from reset to telnet


@dataclass(frozen=True, kw_only=True)
class NodeJobPlan:
    """What a load and a save both need: the nodes, how to reach them, where their disks are, the deadline
    and the locks; each job's plan adds its own part."""

    nodes: Sequence[Node]
    transport: Transport
    server_ip: str
    disk: dict[int, str]  # node number -> disk path on the node
    timeout: float
    reset_after: bool
    power: PowerOptions
    boot: BootSettings
    pattern_port: str
    pattern_size: int
    lock_dir: Path
    lock_wait: float = 0.0


@dataclass
class JobState:
    """What a load or a save holds while it runs; :meth:`cleanup` undoes it synchronously
    whatever ends the job (success, failure, Ctrl-C, SIGTERM, deadline)."""

    nextboot: NextBoot
    locks: LockSet = field(default_factory=LockSet)
    senders: list[SenderProcess] = field(default_factory=list)
    receivers: list[SaveReceiver] = field(default_factory=list)
    keep_partial: bool = False
    results: dict[int, NodeResult] = field(default_factory=dict)
    touched: set[int] = field(default_factory=set)  # nodes reset into the imaging OS by this job
    started: float = field(default_factory=time.monotonic)

    def cleanup(self) -> None:
        """Remove the next-boot links made, kill the senders still running, remove
        unpublished partial files, release the locks."""
        for link in self.nextboot.restore_all():
            log.warning("restored next-boot link %s", link)
        for sender in self.senders:
            sender.kill_now()
        for receiver in self.receivers:
            receiver.discard(self.keep_partial)
        self.locks.release()

    def unfinished(self, nodes: Sequence[Node], reason: str) -> list[NodeResult]:
        """Every node's result, those without one marked with ``reason``."""
        elapsed = time.monotonic() - self.started
        return [self.results.get(n.number) or NodeResult(n, False, reason, elapsed) for n in nodes]


async def boot_imaging_os(node: Node, state: JobState, power: Power, settings: BootSettings,
                          deadline: float, emit: Emit, *, keep_link: bool = False) -> None:
    """Point the node's next boot at the imaging OS, reset it, wait for its telnet
    (at most ``boot_timeout``), then remove the link at once: a crash from then on
    boots the disk.  With ``keep_link`` (a rescue) the link stays, and the node in the
    imaging OS through its next reboots.  NodeFailure with the reason."""
    boot_deadline = min(deadline, asyncio.get_running_loop().time() + settings.boot_timeout)
    emit(Event(node.hostname, "resetting"))
    state.nextboot.boot_imaging_os(node)
    late = f"imaging OS not up within boot_timeout {settings.boot_timeout:g}s"
    doing = "still resetting"
    try:
        async with asyncio.timeout_at(boot_deadline):  # the reset too: a controller may never say "on"
            await power.boot_from_network(node)  # a BMC's override; the link above says what that boot runs
            what = await ensure_reset(power, node, settings.reset)
            state.touched.add(node.number)
            emit(Event(node.hostname, "booting", message=what if what != "reset" else ""))
            doing = "telnet not up: timed out"
            try:
                await telnet.wait_until_up(node.control.ip, settings.telnet, boot_deadline)
            except NodeFailure as exc:
                if boot_deadline < deadline:
                    raise NodeFailure(f"{late} ({exc.message})") from None
                raise
    except TimeoutError:
        if boot_deadline < deadline:
            raise NodeFailure(f"{late} ({doing})") from None
        raise
    if keep_link:
        state.nextboot.keep(node)
    else:
        state.nextboot.boot_disk(node)


MISSING = "__IMAGING_MISSING__"
MISSING_RE = re.compile(MISSING + r' ([^\s"$]+)\s*$')  # not the echo of the loop, which says "$p"


async def _ask(node: Node, command: str, settings: telnet.TelnetSettings, late: str) -> tuple[int, list[str]]:
    """The exit status and output of a short command on the node; NodeFailure ``the imaging OS did not
    <late> within …`` when it does not answer in time (a hung telnet must not take the deadline)."""
    lines: list[str] = []
    try:
        async with asyncio.timeout(QUESTION_TIMEOUT):
            status = await telnet.run(node.control.ip, command, settings, lines.append)
    except TimeoutError:
        raise NodeFailure(f"the imaging OS did not {late} within {QUESTION_TIMEOUT:g}s") from None
    return status, lines


async def check_programs(node: Node, programs: Sequence[str], settings: telnet.TelnetSettings,
                         section: str) -> None:
    """NodeFailure naming the programs of ``programs`` that the node's imaging OS does not have (a
    pipeline would otherwise fail half-way, or wait on a netcat whose producer never started)."""
    names = " ".join(shlex.quote(p) for p in programs)
    check = f'for p in {names}; do command -v "$p" >/dev/null 2>&1 || echo "{MISSING} $p"; done'
    _, lines = await _ask(node, check, settings, "say which programs it has")
    missing = [found.group(1) for line in lines if (found := MISSING_RE.search(line))]
    if missing:
        raise NodeFailure(f"the imaging OS of {node.hostname} has no {', '.join(missing)}: install it there,"
                          f" or set its path in [{section}]")


async def disk_size(node: Node, disk: str, settings: telnet.TelnetSettings) -> int | None:
    """The size of the node's disk in bytes, asked over telnet (None if unknown)."""
    status, lines = await _ask(node, DISK_SIZE.format(disk=shlex.quote(disk)), settings, "tell its disk size")
    numbers = [int(found.group(1)) for line in lines if (found := re.fullmatch(r"\D*?(\d+)\s*", line))]
    return numbers[-1] if status == 0 and numbers else None


async def run_imaging_node(node: Node, work: Callable[[Node], Awaitable[str]], state: JobState, power: Power,
                           timeout: float, reset_after: bool, emit: Emit) -> None:
    """Run one node's part of a load or save (:func:`run_node`), keep its result in ``state.results`` and
    tell the display.  A node that failed once it was reset into the imaging OS is not left there: its
    next boot points at its disk again and it is reset (unless ``reset_after`` is false, ``-n``), and
    its result says which."""
    result = await run_node(node, work, timeout)
    state.results[node.number] = result
    if not result.ok and node.number in state.touched:
        after = await reset_failed(node, state, power) if reset_after else "left in the imaging OS (-n)"
        result = replace(result, detail=f"{result.detail}; {after}")
        state.results[node.number] = result
    emit(Event(node.hostname, "done" if result.ok else "failed", 100.0 if result.ok else None, result.detail))


async def reset_failed(node: Node, state: JobState, power: Power) -> str:
    """Point a failed node's next boot at its disk and reset it (a plain reset by its power controller, within
    FAILED_RESET seconds); return what was done, for its result."""
    try:
        state.nextboot.boot_disk(node)
        async with asyncio.timeout(FAILED_RESET):
            if await power.status(node) == "off":
                return "it is off"
            await power.request(node, "reset")
    except TimeoutError:
        return f"could not reset it to boot its disk (no answer within {FAILED_RESET:g}s)"
    except NodeFailure as exc:
        return f"could not reset it to boot its disk ({exc.message})"
    log.info("%s: failed, reset to boot its disk", node.hostname)
    return "reset to boot its disk"


async def disk_layout(node: Node, disk: str, settings: telnet.TelnetSettings) -> Layout:
    """What the node's disk holds (its partition table and file systems, read by ``sfdisk`` and ``blkid``
    on the node); NodeFailure when it cannot be read or a partition to save has no device."""
    _, answer = await _ask(node, partclone.table_probe(disk), settings, f"tell the partition table of {disk}")
    table, dump, size = partclone.split_table_probe(answer)
    if size is None or size <= 0:
        raise NodeFailure(f"the imaging OS cannot tell the size of {disk}: is it the node's disk?"
                          " (set [nodes] hard_drive)")
    try:
        places = partclone.places_of(table, disk, size)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise NodeFailure(f"cannot read the partition table of {disk} (sfdisk --json said something else: {exc});"
                          " save with --raw") from None
    _, answer = await _ask(node, partclone.fs_probe(disk, places), settings, f"tell the file systems of {disk}")
    filesystems, devices = partclone.split_fs_probe(answer)
    try:
        layout = partclone.layout_from(table, dump, size, disk, filesystems)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise NodeFailure(f"cannot read the partition table of {disk} ({exc}); save with --raw") from None
    for part in layout.partitions:
        if part.saved and part.number and part.number not in devices:
            raise NodeFailure(f"{node.hostname}'s imaging OS shows no device {part.device} for {part.describe()}:"
                              " partclone reads a partition from its device; save with --raw")
    log.info("%s: disk %s: %s table, %s", node.hostname, disk, layout.label,
             ", ".join(f"{p.number}:{p.fs or '-'}:{p.method}" for p in layout.partitions))
    return layout
