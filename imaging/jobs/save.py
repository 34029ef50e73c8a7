"""imaging-save: stream nodes' disks back to the server, each into its own file.

Per node, concurrently: boot the imaging OS as load does, optionally stamp the
node's ``/etc/imaging-image`` (when ``root_partition`` is set), then run the
transport's save pipeline on the node into this process's own TCP receiver
(:mod:`imaging.savereceiver`), which publishes the file by atomic rename only
when the pipeline exited 0 and the stream ended cleanly; finally reset the node.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from .. import partclone, patterns, telnet
from ..disklayout import Layout, trailer
from ..errors import NodeFailure, UsageError
from ..events import Event, NodeResult
from ..inventory import Node
from ..power.base import Power
from ..power.reset import ensure_reset
from ..savereceiver import SaveReceiver
from ..units import human_size
from .imagingos import (
    Emit,
    JobState,
    NodeJobPlan,
    boot_imaging_os,
    check_programs,
    disk_layout,
    disk_size,
    run_imaging_node,
)

log = logging.getLogger(__name__)
STREAM_END = 30.0  # seconds for the stream to end once the node's pipeline exited
PROGRESS_EVERY = 0.5  # seconds between progress events, unless one more percent was done


@dataclass(frozen=True, kw_only=True)
class SavePlan(NodeJobPlan):
    """Everything a save needs, checked before any node is touched."""

    targets: dict[int, Path]  # node number -> the file to publish
    stamp: dict[int, str | None]  # node number -> shell command that stamps its OS, or None
    force: bool = False  # a target that exists is overwritten
    raw: bool = False  # every byte of the disk (imaging-save --raw), not only what its file systems use


def stamp_command(root_partition: str, mount_point: str, line: str) -> str:
    """Mount the node's root partition, append ``line`` to its ``/etc/imaging-image``, unmount.

    Every value is shell-quoted: a comment such as ``$(reboot)`` stays text."""
    part, mount = shlex.quote(root_partition), shlex.quote(mount_point)
    image_file = shlex.quote(f"{mount_point}/etc/imaging-image")
    return (f"mkdir -p {mount} && mount {part} {mount} && {{ printf '%s\\n' {shlex.quote(line)} >> {image_file};"
            f" s=$?; umount {mount}; [ $s = 0 ]; }}")


def stamp_line(host: str, radical: str, user: str, comment: str) -> str:
    """``<date> node <host> image <radical> by <user> - <comment>``, on one line."""
    text = f"{time.strftime('%Y-%m-%d@%H:%M')} node {host} image {radical} by {user} - {comment}"
    return " ".join(text.split())  # no newline can reach the file


async def save_node(node: Node, plan: SavePlan, state: JobState, power: Power, emit: Emit,
                    deadline: float) -> str:
    """The whole save of one node; returns what was done."""
    await boot_imaging_os(node, state, power, plan.boot, deadline, emit)
    target = plan.targets[node.number]
    disk = plan.disk[node.number]
    layout: Layout | None = None
    if plan.transport.records_layout(target.name):
        await check_programs(node, partclone.PROBE_PROGRAMS, plan.boot.telnet, plan.transport.name)
        layout = await disk_layout(node, disk, plan.boot.telnet)
        await check_programs(node, plan.transport.node_programs(None, layout), plan.boot.telnet, plan.transport.name)
        size: int | None = layout.disk_size
    else:
        await check_programs(node, plan.transport.node_programs(None), plan.boot.telnet, plan.transport.name)
        size = await disk_size(node, disk, plan.boot.telnet)
        free = os.statvfs(target.parent)
        if plan.raw and size is not None and free.f_bavail * free.f_frsize < size:
            raise NodeFailure(f"not enough space in {target.parent}: {human_size(free.f_bavail * free.f_frsize)}"
                              f" free, {node.hostname}'s disk is {human_size(size)}")
    stamp = plan.stamp[node.number]
    if stamp is not None:
        emit(Event(node.hostname, "stamping"))
        status = await telnet.run(node.control.ip, stamp, plan.boot.telnet)
        if status != 0:
            raise NodeFailure(f"stamping /etc/imaging-image failed (exit {status})")
    port = patterns.port(plan.pattern_port, state.locks.take_slot(plan.lock_dir, plan.pattern_size))
    parser = plan.transport.save_parser(layout) if layout is not None else None

    started = time.monotonic()
    shown = [started, -1.0]  # when and at what percent progress was last shown

    def progress(count: int) -> None:
        now = time.monotonic()
        if parser is not None:  # how far partclone got; the bytes sent are compressed and follow the data
            percent: float | None = min(99.0, parser.steps.percent()) if parser.steps is not None else None
        else:
            percent = min(99.0, 100.0 * count / size) if size else None
        if now - shown[0] < PROGRESS_EVERY and (percent is None or percent - shown[1] < 1):
            return
        shown[:] = [now, percent if percent is not None else shown[1]]
        rate = count / max(now - started, 1e-3)
        doing = f"reading {parser.steps.where()}: " if parser is not None and parser.steps is not None else ""
        emit(Event(node.hostname, "saving", percent, f"{doing}{human_size(count)} at {human_size(rate)}/s"))

    receiver = SaveReceiver(target, plan.server_ip, port, node.control.ip, progress)
    state.receivers.append(receiver)
    await receiver.start()
    try:
        emit(Event(node.hostname, "saving", 0.0))
        command = plan.transport.save_command(disk, plan.server_ip, port, layout, size, plan.raw)
        output: list[str] = []

        def on_line(line: str) -> None:
            output.append(line)
            if parser is not None:
                parser.feed(line)

        try:
            status = await telnet.run(node.control.ip, command, plan.boot.telnet, on_line)
        except NodeFailure as exc:  # the session broke (a reset, a crash): say where the save was
            if parser is None or parser.steps is None:
                raise
            raise NodeFailure(f"{exc.message} while reading {parser.steps.where()}") from None
        where = f" while reading {parser.steps.where()}" if parser is not None and parser.steps else ""
        if status != 0 or (parser is not None and parser.failure):
            said = "; ".join(line.strip() for line in output[-3:] if "__IMAGING_" not in line)
            raise NodeFailure(f"the save pipeline on the node failed (exit {status}){where}"
                              f"{': ' + said if said else ''}")
        try:
            async with asyncio.timeout(STREAM_END):
                await receiver.finished()
        except TimeoutError:
            raise NodeFailure(f"the stream did not end within {STREAM_END:g}s of the node's pipeline") from None
        if layout is not None and parser is not None and parser.steps is not None:
            layout = layout.with_used(parser.steps.used)
            receiver.append(trailer(layout))
        digest = receiver.publish()
    finally:
        await receiver.close(state.keep_partial)
    if plan.reset_after:
        emit(Event(node.hostname, "rebooting"))
        await ensure_reset(power, node, plan.boot.reset)
    holds = f", {human_size(layout.used)} of data" if layout is not None else ""
    return f"saved {target.name} ({human_size(receiver.bytes)}{holds}, sha256 {digest[:12]})"


def preflight(plan: SavePlan, state: JobState) -> None:
    """What a save checks before any node is touched, nothing changed when one fails (UsageError): no two
    nodes save to one file, each file's folder is writable, no file is overwritten unless ``plan.force``,
    and every node's next-boot folder and imaging-OS config are there and writable.  :func:`save` runs it
    unless told it ran."""
    if len(set(plan.targets.values())) != len(plan.targets):
        raise UsageError("several nodes would save to the same file; give each its own -o NAME")
    for node in plan.nodes:
        target = plan.targets[node.number]
        if not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
            raise UsageError(f"cannot write into {target.parent}; save into a writable folder")
        if target.exists() and not plan.force:
            raise UsageError(f"{target} exists; pass --force to overwrite it, or choose another -o NAME")
    state.nextboot.check(plan.nodes)


async def save(plan: SavePlan, state: JobState, emit: Emit, *, checked: bool = False) -> list[NodeResult]:
    """Save every node concurrently (its :func:`preflight` first, unless ``checked``); each result is also
    kept in ``state.results``."""
    if not checked:
        preflight(plan, state)
    deadline = asyncio.get_running_loop().time() + plan.timeout
    await state.locks.lock_nodes(plan.lock_dir, [n.hostname for n in plan.nodes], plan.lock_wait)
    async with Power(plan.power) as power:
        await asyncio.gather(*(run_imaging_node(node, lambda n: save_node(n, plan, state, power, emit, deadline),
                                                state, power, plan.timeout, plan.reset_after, emit)
                               for node in plan.nodes))
    return [state.results[n.number] for n in plan.nodes]
