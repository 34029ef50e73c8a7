"""In-process stand-ins for what the load and save jobs drive, for tests that run in milliseconds.

A :class:`FakeTestbed` plays the hardware at the interfaces the jobs call:

* the management cards (``CmcClient`` as the jobs import it), with a power
  state machine; a reset or power-on boots the node into what its real
  next-boot link (a :class:`~imaging.boot.nextboot.NextBoot` folder) says *at that
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

File-system-aware images (``.ptcl.zst``) need ``sfdisk``, ``blkid``, ``partclone`` and a disk
with partitions, none of which can exist in-process (partclone reads a block device; a real one
needs root and a loop device, which ``tests/test_partclone.py`` uses).  So a node may hold a
:class:`~imaging.disklayout.Layout` (``FakeNode.layout``): what its disk's table and file
systems are, and how many bytes each file system uses.  Its telnet then

* answers the two layout questions (``partclone.table_probe``, ``partclone.fs_probe``) by running
  their simple commands one by one (``echo`` prints the markers the product asked for, checked
  against ``imaging.partclone``'s constants; ``sfdisk --json`` / ``--dump``, ``blkid -p -o
  export`` and ``[ -b DEV ]`` print what those programs print for that layout);
* runs the save pipeline (``{ steps; } | zstd -q -c -1 | nc …``) step by step: the markers, the
  ``dd`` of the table's area, and per partition a stand-in of ``partclone.<fs> -c`` (its lines:
  ``Space in use: … = N Blocks``, ``Block size: 4096 Byte``, ``Completed: x%``) whose image is
  :func:`fake_partclone_image` of the bytes the file system uses (the partition's first ``used``
  bytes), ``partclone.dd``'s being the partition's raw bytes, as the real one's are; the stream is
  zstd's format with raw blocks (:class:`ZstdWriter`: nothing compresses in-process, and the real
  ``zstd -d`` decodes it), sent over TCP to the job's real save receiver;
* runs the load pipeline (``udp-receiver … | zstd -d -q --progress | { restore }``): it joins the
  fake sender, decodes the image as it arrives (``bytes=`` and zstd's progress lines), and runs
  each restore step: ``head -c | dd``, the ``partclone.<fs> -r`` stand-in writing at ``-E``,
  mkswap into a file then ``dd`` of its header, ``sfdisk``, ``sync``; data left unread at the end
  is zstd's broken pipe, as with the real programs;
* fails inside a given partition on request (``fail_in``): partclone's ``read ERROR`` / ``write
  ERROR`` and ``Partclone fail`` lines, or the receiver killed there (``receiver_exit``), or the
  restore going silent there (``hangs``); the pipeline's status is the one the product's
  ``pipeline()`` wrapper gives (0 or 1).

Everything that happens is appended to :attr:`FakeTestbed.timeline` in order,
so tests can check the order of boots, link states, sender starts and phases.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import socket
import struct
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

import pytest

from imaging import partclone, telnet
from imaging.boot.nextboot import NextBoot
from imaging.boot.pxelinux import config_name
from imaging.disklayout import Layout, Partition, method_for, partition_device, trailer
from imaging.errors import ImagingError, NodeFailure
from imaging.events import Event
from imaging.images import Image
from imaging.inventory import Interface, Node
from imaging.jobs.imagingos import BootSettings, JobState
from imaging.power.base import PowerError, PowerOptions
from imaging.power.reset import ResetSettings

Entry = tuple[str, ...]
IMAGING_OS = "imaging"
DISK = "disk"
DD_SAID = "/tmp/imaging-dd"  # where the restore keeps what dd said it copied
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
    receiver_exit: int = 0  # the receiver's exit status (137: killed mid-transfer; with a layout, in fail_in)
    save_exit: int = 0  # the save pipeline's exit status
    save_unclean: bool = False  # the stream is cut by a TCP reset half-way
    missing: tuple[str, ...] = ()  # programs its imaging OS lacks
    write_tail: float = 0.0  # seconds it goes on writing (decompressing) after the last byte came
    hangs: bool = False  # its receiver stops making progress half-way (a hung disk) and never ends
    # (with a layout image: the restore goes silent inside partition fail_in, or the first one partclone writes)
    # its disk as sfdisk and blkid show it, with the bytes each file system uses (None: a blank disk)
    layout: Layout | None = None
    hidden: tuple[int, ...] = ()  # partitions whose device (/dev/sdaN) its imaging OS does not show
    fail_in: int | None = None  # the partition a file-system-aware save or restore fails in (or hangs in)
    fail_reason: str = "Input/output error"  # what partclone's read/write ERROR line says there
    fail_exit: int = 1  # partclone's status there (137: killed, it says nothing)
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


# -- file-system-aware images: what stands in for sfdisk, blkid, partclone and zstd -----------------------
KIB = 1024
FS_BLOCK = 4096  # the block size the fake partclone reports for a file system (partclone.dd: the sector)
PIPE_AHEAD = 64 * KIB  # bytes a load's receiver and zstd get ahead of the restore (a pipe's buffer)
LAYOUT_CHUNK = 16 * KIB  # bytes a load's receiver gets per step of the loop
PIECES = 4  # the fake partclone reads or writes a partition in that many pieces, printing its progress
FAKE_IMAGE_TAG = b"fake-partclone\0\1"  # a fake partclone image: this tag, the data's length (8 bytes), the data
ZSTD_MAGIC = 0xFD2FB528
SKIPPABLE = range(0x184D2A50, 0x184D2A60)
RAW_BLOCK_MAX = 1 << 17
GPT_TYPES = {"vfat": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"}
GPT_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
DOS_TYPES = {"vfat": "c", "swap": "82"}
LABELS = {"ext4": "root", "vfat": "EFI", "swap": "swap"}
NO_OUTPUT = {"2>/dev/null", ">/dev/null", ">&2", "2>&1"}  # redirections the fake shell drops
PROBE_MARKS = (partclone.DUMP_MARK, partclone.WHOLE_MARK, partclone.SIZE_MARK, partclone.FS_MARK, partclone.DEV_MARK)
PARTCLONE_FAILED = "Partclone fail, please check /dev/null !"  # what partclone -L /dev/null says when it fails


def fs_uuid(fs: str, number: int) -> str:
    """A file system's UUID as blkid shows it (FAT's is a volume id)."""
    return f"ABCD-{number:04X}" if fs == "vfat" else str(uuid.UUID(int=(0x5EED << 64) | number))


def disk_layout(disk_size: int, *parts: tuple[str, int, int, int | None], label: str = "gpt",
                disk: str = "/dev/sda", sector_size: int = 512) -> Layout:
    """A disk as sfdisk and blkid show it: partition ``i + 1`` is ``parts[i] = (fs, start, size, used)``
    (``fs`` as blkid's TYPE, "" for none known; bytes; ``used``: what its file system uses, as partclone
    says it; partclone.dd says the whole partition).  ``label="none"``: one file system over the whole
    disk (one part, at 0, numbered 0).  Only what the probes show is read: ``head`` and ``table`` are the
    product's to compute and are left 0 and empty."""
    partitions = []
    for number, (fs, start, size, used) in enumerate(parts, 0 if label == "none" else 1):
        types = GPT_TYPES if label == "gpt" else DOS_TYPES
        part_type = "" if label == "none" else types.get(fs, GPT_LINUX if label == "gpt" else "83")
        method = method_for(fs, part_type)
        if method == "partclone.dd":
            used = size if used is None else used
        elif not method.startswith("partclone."):
            used = None
        assert start % sector_size == 0 and size % sector_size == 0, "partitions are whole sectors"
        assert used is None or used % (FS_BLOCK if method != "partclone.dd" else sector_size) == 0, "whole blocks"
        assert used is None or used <= size
        partitions.append(Partition(number, start, size, method, type=part_type, fs=fs,
                                    uuid=fs_uuid(fs, number) if fs else "", label=LABELS.get(fs, ""),
                                    device=disk if label == "none" else partition_device(disk, number), used=used))
    return Layout(label, disk_size, sector_size, 0, "", tuple(partitions))


def standard_layout() -> Layout:
    """A 1 MiB GPT disk: 1 FAT (64 KiB used), 2 ext4 (128 KiB used), 3 swap, 4 of no known file system
    (partclone.dd); it needs 880.5 KiB (its last partition's end and the backup GPT)."""
    return disk_layout(1 << 20, ("vfat", 32 * KIB, 192 * KIB, 64 * KIB), ("ext4", 224 * KIB, 512 * KIB, 128 * KIB),
                       ("swap", 736 * KIB, 64 * KIB, None), ("", 800 * KIB, 64 * KIB, None))


class ZstdWriter:
    """zstd's output as ``zstd -c`` of a pipe writes it: one frame (its size undeclared) of raw blocks.
    Nothing compresses in-process, and nothing needs to: the real ``zstd -d`` decodes these frames."""

    def __init__(self) -> None:
        self.started = False

    def _header(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        return ZSTD_MAGIC.to_bytes(4, "little") + bytes([0x00, 0x50])  # no size, no checksum; a 1 MiB window

    def feed(self, data: bytes) -> bytes:
        """The frame's bytes that carry ``data``."""
        out = bytearray(self._header())
        for offset in range(0, len(data), RAW_BLOCK_MAX):
            block = data[offset:offset + RAW_BLOCK_MAX]
            out += (len(block) << 3).to_bytes(3, "little") + block
        return bytes(out)

    def end(self) -> bytes:
        """The frame's end: an empty last block."""
        return self._header() + (1).to_bytes(3, "little")


def zstd_frames(data: bytes) -> bytes:
    """``data`` as one whole zstd frame (raw blocks)."""
    writer = ZstdWriter()
    return writer.feed(data) + writer.end()


def zstd_blocks(data: bytes) -> list[tuple[int, bytes]]:
    """What ``zstd -d`` makes of ``data``, block by block: ``(where the block ends in data, its bytes)``;
    skippable frames are passed over.  AssertionError on a compressed block (the fakes read what they wrote)
    or a cut frame."""
    offset, blocks = 0, []
    while offset < len(data):
        magic = int.from_bytes(data[offset:offset + 4], "little")
        if magic in SKIPPABLE:
            offset += 8 + int.from_bytes(data[offset + 4:offset + 8], "little")
            continue
        assert magic == ZSTD_MAGIC, f"no zstd frame at byte {offset}"
        descriptor = data[offset + 4]
        single = bool(descriptor & 0x20)
        size_bytes = (1 if single else 0, 2, 4, 8)[descriptor >> 6]
        offset += 5 + (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3] + size_bytes
        last = 0
        while not last:
            header = int.from_bytes(data[offset:offset + 3], "little")
            last, kind, size = header & 1, (header >> 1) & 3, header >> 3
            offset += 3
            assert kind in (0, 1), "a compressed zstd block: the fakes decode only raw and RLE blocks"
            block = data[offset:offset + size] if kind == 0 else data[offset:offset + 1] * size
            offset += size if kind == 0 else 1
            assert offset <= len(data), "the zstd frame is cut"
            blocks.append((offset, block))
        offset += 4 if descriptor & 4 else 0
    assert offset == len(data), "the data ends inside a skippable frame"
    return blocks


def unzstd(data: bytes) -> bytes:
    """What ``zstd -d`` makes of ``data`` (frames of raw blocks, skippable frames passed over)."""
    return b"".join(block for _, block in zstd_blocks(data))


def fake_partclone_image(data: bytes) -> bytes:
    """What the fake ``partclone.<fs> -c`` writes: its tag, the length of the used bytes, the used bytes
    (a real image holds a header, a bitmap and the used blocks; the restore reads exactly its own)."""
    return FAKE_IMAGE_TAG + len(data).to_bytes(8, "little") + data


def payload(layout: Layout, disk: bytes) -> bytes:
    """The image's content (before zstd) a save of a disk holding ``disk`` with this layout makes: the
    table's area (``layout.head`` bytes, none without a table), then each saved partition's image in turn."""
    out = bytearray(disk[:layout.head] if layout.label != "none" else b"")
    for part in layout.partitions:
        if part.method == "partclone.dd":
            out += disk[part.start:part.start + part.size]
        elif part.saved:
            assert part.used is not None
            out += fake_partclone_image(disk[part.start:part.start + part.used])
    return bytes(out)


def layout_image(path: Path, layout: Layout, disk: bytes) -> Image:
    """A ``.ptcl.zst`` image of ``disk`` as imaging-save writes one (``layout`` as the product records it,
    with ``head`` and the used bytes), for loads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstd_frames(payload(layout, disk)) + trailer(layout))
    return Image(path, ".ptcl.zst", path.stat().st_size, path.stat().st_mtime)


def swap_header(size: int, swap_uuid: str, label: str) -> bytes:
    """The first page mkswap writes (version 1, last page, UUID, label, ``SWAPSPACE2``)."""
    page = bytearray(FS_BLOCK)
    struct.pack_into("<III", page, 1024, 1, size // FS_BLOCK - 1, 0)
    if swap_uuid:
        page[1036:1052] = uuid.UUID(swap_uuid).bytes
    page[1052:1052 + len(label[:16])] = label[:16].encode()
    page[FS_BLOCK - 10:] = b"SWAPSPACE2"
    return bytes(page)


def sfdisk_json(layout: Layout, disk: str) -> str:
    """What ``sfdisk --json DISK`` prints of the layout's table."""
    sector = layout.sector_size
    table: dict[str, object] = {"label": layout.label, "id": "0x5eed0001" if layout.label == "dos" else
                                str(uuid.UUID(int=0x5EED)).upper(), "device": disk, "unit": "sectors"}
    if layout.label == "gpt":
        table.update(firstlba=34, lastlba=layout.disk_size // sector - 34)
    table["sectorsize"] = sector
    entries = []
    for part in layout.partitions:
        entry: dict[str, object] = {"node": partition_device(disk, part.number), "start": part.start // sector,
                                    "size": part.size // sector, "type": part.type}
        if layout.label == "gpt":
            entry["uuid"] = str(uuid.UUID(int=(0x9A87 << 64) | part.number)).upper()
        entries.append(entry)
    if entries:
        table["partitions"] = entries
    return json.dumps({"partitiontable": table}, indent=3)


def sfdisk_dump(layout: Layout, disk: str) -> str:
    """What ``sfdisk --dump DISK`` prints of the layout's table."""
    data = json.loads(sfdisk_json(layout, disk))["partitiontable"]
    lines = [f"label: {layout.label}", f"label-id: {data['id']}", f"device: {disk}", "unit: sectors"]
    if layout.label == "gpt":
        lines += [f"first-lba: {data['firstlba']}", f"last-lba: {data['lastlba']}"]
    lines += [f"sector-size: {layout.sector_size}", ""]
    for entry in data.get("partitions", []):
        extra = f", uuid={entry['uuid']}" if "uuid" in entry else ""
        lines.append(f"{entry['node']} : start={entry['start']:>12}, size={entry['size']:>12}, type={entry['type']}"
                     f"{extra}")
    return "\n".join(lines)


def blkid_export(part: Partition, device: str) -> list[str]:
    """What ``blkid -p -o export`` prints of the file system of ``part`` (nothing when none is known)."""
    if not part.fs:
        return []
    version = {"vfat": "FAT16", "swap": "1", "ext4": "1.0"}.get(part.fs, "")
    lines = [f"DEVNAME={device}", f"UUID={part.uuid}"]
    lines += [f"LABEL={part.label}"] if part.label else []
    lines += [f"VERSION={version}"] if version else []
    return [*lines, f"TYPE={part.fs}", f"USAGE={'other' if part.fs == 'swap' else 'filesystem'}"]


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


class Received:
    """What a load's restore reads: the image as the node's receiver gets it from the fake sender, decoded
    as zstd would, at most :data:`PIPE_AHEAD` bytes ahead of the restore.  Prints udp-receiver's and zstd's
    progress lines; the receiver dies in partition ``fail_in`` when the node's ``receiver_exit`` says so."""

    def __init__(self, fake: FakeNode, sender: FakeSender, image: bytes, say: Callable[[str], None],
                 note: Callable[..., None]) -> None:
        self.fake, self.sender, self.say, self.note = fake, sender, say, note
        self.blocks = zstd_blocks(image)
        self.size = len(image)
        self.received = 0  # bytes of the image the receiver got
        self.block = 0  # blocks decoded
        self.buffer = bytearray()  # decoded, not yet read by the restore
        self.decoded = 0
        self.step: str | None = None  # the restore's step (its last marker)
        self.receiver_status = 0
        self.tail_spent = False
        self.left = False

    def leave(self) -> None:
        """The receiver is done with the sender (it got everything, died, or its pipeline ended)."""
        if not self.left:
            self.left = True
            self.sender.done_with(self.fake)

    @property
    def ended(self) -> bool:
        """True once the receiver got the whole image, or died."""
        return self.received >= self.size or self.receiver_status != 0

    def _dies_now(self) -> bool:
        if not self.fake.receiver_exit:
            return False
        if self.fake.fail_in is None:
            return self.received >= self.size // 2
        return self.step == str(self.fake.fail_in)

    async def _receive(self) -> None:
        if self._dies_now():
            self.receiver_status = self.fake.receiver_exit
            self.note("receiver-killed", self.fake.host, self.step or "")
            self.say("/*stdin*\\ : Read error (39) : premature end ")  # zstd, its input cut inside a frame
            self.leave()
            return
        if not self.sender.running():
            self.note("stalled", self.fake.host)
            await asyncio.Event().wait()  # no more data will come
        self.received = min(self.size, self.received + LAYOUT_CHUNK)
        while self.block < len(self.blocks) and self.blocks[self.block][0] <= self.received:
            self.buffer += self.blocks[self.block][1]
            self.decoded += len(self.blocks[self.block][1])
            self.block += 1
        self.say(f"bytes= {self.received:,}  (100.00 Mbps)".replace(",", " "))
        self.say(f"/*stdin*\\            : {self.decoded / KIB:.2f} KiB...     ")
        if self.received >= self.size:
            self.say(f"/*stdin*\\            : {self.decoded} bytes     ")
            self.say("Transfer complete.")
            self.fake.bitrate = self.sender.bitrate
            self.leave()
        await asyncio.sleep(0.001)

    async def read(self, count: int) -> bytes:
        """Up to ``count`` bytes (fewer once the stream ended: EOF)."""
        while not self.ended and len(self.buffer) < count + PIPE_AHEAD:
            if len(self.buffer) >= count and self.fake.receiver_exit:
                break  # a receiver to kill dies when the restore needs it, not ahead of it
            await self._receive()
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    async def rest(self) -> int:
        """Receive what is left of the image; the decoded bytes no step read."""
        while not self.ended:
            await self._receive()
        return len(self.buffer)


class FakeCmc:
    """The jobs' ``Power`` (a CMC for every node), answering for the cards of the bed's nodes."""

    def __init__(self, bed: FakeTestbed, timeout: float) -> None:
        self.bed, self.timeout = bed, timeout

    async def __aenter__(self) -> FakeCmc:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        return None

    async def request(self, node: Node, verb: str) -> str:
        """Send one verb; the answer, or PowerError when the card is down."""
        await asyncio.sleep(0)
        fake = self.bed.nodes[node.number]
        if fake.cmc_down:
            self.bed.note("cmc", fake.host, verb, "no answer")
            raise PowerError(f"unreachable (timeout {self.timeout:g}s)")
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

    async def boot_from_network(self, node: Node) -> None:
        """A card has no boot device to set: nothing, as :class:`imaging.power.cmc.Cmc`."""
        await asyncio.sleep(0)

    def label(self, node: Node) -> str:
        """How messages name the card."""
        return "CMC"


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
        """``imaging.power.reset.any_port_answers``: does the node's control interface answer?"""
        await asyncio.sleep(0)
        return self._by_ip[host].answering(asyncio.get_running_loop().time())

    def power(self, options: PowerOptions) -> FakeCmc:
        """``Power(options)`` as the jobs call it."""
        return FakeCmc(self, options.timeout)

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
                         on_line: Callable[[str], None] | None = None,
                         on_partial: Callable[[str], None] | None = None) -> int:
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
        if command.startswith("sfdisk --json ") or "blkid -p -o export" in command:
            return self._probe(fake, command, say)  # partclone.table_probe, partclone.fs_probe
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
        if re.search(r"zstd -q -c -1( --stream-size=\d+)? <", command):
            return await self._save(fake, command, say)
        if " | zstd -q -c -1 | " in command:
            return await self._save_layout(fake, command, say)
        if command.startswith("s=$( { { udp-receiver ") and " | zstd -d -q --progress | { " in command:
            return await self._load_layout(fake, command, say)
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
        disk = re.search(r"zstd -q -c -1(?: --stream-size=\d+)? < (\S+);", command)
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

    # -- file-system-aware images: the probes, the save and the restore, step by step ---------------------
    def _layout(self, fake: FakeNode) -> Layout:
        """The node's layout; a blank disk (``layout`` None) has no table and no file system."""
        if fake.layout is not None:
            return fake.layout
        size = fake.disk_size if fake.disk_size is not None else len(fake.disk)
        return disk_layout(size, ("", 0, size, None), label="none", disk=fake.disk_path)

    def _device_exists(self, fake: FakeNode, device: str) -> bool:
        """``[ -b DEVICE ]`` in its imaging OS: the disk, and each partition it does not hide."""
        if device == fake.disk_path:
            return True
        layout = self._layout(fake)
        return layout.label != "none" and any(
            device == partition_device(fake.disk_path, p.number) and p.number not in fake.hidden
            for p in layout.partitions)

    def _partition_at(self, fake: FakeNode, device: str) -> Partition | None:
        """The partition whose device (or, numbered 0, the whole disk) is ``device``."""
        return next((p for p in self._layout(fake).partitions if p.device == device), None)

    def _probe(self, fake: FakeNode, command: str, say: Callable[[str], None]) -> int:
        """``partclone.table_probe`` or ``partclone.fs_probe``: ``;``-separated simple commands, each
        possibly ``A && B`` or ``A || B``, run in turn."""
        self.note("probe", fake.host, "table" if command.startswith("sfdisk --json") else "file systems")
        status = 0
        for statement in command.split("; "):
            for operator in (" || ", " && "):
                if operator in statement:
                    first, second = statement.split(operator)
                    status = self._simple(fake, first, say)
                    if (status == 0) == (operator == " && "):  # || runs the second on failure, && on success
                        status = self._simple(fake, second, say)
                    break
            else:
                status = self._simple(fake, statement, say)
        return status

    def _simple(self, fake: FakeNode, text: str, say: Callable[[str], None]) -> int:
        """One simple command of a probe, as its program would answer on this node."""
        argv = [word for word in shlex.split(text) if word not in NO_OUTPUT]
        layout = self._layout(fake)
        whole = layout.label == "none"
        if argv[0] == "echo":
            assert argv[1] in PROBE_MARKS, f"{fake.host}: a probe echoes {argv[1]!r}, not one of its markers"
            say(" ".join(argv[1:]))
            return 0
        if argv == ["true"]:
            return 0
        if argv[:2] == ["[", "-b"] and argv[3:] == ["]"]:
            return 0 if self._device_exists(fake, argv[2]) else 1
        if argv[0] in ("blockdev", "stat"):
            if argv[-1] != fake.disk_path:
                return 1
            say(str(fake.disk_size if fake.disk_size is not None else len(fake.disk)))
            return 0
        if argv[0] == "sfdisk" and argv[1] in ("--json", "--dump"):
            if argv[2] != fake.disk_path or (whole and not layout.partitions[0].fs):
                return 1  # "sfdisk: failed to dump partition table" (its stderr goes to /dev/null)
            shown = replace(layout, label="dos", partitions=()) if whole else layout  # a superfloppy: an empty MBR
            for line in (sfdisk_json if argv[1] == "--json" else sfdisk_dump)(shown, fake.disk_path).splitlines():
                say(line)
            return 0
        if argv[:4] == ["blkid", "-p", "-o", "export"]:
            return self._blkid(fake, argv[4:], say)
        raise AssertionError(f"{fake.host}: a probe runs {text!r}")

    def _blkid(self, fake: FakeNode, args: list[str], say: Callable[[str], None]) -> int:
        """``blkid -p -o export [-O OFFSET -S SIZE] DISK``: what is at that place of the disk."""
        layout = self._layout(fake)
        device = args[-1]
        if device != fake.disk_path:
            return 2
        if args[:1] == ["-O"]:
            start, size = int(args[1]), int(args[3])
            part = next((p for p in layout.partitions if (p.start, p.size) == (start, size)), None)
            lines = blkid_export(part, device) if part is not None else []
        elif layout.label == "none":
            lines = blkid_export(layout.partitions[0], device)
        else:
            lines = [f"DEVNAME={device}", f"PTUUID={str(uuid.UUID(int=0x5EED)).lower()}", f"PTTYPE={layout.label}"]
        for line in lines:
            say(line)
        return 0 if lines else 2

    async def _save_layout(self, fake: FakeNode, command: str, say: Callable[[str], None]) -> int:
        """``s=$( { { { STEPS; }; echo $? >&3; } | zstd -q -c -1 | nc -q 0 HOST PORT … ); [ "$s" = 0 ]``:
        the steps' output, compressed, streamed to the job's receiver; 0 when the steps and nc succeeded."""
        found = re.fullmatch(r's=\$\( \{ \{ \{ (.*); \}; echo \$\? >&3; \} \| zstd -q -c -1 \| (\S+) -q 0 (\S+) (\d+)'
                             r' >/dev/null \|\| echo failed >&3; \} 3>&1 \); \[ "\$s" = 0 \]', command)
        assert found, command
        steps, host, port = found.group(1), shlex.split(found.group(3))[0], int(found.group(4))
        self.note("save", fake.host, self._link_state(fake))
        try:
            _, writer = await asyncio.open_connection(host, port, local_addr=(fake.node.control.ip, 0))
        except OSError:
            say(f"nc: connect to {host} port {port} failed: Connection refused")
            return 1
        zstd = ZstdWriter()

        async def out(data: bytes) -> None:
            writer.write(zstd.feed(data))
            await writer.drain()

        status = 0
        for step in steps.split(" && "):
            status = await self._produce(fake, step, say, out)
            if status != 0:
                break
        writer.write(zstd.end())  # zstd ends its frame at its input's end, whatever the producer's status
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        return 0 if status == 0 else 1

    async def _produce(self, fake: FakeNode, step: str, say: Callable[[str], None],
                       out: Callable[[bytes], Awaitable[None]]) -> int:
        """One step of the save's producer."""
        argv = [word for word in shlex.split(step) if word not in NO_OUTPUT]
        if argv[0] == "echo":
            assert argv[1] == partclone.MARK, step
            say(" ".join(argv[1:]))
            return 0
        if argv[0] in fake.missing:
            say(f"sh: {argv[0]}: not found")
            return 127
        if argv[0] == "dd":
            options = dict(word.split("=", 1) for word in argv[1:])
            assert options["if"] == fake.disk_path, step
            await out(bytes(fake.disk[:int(options["bs"]) * int(options["count"])]))
            return 0
        if argv[0].startswith("partclone.") and argv[1:2] in (["-c"], ["-s"]):
            return await self._partclone_save(fake, argv, say, out)
        raise AssertionError(f"{fake.host}: the save runs {step!r}")

    async def _partclone_save(self, fake: FakeNode, argv: list[str], say: Callable[[str], None],
                              out: Callable[[bytes], Awaitable[None]]) -> int:
        """``partclone.<fs> -c -s DEVICE -o - …`` (``partclone.dd -s DEVICE -o - …``) of one partition."""
        program, source = argv[0], argv[argv.index("-s") + 1]
        assert argv[argv.index("-o") + 1] == "-", argv
        say("Partclone v0.3.23 http://partclone.org")
        part = self._partition_at(fake, source)
        if part is None or not self._device_exists(fake, source):
            say(f"open ERROR:No such file or directory ({source})")
            say(PARTCLONE_FAILED)
            return 1
        raw = program == "partclone.dd"
        if not raw and method_for(part.fs, part.type) != program:
            say(f"{program}: {source} is not a {program.removeprefix('partclone.')} file system ({part.fs or 'none'})")
            say(PARTCLONE_FAILED)
            return 1
        used = part.size if raw else part.used if part.used is not None else part.size
        block = 512 if raw else FS_BLOCK
        say(f"Starting to clone device ({source}) to image (-)")
        say(f"File system:  {'raw' if raw else part.fs.upper()}")
        say(f"Device size:   {part.size / 1e6:.1f} MB = {part.size // block} Blocks")
        say(f"Space in use:   {used / 1e6:.1f} MB = {used // block} Blocks")
        say(f"Block size:   {block} Byte")
        data = bytes(fake.disk[part.start:part.start + used])
        image = data if raw else fake_partclone_image(data)  # partclone.dd's image is the partition's bytes
        piece = -(-len(image) // PIECES)
        for number in range(1, PIECES + 1):
            if fake.fail_in == part.number and number > PIECES // 2:
                self.note("save-failed", fake.host, str(part.number))
                return self._partclone_fails(fake, "read", say)
            await out(image[(number - 1) * piece:number * piece])
            say(f"Elapsed: 00:00:01, Remaining: 00:00:00, Completed: {100.0 * number / PIECES:6.2f}%,"
                " Rate:  99.99MB/min,")
            await asyncio.sleep(0.001)
        say("Total Time: 00:00:01, 100.00% completed!")
        say("Cloned successfully.")
        return 0

    def _partclone_fails(self, fake: FakeNode, doing: str, say: Callable[[str], None]) -> int:
        """partclone fails where it is: its ERROR line and its last words, unless it was killed."""
        if fake.fail_exit != 137:
            say(f"{doing} ERROR:{fake.fail_reason}")
            say(PARTCLONE_FAILED)
        return fake.fail_exit

    async def _load_layout(self, fake: FakeNode, command: str, say: Callable[[str], None]) -> int:
        """``s=$( { { udp-receiver …; echo $? >&3; } | zstd -d -q --progress | { STEPS; } … ); [ "$s" = 0 ]``:
        join the sender, decode the image as it comes and run the restore's steps on it."""
        found = re.fullmatch(r's=\$\( \{ \{ (udp-receiver .*?); echo \$\? >&3; \} \| zstd -d -q --progress'
                             r' \| \{ (.*); \} >/dev/null \|\| echo failed >&3; \} 3>&1 \); \[ "\$s" = 0 \]', command)
        assert found, command
        receive, steps = shlex.split(found.group(1)), found.group(2)
        self.note("receiver", fake.host, self._link_state(fake))
        sender = await self._sender_on(int(receive[receive.index("--portbase") + 1]))
        await sender.join(fake)
        stream = Received(fake, sender, Path(sender.option("--file")).read_bytes(), say, self.note)
        files: dict[str, bytes] = {}  # the imaging OS's /tmp
        status = 0
        try:
            for step in steps.split(" && "):
                status = await self._restore(fake, step, stream, files, say)
                if status != 0:
                    break
            if status == 0 and await stream.rest():
                say("zstd: error 70 : Write error : cannot write block : Broken pipe")  # the restore left data
                status = 1
        finally:
            stream.leave()
        return 0 if status == 0 and stream.receiver_status == 0 else 1

    async def _restore(self, fake: FakeNode, step: str, stream: Received, files: dict[str, bytes],
                       say: Callable[[str], None]) -> int:
        """One step of the restore: a marker, ``head -c N | dd …``, ``printf … | sfdisk …``, partclone -r,
        the swap's mkswap into a file and ``dd`` of its header, ``sync``."""
        if step.startswith("{ grep -q '^"):  # the check that dd copied as many bytes as asked
            wanted = int(step.split("'^", 1)[1].split(" ", 1)[0])
            if files.get(DD_SAID) == str(wanted).encode():
                return 0
            say(f"short stream: fewer than {wanted} bytes came")
            return 1
        if step.startswith("{ sync &"):  # the write-back, said each second (here at once)
            return 0
        said = next((w[2:] for w in step.split() if w.startswith("2>/tmp/")), None)
        commands = [[word for word in shlex.split(part) if word not in NO_OUTPUT and not word.startswith("2>")]
                    for part in step.split(" | ")]
        argv = commands[0]
        for program in (c[0] for c in commands):
            if program in fake.missing:
                say(f"sh: {program}: not found")
                return 127
        if argv[0] == "echo":
            assert argv[1] == partclone.MARK, step
            stream.step = argv[2]
            say(" ".join(argv[1:]))
            return 0
        if argv[:2] == ["head", "-c"] and commands[1][0] == "dd":
            data = await stream.read(int(argv[2]))
            options = dict(word.split("=", 1) for word in commands[1][1:])
            if said is not None:
                files[said] = str(len(data)).encode()  # what dd says it copied
            return self._dd_write(fake, options, data, say)
        if argv[0] == "printf" and commands[1][0] == "sfdisk":
            self.note("sfdisk", fake.host, "write table")
            return 0
        if argv[0] == "sfdisk" and "--relocate" in argv:
            self.note("sfdisk", fake.host, "relocate")
            return 0 if argv[-1] == fake.disk_path else 1
        if argv[0].startswith("partclone.") and "-r" in argv:
            return await self._partclone_restore(fake, argv, stream, say)
        if argv[:2] == ["rm", "-f"]:
            files.pop(argv[2], None)
            return 0
        if argv[0] == "mkswap":
            name = argv[-1]
            assert name in files, step
            values = dict(zip(argv[1:-1:2], argv[2:-1:2], strict=True))
            files[name] = swap_header(len(files[name]), values.get("-U", ""), values.get("-L", ""))
            return 0
        if argv[0] == "dd" and argv[1] == "if=/dev/zero":
            options = dict(word.split("=", 1) for word in argv[1:])
            files[options["of"]] = bytes(int(options["seek"]))  # a sparse file of the partition's size
            return 0
        if argv[0] == "dd":
            options = dict(word.split("=", 1) for word in argv[1:])
            data = files[options.pop("if")][:int(options["bs"]) * int(options["count"])]
            return self._dd_write(fake, options, data, say)
        if argv == ["sync"]:
            return 0
        raise AssertionError(f"{fake.host}: the restore runs {step!r}")

    def _write(self, fake: FakeNode, device: str, offset: int, data: bytes) -> str | None:
        """Write ``data`` at ``offset`` of ``device`` (the disk); the error, as dd would say it."""
        if device != fake.disk_path:
            return f"failed to open '{device}': No such file or directory"
        if offset + len(data) > len(fake.disk):
            fake.disk[offset:] = data[:max(0, len(fake.disk) - offset)]
            return f"error writing '{device}': No space left on device"
        fake.disk[offset:offset + len(data)] = data
        return None

    def _dd_write(self, fake: FakeNode, options: dict[str, str], data: bytes, say: Callable[[str], None]) -> int:
        """``dd of=DISK [seek=BYTES oflag=seek_bytes] conv=notrunc`` of ``data``."""
        seek = int(options.get("seek", "0"))
        assert not seek or options.get("oflag") == "seek_bytes", options  # the restore seeks in bytes
        assert options.get("conv") == "notrunc", options  # a block device is not truncated, a disk file must not be
        error = self._write(fake, options["of"], seek, data)
        if error:
            say(f"dd: {error}")
            return 1
        return 0

    async def _partclone_restore(self, fake: FakeNode, argv: list[str], stream: Received,
                                 say: Callable[[str], None]) -> int:
        """``partclone.<fs> -r -s - -O DISK -E OFFSET -C …``: read one fake image from the stream, write its
        data at the offset, printing partclone's progress."""
        assert argv[argv.index("-s") + 1] == "-", argv
        device, offset = argv[argv.index("-O") + 1], int(argv[argv.index("-E") + 1])
        say("Partclone v0.3.23 http://partclone.org")
        say(f"Starting to restore image (-) to device ({device})")
        header = await stream.read(len(FAKE_IMAGE_TAG) + 8)
        if len(header) < len(FAKE_IMAGE_TAG) + 8:
            say("read ERROR:No such file or directory")
            say(PARTCLONE_FAILED)
            return 1
        assert header.startswith(FAKE_IMAGE_TAG), "the restore reads a partclone image where the save put none"
        length = int.from_bytes(header[len(FAKE_IMAGE_TAG):], "little")
        say(f"Space in use:   {length / 1e6:.1f} MB = {length // FS_BLOCK} Blocks")
        say(f"Block size:   {FS_BLOCK} Byte")
        piece = -(-length // PIECES)
        written = 0
        for number in range(1, PIECES + 1):
            here = stream.step == str(fake.fail_in) if fake.fail_in is not None else fake.hangs
            if here and number > PIECES // 2:
                if fake.hangs:
                    self.note("hung", fake.host, stream.step or "")
                    await asyncio.Event().wait()  # a disk that stops answering: no line, no exit
                if not fake.receiver_exit:
                    self.note("restore-failed", fake.host, stream.step or "")
                    return self._partclone_fails(fake, "write", say)
            data = await stream.read(min(piece, length - written))
            if len(data) < min(piece, length - written):
                say("read ERROR:No such file or directory")
                say(PARTCLONE_FAILED)
                return 1
            if error := self._write(fake, device, offset + written, data):
                say(f"write ERROR:{error.rpartition(': ')[2]}")
                say(PARTCLONE_FAILED)
                return 1
            written += len(data)
            say(f"Elapsed: 00:00:01, Remaining: 00:00:00, Completed: {100.0 * number / PIECES:6.2f}%,"
                " Rate:  99.99MB/min,")
            await asyncio.sleep(0.001)
            if stream.ended and fake.write_tail and not stream.tail_spent:  # writes on after the last byte came
                stream.tail_spent = True
                await self._tail(fake, number, say)
        say("Total Time: 00:00:01, 100.00% completed!")
        say(f"Partclone successfully restored the image (-) to the device ({device})")
        say("Cloned successfully.")
        return 0

    async def _tail(self, fake: FakeNode, number: int, say: Callable[[str], None]) -> None:
        """A slow disk: partclone's progress creeps for ``write_tail`` seconds."""
        loop = asyncio.get_running_loop()
        start, ticks = loop.time(), 0
        while loop.time() < start + fake.write_tail:
            ticks += 1
            say(f"Elapsed: 00:00:0{ticks % 10}, Remaining: 00:00:01, Completed: {100.0 * number / PIECES:6.2f}%,"
                f" Rate:  {ticks % 100:2d}.00MB/min,")
            await asyncio.sleep(0.05)

    # -- wiring -----------------------------------------------------------------------------------------
    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Put the fakes where the jobs look them up."""
        monkeypatch.setattr("imaging.jobs.load.Power", self.power)
        monkeypatch.setattr("imaging.jobs.save.Power", self.power)
        monkeypatch.setattr("imaging.power.reset.any_port_answers", self.any_port_answers)
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
    return JobState(NextBoot.single(bed.config_dir, dict.fromkeys(bed.nodes, bed.imaging_os)))


def links_left(bed: FakeTestbed) -> list[str]:
    """The hosts whose next-boot link exists."""
    return [fake.host for fake in bed.nodes.values() if bed.link(fake).is_symlink()]


def in_order(entries: list[Entry], *wanted: Entry) -> bool:
    """True when ``wanted`` occur in ``entries`` in this order (others may come between)."""
    rest = iter(entries)
    return all(any(entry == one for entry in rest) for one in wanted)
