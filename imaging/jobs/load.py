"""imaging-load: put one image on many nodes with one multicast sender per bandwidth.

Per node, concurrently, each under the command's deadline: point its next-boot
link at the imaging OS, ``ensure_reset``, wait for telnet, remove the link at
once (a crash from then on boots the disk), check the disk is big enough, then
wait for the session's sender and run the receiver, its output parsed into
progress events and kept verbatim in a per-node log; finally reset the node so
it boots its new disk.

Nodes are grouped by bandwidth, one multicast session per group, each on a
group and port that no other running load or save on this server uses.  A
session's sender starts once each of its nodes is ready or has failed, and is
stopped and reaped when they are all done.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections import defaultdict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import patterns, telnet
from ..disklayout import Layout, read_layout
from ..errors import ImagingError, NodeFailure, UsageError
from ..events import Event, NodeResult
from ..images import Image
from ..inventory import Node
from ..power.base import Power
from ..power.reset import ensure_reset
from ..transports.base import Channel, Progress, ProgressParser, SendPlan
from ..transports.sender import SenderProcess
from ..units import human_size
from .imagingos import Emit, JobState, NodeJobPlan, boot_imaging_os, check_programs, disk_size, run_imaging_node

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class LoadPlan(NodeJobPlan):
    """Everything a load needs, checked before any node is touched (the sender does not wait for a node
    beyond its ``boot.boot_timeout``)."""

    image: Image
    bandwidth: dict[int, int]  # node number -> Mibps
    stall_timeout: float  # seconds a receiver may make no progress before its node fails
    pattern_multicast: str
    log_dir: Path  # this run's folder of transport logs


class Session:
    """One multicast session: its nodes, channel, sender, and the rendezvous between them."""

    def __init__(self, plan: LoadPlan, state: JobState, nodes: Sequence[Node], bandwidth: int,
                 channel: Channel, emit: Emit, power: Power, needed: int | None,
                 layout: Layout | None = None) -> None:
        self.plan, self.state, self.nodes, self.bandwidth = plan, state, nodes, bandwidth
        self.channel, self.emit, self.power = channel, emit, power
        self.ready: set[int] = set()
        self.settled = 0
        self.all_settled = asyncio.Event()
        self.sender: SenderProcess | None = None
        self.sender_error = "no sender: every other node of the session failed first"
        self.sender_up = asyncio.Event()
        self.finished = 0
        self.needed = needed  # what the image fills on a disk (None: unknown), checked on each node
        self.layout = layout  # what a file-system-aware image holds (None: a raw image)

    def _settle(self, ready: Node | None) -> None:
        if ready is not None:
            self.ready.add(ready.number)
        self.settled += 1
        if self.settled == len(self.nodes):
            self.all_settled.set()

    def _phase(self, node: Node, phase: str, percent: float | None = None, message: str = "") -> None:
        self.emit(Event(node.hostname, phase, percent, message))

    async def _boot(self, node: Node, deadline: float) -> None:
        plan = self.plan
        await boot_imaging_os(node, self.state, self.power, plan.boot, deadline, self.emit)
        await check_programs(node, plan.transport.node_programs(plan.image.path, self.layout), plan.boot.telnet,
                             plan.transport.name)
        if self.needed is not None:
            size = await disk_size(node, plan.disk[node.number], plan.boot.telnet)
            if size is not None and size < self.needed:
                raise NodeFailure(f"disk too small: {node.hostname} has {human_size(size)},"
                                  f" the image needs {human_size(self.needed)}")

    async def _receive(self, node: Node) -> None:
        plan = self.plan
        await self.sender_up.wait()
        if self.sender is None or self.sender.process is None:
            raise NodeFailure(self.sender_error)
        self._phase(node, "receiving", 0.0)
        parser = plan.transport.parser(plan.image.size, self.needed, self.layout)
        command = plan.transport.receiver_command(self.channel, plan.server_ip, node.control.ip,
                                                  plan.disk[node.number], plan.image.path, self.layout)
        log_path = plan.log_dir / f"{node.hostname}.log"
        last = -1.0
        with open(log_path, "a", encoding="utf-8") as output:
            output.write(f"$ {command}\n")

            def show(progress: Progress | None) -> None:
                nonlocal last
                if progress is not None and progress.percent is not None and progress.percent - last >= 1:
                    last = progress.percent
                    self._phase(node, "receiving", progress.percent, progress.message)

            def on_line(line: str) -> None:
                output.write(line + "\n")
                show(parser.feed(line))

            try:
                receiving = telnet.run(node.control.ip, command, plan.boot.telnet, on_line,
                                       lambda text: show(parser.partial(text)))
                status = await self._watching(receiving, parser, log_path)
            except NodeFailure as exc:  # the session broke, or the receiver stalled: say where the restore was
                if parser.steps is None or parser.steps.current is None:
                    raise
                message, sep, log_note = exc.message.rpartition(" (log ")  # the log stays last
                if not sep:
                    message, log_note = exc.message, ""
                raise NodeFailure(f"{message} while writing {parser.steps.where()}{sep}{log_note}") from None
            output.write(f"exit status {status}\n")
        where = f" while writing {parser.steps.where()}" if parser.steps is not None else ""
        if parser.failure:
            raise NodeFailure(f"{parser.failure} (log {log_path})")
        if status > 128:
            raise NodeFailure(f"receiver killed by signal {status - 128}{where} (log {log_path})")
        if status != 0:
            raise NodeFailure(f"receiver exited {status}{where} (log {log_path})")

    async def _watching(self, receiving: Coroutine[Any, Any, int], parser: ProgressParser, log_path: Path) -> int:
        """Await the receiver while it makes progress: fail at once if the sender dies with an error,
        and when the receiver's output shows no progress for ``stall_timeout`` seconds (while the sender
        runs, or after it ended: a receiver may decompress and write long after the last byte came)."""
        assert self.sender is not None and self.sender.process is not None
        receiver = asyncio.ensure_future(receiving)
        sender = asyncio.ensure_future(self.sender.process.wait())
        stall = asyncio.ensure_future(stalled(parser, self.plan.stall_timeout))
        try:
            waiting = {receiver, sender, stall}
            while receiver not in (done := (await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED))[0]):
                if sender in done:
                    if sender.result() != 0:
                        raise NodeFailure(f"the sender exited {sender.result()} (log {self.sender.log_path})")
                    waiting.discard(sender)
                if stall in done:
                    idle = f"made no progress for {self.plan.stall_timeout:g}s ([nodes] stall_timeout)"
                    if sender.done():
                        raise NodeFailure(f"dropped by the sender: it finished, and this node's receiver {idle}"
                                          f" (log {self.sender.log_path})")
                    raise NodeFailure(f"the receiver {idle} (log {log_path})")
            return await receiver
        finally:
            for task in (receiver, sender, stall):
                task.cancel()

    async def node_flow(self, node: Node, deadline: float) -> str:
        """The whole life of one node in this load; returns what was done."""
        try:
            await self._boot(node, deadline)
        except BaseException:
            self._settle(None)
            raise
        self._settle(node)
        self._phase(node, "ready", message="waiting for the sender")
        try:
            await self._receive(node)
        finally:
            self.finished += 1
            if self.finished == len(self.ready) and self.sender is not None:
                await self.sender.stop()
        if self.plan.reset_after:
            self._phase(node, "rebooting")
            await ensure_reset(self.power, node, self.plan.boot.reset)
        return f"loaded {self.plan.image.name}" + ("" if self.plan.reset_after else " (left in the imaging OS)")

    async def run_sender(self, deadline: float) -> None:
        """Start the sender once every node is ready or failed."""
        try:
            await self.all_settled.wait()
            if not self.ready:
                return
            remaining = deadline - asyncio.get_running_loop().time()
            plan = SendPlan(self.plan.image.path, self.channel, self.plan.server_ip, self.bandwidth,
                            len(self.ready), max(1.0, min(10.0, remaining / 4)))
            sender = SenderProcess(self.plan.transport.sender_argv(plan),
                                   self.plan.log_dir / f"sender-{self.channel.port}.log")
            self.state.senders.append(sender)
            try:
                await sender.start()
            except ImagingError as exc:
                self.sender_error = exc.message
                return
            self.sender = sender
        finally:
            self.sender_up.set()


def preflight(plan: LoadPlan, state: JobState) -> None:
    """What a load checks before any node is touched, nothing changed when one fails: the image is whole
    and of its format (ImageError), the sender program is installed, every node's next-boot folder and
    imaging-OS config are there and writable, this run's folder of transport logs can be made
    (UsageError).  :func:`load` runs it unless told it ran."""
    plan.image.check_content()
    if shutil.which(plan.transport.sender_program) is None:
        raise UsageError(f"the {plan.transport.name} sender {plan.transport.sender_program!r} is not installed;"
                         f" install it or set its path in [{plan.transport.name}]")
    state.nextboot.check(plan.nodes)
    prepare(plan)


def prepare(plan: LoadPlan) -> None:
    """What a load makes before any node is touched: this run's folder of transport logs
    (UsageError, nothing changed, when it cannot be made)."""
    try:
        plan.log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the transport log folder {plan.log_dir} ({exc.strerror});"
                         " set [logging] transport_logs to a writable folder") from None


async def stalled(parser: ProgressParser, stall_timeout: float) -> None:
    """Return once ``parser.work`` has not grown for ``stall_timeout`` seconds."""
    loop = asyncio.get_running_loop()
    seen, since = parser.work, loop.time()
    while True:
        await asyncio.sleep(min(1.0, stall_timeout / 4))
        if parser.work != seen:
            seen, since = parser.work, loop.time()
        elif loop.time() - since >= stall_timeout:
            return


async def load(plan: LoadPlan, state: JobState, emit: Emit, *, checked: bool = False) -> list[NodeResult]:
    """Run the load (its :func:`preflight` first, unless ``checked``); every node's result is also kept in
    ``state.results`` as it comes."""
    if not checked:
        preflight(plan, state)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + plan.timeout
    await state.locks.lock_nodes(plan.lock_dir, [n.hostname for n in plan.nodes], plan.lock_wait)
    prepare(plan)
    # read once per command (the zstd frame header, imagedump…), checked on each node's disk
    layout = None
    if plan.transport.records_layout(plan.image.name):
        layout = await asyncio.to_thread(read_layout, plan.image.path)
        needed: int | None = layout.needed
    else:
        needed = await plan.transport.disk_bytes_needed(plan.image.path)
    groups: dict[int, list[Node]] = defaultdict(list)
    for node in plan.nodes:
        groups[plan.bandwidth[node.number]].append(node)
    async with Power(plan.power) as power:
        sessions = []
        for bandwidth, nodes in sorted(groups.items()):
            number = state.locks.take_slot(plan.lock_dir, plan.pattern_size)
            channel = Channel(patterns.group(plan.pattern_multicast, number), patterns.port(plan.pattern_port, number))
            log.info("session %d: %s on %s:%d at %d Mibps", number, ",".join(n.hostname for n in nodes),
                     channel.group, channel.port, bandwidth)
            sessions.append(Session(plan, state, nodes, bandwidth, channel, emit, power, needed, layout))

        async def one(session: Session, node: Node) -> None:
            await run_imaging_node(node, lambda n: session.node_flow(n, deadline), state, power, plan.timeout,
                                   plan.reset_after, emit)

        senders = [asyncio.create_task(s.run_sender(deadline)) for s in sessions]
        try:
            await asyncio.gather(*(one(s, n) for s in sessions for n in s.nodes))
        finally:
            for task in senders:
                task.cancel()
            for session in sessions:
                if session.sender is not None:
                    await session.sender.stop()
    return [state.results[n.number] for n in plan.nodes]
