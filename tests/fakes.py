"""In-process stand-ins for what the load and save jobs drive, for tests that run in milliseconds.

A :class:`FakeTestbed` plays the hardware at the interfaces the jobs call:

* the management cards (``CmcClient`` as the jobs import it), with a power
  state machine; a reset or power-on boots the node into what its real
  next-boot link (a :class:`~imaging.pxelinux.NextBoot` folder) says *at that
  moment*: the imaging OS when the link points at the imaging-OS file, else
  the disk;
* the control interface's port probe that ``ensure_reset`` uses (the real
  ``ensure_reset`` runs on top of the fake cards);
* the node's telnet (``imaging.telnet.run`` and ``wait_until_up``): refused
  unless the node booted the imaging OS; it answers ``true``, the question of
  which programs are there, the disk-size question, the stamp, the transport's
  receiver command (served by the fake sender on the same port) and the save
  pipeline, which streams the node's disk over a real TCP connection from the
  node's control address to the job's real save receiver; any other command
  fails the node with an AssertionError naming it;
* the multicast sender (``SenderProcess`` as the load imports it), which, like
  ``udp-sender``, waits for ``--min-receivers`` receivers (at most
  ``--max-wait`` seconds after the first), then sends ``--file`` to those that
  joined; a receiver that joins later is never served.

Everything that happens is appended to :attr:`FakeTestbed.timeline` in order,
so tests can check the order of boots, link states, sender starts and phases.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import pytest

from imaging import telnet
from imaging.cmc import CmcError, ResetSettings
from imaging.errors import ImagingError, NodeFailure
from imaging.events import Event
from imaging.inventory import Interface, Node
from imaging.jobs.imagingos import BootSettings, JobState
from imaging.pxelinux import NextBoot, config_name

Entry = tuple[str, ...]
IMAGING_OS = "imaging"
DISK = "disk"
TRANSFER_STEPS = 4  # a transfer takes that many steps of the loop, a few ms each
PXE_FILE = "pxefrisbee"  # the imaging-OS file in the pxelinux folder
# a node must go silent within 0.1 s of a reset; telnet is retried every ~10 ms for 2 s
FAST_BOOT = BootSettings(ResetSettings(idle_after_reset=0.1, poll=0.01),
                         telnet.TelnetSettings(connect_timeout=0.5, backoff=0.01), boot_timeout=2.0)


def make_node(number: int) -> Node:
    """Node ``fitNN``: control 127.0.1.N (a loopback address the save stream can come from), CMC 127.0.2.N."""
    return Node(number, Interface(f"reboot{number:02d}", f"127.0.2.{number}", f"02:00:00:02:00:{number:02x}"),
                Interface(f"fit{number:02d}", f"127.0.1.{number}", f"02:00:00:01:00:{number:02x}"))


@dataclass
class FakeNode:
    """One node: its power, what it booted, its disk, and the faults it has."""

    node: Node
    disk: bytearray
    disk_path: str = "/dev/sda"
    disk_size: int | None = None  # what the imaging OS says the disk holds (default: len(disk))
    boot_delay: float = 0.02  # seconds from power-on/reset until its services answer
    power: str = "on"
    booted: str | None = DISK  # what it runs now (None: off)
    up_at: float = 0.0  # loop time its services answer from
    # faults
    cmc_down: bool = False  # the card does not answer
    reset_ignored: bool = False  # the card says ok to reset and does nothing
    never_boots: bool = False  # the imaging OS never comes up
    receiver_exit: int = 0  # the receiver's exit status (137: killed mid-transfer)
    save_exit: int = 0  # the save pipeline's exit status
    save_unclean: bool = False  # the stream is cut by a TCP reset half-way
    missing: tuple[str, ...] = ()  # programs its imaging OS lacks
    write_tail: float = 0.0  # seconds it goes on writing (decompressing) after the last byte came
    hangs: bool = False  # its receiver stops making progress half-way (a hung disk) and never ends
    # what happened to it
    boots: list[str] = field(default_factory=list)
    bitrate: int | None = None  # --max-bitrate of the sender that wrote its disk

    @property
    def host(self) -> str:
        """The node's hostname."""
        return self.node.hostname

    def answering(self, now: float) -> bool:
        """Does its control interface answer (ssh of the disk OS, or telnet of the imaging OS)?"""
        if self.power != "on" or self.booted is None or now < self.up_at:
            return False
        return not (self.booted == IMAGING_OS and self.never_boots)


class FakeProcess:
    """What the load reads of a sender's process: pid, returncode, wait()."""

    pid = 4242

    def __init__(self) -> None:
        self.returncode: int | None = None
        self._exited = asyncio.Event()

    def exit(self, status: int) -> None:
        """The process ends with ``status`` (the first exit wins)."""
        if self.returncode is None:
            self.returncode = status
            self._exited.set()

    async def wait(self) -> int:
        """Until the process has exited; its status."""
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


class FakeSender:
    """A multicast sender with ``udp-sender``'s rendezvous, built from the argv the load gives it."""

    def __init__(self, bed: FakeTestbed, argv: list[str], log_path: Path) -> None:
        self.bed, self.argv, self.log_path = bed, argv, log_path
        self.process: FakeProcess | None = None
        self.joined: list[FakeNode] = []
        self.served = 0
        self._transfer = asyncio.Event()

    def option(self, name: str) -> str:
        """The value given after ``name`` on the command line."""
        return self.argv[self.argv.index(name) + 1]

    @property
    def port(self) -> int:
        """``--portbase``."""
        return int(self.option("--portbase"))

    @property
    def bitrate(self) -> int:
        """``--max-bitrate``, bits per second."""
        return int(self.option("--max-bitrate"))

    @property
    def min_receivers(self) -> int:
        """``--min-receivers``."""
        return int(self.option("--min-receivers"))

    @property
    def pid(self) -> int | None:
        """The process id, once started."""
        return self.process.pid if self.process else None

    async def start(self) -> None:
        """Start, or fail as a missing program does."""
        if self.bed.sender_missing:
            raise ImagingError(f"cannot start {self.argv[0]}: No such file or directory; install it or set"
                               " its path in the config")
        await asyncio.sleep(0)
        self.process = FakeProcess()
        self.bed.senders.append(self)
        self.bed.note("sender-start", str(self.port))

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process is not None and self.process.returncode is None

    async def join(self, node: FakeNode) -> None:
        """A receiver joins; returns when the transfer begins, never for one that came after it began."""
        if self._transfer.is_set():
            self.bed.note("late-join", node.host)
            await asyncio.Event().wait()  # udp-receiver keeps waiting for a sender
        self.joined.append(node)
        if len(self.joined) >= self.min_receivers:
            self._transfer.set()
        elif len(self.joined) == 1:
            asyncio.get_running_loop().call_later(float(self.option("--max-wait")), self._transfer.set)
        await self._transfer.wait()

    def done_with(self, node: FakeNode) -> None:
        """One receiver of the transfer is done (written or dead); the sender exits 0 after the last."""
        self.served += 1
        if self.served == len(self.joined) and self.process is not None:
            self.process.exit(0)

    async def stop(self, grace: float = 2.0) -> int | None:
        """Terminate if still running; reaped at once."""
        if self.process is None:
            return None
        self.process.exit(-15)
        self.bed.note("sender-stop", str(self.port))
        return self.process.returncode

    def kill_now(self) -> None:
        """Synchronous kill, as the job's cleanup does."""
        if self.process is not None:
            self.process.exit(-9)


class FakeCmc:
    """The jobs' ``CmcClient``, answering for the cards of the bed's nodes."""

    def __init__(self, bed: FakeTestbed, timeout: float) -> None:
        self.bed, self.timeout = bed, timeout

    async def __aenter__(self) -> FakeCmc:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        return None

    async def request(self, node: Node, verb: str) -> str:
        """Send one verb; the answer, or CmcError when the card is down."""
        await asyncio.sleep(0)
        fake = self.bed.nodes[node.number]
        if fake.cmc_down:
            self.bed.note("cmc", fake.host, verb, "no answer")
            raise CmcError(f"unreachable (timeout {self.timeout:g}s)")
        if verb == "status":
            return fake.power
        self.bed.note("cmc", fake.host, verb)
        if verb == "on":
            if fake.power == "off":
                fake.power = "on"
                self.bed.boot(fake)
        elif verb == "off":
            fake.power, fake.booted = "off", None
        elif verb == "reset":
            if fake.power == "on" and not fake.reset_ignored:
                self.bed.boot(fake)
        else:
            raise AssertionError(f"unexpected CMC verb {verb!r}")
        return "ok"

    async def status(self, node: Node) -> str:
        """``on`` or ``off``."""
        return await self.request(node, "status")


class FakeTestbed:
    """The nodes, cards, consoles and senders a job sees; the timeline of what happened."""

    def __init__(self, config_dir: Path, imaging_os: str, nodes: list[FakeNode]) -> None:
        self.config_dir, self.imaging_os = config_dir, imaging_os
        self.nodes = {fake.node.number: fake for fake in nodes}
        self._by_ip = {fake.node.control.ip: fake for fake in nodes}
        self.timeline: list[Entry] = []
        self.events: list[Event] = []
        self.senders: list[FakeSender] = []
        self.sender_missing = False

    # -- recording ------------------------------------------------------------------------------------
    def note(self, *entry: str) -> None:
        """Append one happening to the timeline."""
        self.timeline.append(entry)

    def emit(self, event: Event) -> None:
        """The job's ``emit``: events are kept, and their phases join the timeline."""
        self.events.append(event)
        self.note("phase", event.node, event.phase)

    def index(self, *entry: str) -> int:
        """Where ``entry`` first happened in the timeline (ValueError if it never did)."""
        return self.timeline.index(entry)

    def of(self, host: str) -> list[Entry]:
        """The timeline of one node (phases, card verbs, boots, commands), without the host."""
        return [(entry[0], *entry[2:]) for entry in self.timeline if entry[1:2] == (host,)]

    # -- the hardware ---------------------------------------------------------------------------------
    def link(self, fake: FakeNode) -> Path:
        """The node's per-MAC next-boot file."""
        return self.config_dir / config_name(fake.node.control.mac)

    def boot(self, fake: FakeNode) -> None:
        """Power-on or reset: the node fetches its next-boot file now, and its services answer soon."""
        link = self.link(fake)
        imaging = link.exists() and link.resolve() == (self.config_dir / self.imaging_os).resolve()
        fake.booted = IMAGING_OS if imaging else DISK
        fake.up_at = asyncio.get_running_loop().time() + fake.boot_delay
        fake.boots.append(fake.booted)
        self.note("boot", fake.host, fake.booted)

    async def any_port_answers(self, host: str, ports: object, timeout: float) -> bool:
        """``imaging.cmc.any_port_answers``: does the node's control interface answer?"""
        await asyncio.sleep(0)
        return self._by_ip[host].answering(asyncio.get_running_loop().time())

    def cmc_client(self, timeout: float, port: int = 80) -> FakeCmc:
        """``CmcClient(timeout, port)`` as the jobs call it."""
        return FakeCmc(self, timeout)

    def sender_process(self, argv: list[str], log_path: Path) -> FakeSender:
        """``SenderProcess(argv, log_path)`` as the load calls it."""
        return FakeSender(self, argv, log_path)

    async def _sender_on(self, port: int) -> FakeSender:
        while True:
            for sender in self.senders:
                if sender.port == port and sender.running():
                    return sender
            await asyncio.sleep(0.005)

    # -- the imaging OS's shell, over telnet -------------------------------------------------------------
    async def telnet_run(self, host: str, command: str, settings: telnet.TelnetSettings,
                         on_line: Callable[[str], None] | None = None) -> int:
        """``imaging.telnet.run``: refused unless the node runs the imaging OS; else run ``command``."""
        await asyncio.sleep(0)
        fake = self._by_ip[host]
        if not self._telnet_up(fake):
            raise NodeFailure(f"cannot open a telnet session to {host} (connection refused)")
        say = on_line or (lambda line: None)
        if command == "true":
            return 0
        if "command -v" in command:
            return self._which(fake, command, say)
        if "--getsize64" in command:
            self.note("disk-size", fake.host)
            asked = shlex.split(command)[2]
            if asked != fake.disk_path:
                return 1
            say(str(fake.disk_size if fake.disk_size is not None else len(fake.disk)))
            return 0
        if "/etc/imaging-image" in command:
            return self._stamp(fake, command)
        if command.startswith("udp-receiver "):
            return await self._receive(fake, shlex.split(command), say)
        if "zstd -q -c -1 <" in command:
            return await self._save(fake, command, say)
        self.note("unexpected", fake.host, command)
        raise AssertionError(f"{fake.host}: unexpected command {command!r}")

    async def telnet_wait_until_up(self, host: str, settings: telnet.TelnetSettings, deadline: float) -> None:
        """``imaging.telnet.wait_until_up``: retry every ``backoff`` until the imaging OS answers;
        NodeFailure at the deadline."""
        loop = asyncio.get_running_loop()
        fake = self._by_ip[host]
        while not self._telnet_up(fake):
            if loop.time() + settings.backoff >= deadline:
                raise NodeFailure("telnet not up (connection refused)")
            await asyncio.sleep(settings.backoff)

    def _telnet_up(self, fake: FakeNode) -> bool:
        return fake.booted == IMAGING_OS and fake.answering(asyncio.get_running_loop().time())

    def _which(self, fake: FakeNode, command: str, say: Callable[[str], None]) -> int:
        """``for p in PROGRAMS; do command -v "$p" … || echo "MARKER $p"; done``: the missing ones."""
        found = re.search(r"for p in (.*?); do command -v .*\|\| echo \"(\S+) \$p\"; done", command)
        assert found, command
        for program in shlex.split(found.group(1)):
            if program in fake.missing:
                say(f"{found.group(2)} {program}")
        return 0

    def _link_state(self, fake: FakeNode) -> str:
        return "link" if self.link(fake).is_symlink() else "no link"

    def _stamp(self, fake: FakeNode, command: str) -> int:
        found = re.search(r"printf '%s\\n' (.*?) >> ", command)
        assert found, command
        line = shlex.split(found.group(1))[0]
        self.note("stamp", fake.host, line)
        fake.disk.extend(line.encode() + b"\n")  # the stamp is on the disk, so in the saved image
        return 0

    async def _receive(self, fake: FakeNode, argv: list[str], say: Callable[[str], None]) -> int:
        self.note("receiver", fake.host, self._link_state(fake))
        if argv[argv.index("--file") + 1] != fake.disk_path:
            say(f"udp-receiver: cannot open {argv[argv.index('--file') + 1]}: No such file or directory")
            return 1
        sender = await self._sender_on(int(argv[argv.index("--portbase") + 1]))
        await sender.join(fake)
        image = Path(sender.option("--file")).read_bytes()
        step = len(image) // TRANSFER_STEPS
        try:
            for offset in range(0, len(image), step):
                if fake.receiver_exit and offset >= len(image) // 2:
                    return fake.receiver_exit  # dies half-way
                if fake.hangs and offset >= len(image) // 2:
                    self.note("hung", fake.host)
                    await asyncio.Event().wait()
                if not sender.running():
                    self.note("stalled", fake.host)
                    await asyncio.Event().wait()  # no more data will come
                fake.disk[offset:offset + step] = image[offset:offset + step]
                say(f"bytes= {offset + step}  (100.00 Mbps)")
                await asyncio.sleep(0.002)
            fake.bitrate = sender.bitrate
            loop = asyncio.get_running_loop()
            until, written = loop.time() + fake.write_tail, 0
            while loop.time() < until:  # as zstd -d --progress says it, long after the sender is done
                written += 1
                say(f"/*stdin*\\            : {written} MiB...     ")
                await asyncio.sleep(0.05)
            say("Transfer complete.")
            return 0
        finally:
            sender.done_with(fake)

    async def _save(self, fake: FakeNode, command: str, say: Callable[[str], None]) -> int:
        disk = re.search(r"zstd -q -c -1 < (\S+);", command)
        target = re.search(r" -q 0 (\S+) (\d+) >/dev/null", command)
        assert disk and target, command
        self.note("save", fake.host, self._link_state(fake))
        if shlex.split(disk.group(1))[0] != fake.disk_path:
            say(f"sh: can't open {disk.group(1)}: no such file")
            return 1
        data = bytes(fake.disk)
        try:
            _, writer = await asyncio.open_connection(target.group(1), int(target.group(2)),
                                                      local_addr=(fake.node.control.ip, 0))
        except OSError:
            say(f"nc: connect to {target.group(1)} port {target.group(2)} failed: Connection refused")
            return 1
        if fake.save_unclean:
            writer.write(data[:len(data) // 2])
            await writer.drain()
            await asyncio.sleep(0.05)  # the receiver has read it
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                       struct.pack("ii", 1, 0))
            writer.transport.abort()  # a TCP reset, not an end of stream
            return 0
        writer.write(data)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        if fake.save_exit:
            say("zstd: /dev/sda: Input/output error")
        return fake.save_exit

    # -- wiring -----------------------------------------------------------------------------------------
    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Put the fakes where the jobs look them up."""
        monkeypatch.setattr("imaging.jobs.load.CmcClient", self.cmc_client)
        monkeypatch.setattr("imaging.jobs.save.CmcClient", self.cmc_client)
        monkeypatch.setattr("imaging.cmc.any_port_answers", self.any_port_answers)
        monkeypatch.setattr("imaging.telnet.run", self.telnet_run)
        monkeypatch.setattr("imaging.telnet.wait_until_up", self.telnet_wait_until_up)
        monkeypatch.setattr("imaging.jobs.load.SenderProcess", self.sender_process)


def make_bed(folder: Path, nodes: list[FakeNode]) -> FakeTestbed:
    """A bed whose pxelinux folder (``folder/pxelinux.cfg``) holds the imaging-OS file."""
    config_dir = folder / "pxelinux.cfg"
    config_dir.mkdir(parents=True)
    (config_dir / PXE_FILE).write_text("default imaging-os\n")
    return FakeTestbed(config_dir, PXE_FILE, nodes)


def job_state(bed: FakeTestbed) -> JobState:
    """A job's state with a real NextBoot on the bed's pxelinux folder (and a real LockSet)."""
    return JobState(NextBoot(bed.config_dir, dict.fromkeys(bed.nodes, bed.imaging_os)))


def links_left(bed: FakeTestbed) -> list[str]:
    """The hosts whose next-boot link exists."""
    return [fake.host for fake in bed.nodes.values() if bed.link(fake).is_symlink()]


def in_order(entries: list[Entry], *wanted: Entry) -> bool:
    """True when ``wanted`` occur in ``entries`` in this order (others may come between)."""
    rest = iter(entries)
    return all(any(entry == one for entry in rest) for one in wanted)
