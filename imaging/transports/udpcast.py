"""udpcast (Debian's ``udp-sender`` / ``udp-receiver``): raw ``.img`` or zstd ``.img.zst`` images.

The sender waits for ``--min-receivers`` (the nodes of the session) but at most
``--max-wait`` seconds after the first one joined, so a node that never comes
does not block the others; ``--retries-until-drop`` drops a receiver that dies
mid-transfer (by default one dead receiver stalls everyone).  Measured on the
emulated testbed (8 receivers, 64 MiB): each retry costs about a second once a
receiver is dead; 8 retries dropped every receiver when two CPU hogs starved
them, 15 did not (14.5 s for the load, against 7.7 s unloaded).
``--rexmit-hello-interval 100`` starts the transfer within milliseconds of the
last join.  A ``.img.zst`` image travels compressed and is decompressed on the
node by ``zstd -d`` through ``--pipe``.

A ``.ptcl.zst`` image is file-system-aware (:mod:`imaging.partclone`): what
the disk's file systems use, with its layout at the end of the file; the
receiver's output goes through ``zstd -d`` into the restore, which writes the
partition table, then each partition at its offset.  ``imaging-save`` writes
that format by default, raw ``.img.zst`` with ``--raw``.
"""

from __future__ import annotations

import asyncio
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from .. import partclone
from ..config import Config, Key
from ..disklayout import Layout, read_layout
from ..imagecheck import check_zstd
from .base import Channel, Progress, ProgressParser, SendPlan, Transport, pipeline

LAYOUT_EXTENSION = ".ptcl.zst"


def decompressed_size(path: Path) -> int | None:
    """What a ``.zst`` file's frames declare they hold (None when one does not say); a raw
    image's own size.  ImageError when the file is not whole (see :mod:`imaging.imagecheck`)."""
    if not path.name.endswith(".zst"):
        return path.stat().st_size
    return check_zstd(path).size


BYTES_RE = re.compile(r"bytes=\s*(\d[\d ]*?)\s*\(\s*([\d.]+)\s*Mbps\)")
# zstd -d --progress: "/*stdin*\  : 9.12 MiB..." as it writes, "/*stdin*\  : 314572800 bytes" at the end
# (zstd 1.4 says "Decoded : 9 MB...")
DECODED_RE = re.compile(r"(?:\*stdin\*\\|Decoded)\s*:\s*([\d.]+)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB|bytes)\b")
UNITS = {"B": 1, "bytes": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40,
         "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
FAILURES = (
    (re.compile(r"No space left|Short write|write error", re.IGNORECASE), "disk write failed: {line}"),
    (re.compile(r"[Tt]imeout|timed out"), "transfer timed out: {line}"),
    (re.compile(r"Dropping client|Disconnecting"), "dropped by the sender: {line}"),
    (re.compile(r"zstd: .*(error|Error)"), "decompression failed: {line}"),
)


class UdpcastParser(ProgressParser):
    """udp-receiver prints ``bytes= 10 705 968  (196.20 Mbps)`` (digits grouped by
    spaces, lines separated by ``\\r``) and ends with ``Transfer complete.``; a
    compressed image's ``zstd -d --progress`` interleaves how much it has written.

    The percent is of the disk written when the image is compressed and its content
    size is known (a receiver may decompress for minutes after the last byte came),
    else of the image received."""

    def __init__(self, image_size: int, content_size: int | None = None) -> None:
        super().__init__()
        self.image_size = image_size
        self.content_size = content_size
        self.bytes = 0
        self.decoded = 0

    def _progressed(self) -> None:
        self.work = self.bytes + self.decoded

    def feed(self, line: str) -> Progress | None:
        """Digest one line of udp-receiver (or zstd) output."""
        found = BYTES_RE.search(line)
        if found:
            self.bytes = int(found.group(1).replace(" ", ""))
            self._progressed()
            if self.decoded and self.content_size:
                return None  # the disk's progress is zstd's
            percent = min(100.0, 100.0 * self.bytes / self.image_size) if self.image_size else None
            return Progress(percent, f"{found.group(2)} Mbps")
        found = DECODED_RE.search(line)
        if found:
            self.decoded = max(self.decoded, int(float(found.group(1)) * UNITS[found.group(2)]))
            self._progressed()
            if not self.content_size:
                return None
            return Progress(min(100.0, 100.0 * self.decoded / self.content_size),
                            f"{self.decoded >> 20} MiB written")
        if "Transfer complete" in line:
            self.finished = True
            return Progress(100.0, "transfer complete")
        for pattern, message in FAILURES:
            if pattern.search(line) and self.failure is None:
                self.failure = message.format(line=line.strip())
        return None


class LayoutParser(UdpcastParser):
    """A file-system-aware load: udp-receiver's and zstd's output for liveness, the restore's markers and
    partclone's progress for the percent (each partition weighted by the bytes it writes) and to name the
    partition a failure happened in."""

    def __init__(self, image_size: int, layout: Layout) -> None:
        super().__init__(image_size, None)
        self.steps: partclone.Steps = partclone.Steps(layout, partclone.restore_weights(layout))

    def feed(self, line: str) -> Progress | None:
        """Digest one line of the receiver, zstd or the restore."""
        percent = self.steps.feed(line)
        if self.steps.failure and self.failure is None:
            self.failure = f"restore failed: {self.steps.failure}"
        if percent is not None:
            self.work += 1  # a new step, or partclone's progress: the restore is alive
            return Progress(percent, f"writing {self.steps.where()}")
        progress = super().feed(line)
        if self.failure and self.steps.current and "(" not in self.failure:
            self.failure = f"{self.failure} ({self.steps.where()})"
        return None if progress is None or progress.percent is None or self.steps.current else progress

    def _progressed(self) -> None:
        self.work = max(self.work, self.bytes + self.decoded)


@dataclass(frozen=True)
class Udpcast(Transport):
    """The udpcast transport."""

    sender: str = "udp-sender"
    receiver: str = "udp-receiver"
    sender_options: str = ""
    receiver_options: str = ""
    netcat: str = "nc"
    retries_until_drop: int = 15

    name = "udpcast"
    KEYS = (
        Key("udpcast", "sender", "word", "udp-sender", "the udpcast sender program, on the server"),
        Key("udpcast", "receiver", "word", "udp-receiver", "the udpcast receiver, run on the node"),
        Key("udpcast", "retries_until_drop", "int", "15",
            "unanswered retransmissions before udp-sender drops a receiver: a dead receiver stalls the"
            " others about that many seconds; too few drops receivers that are only slow", low=1, high=1000),
        Key("udpcast", "sender_options", "words", "", "extra options given to udp-sender"),
        Key("udpcast", "receiver_options", "words", "", "extra options given to udp-receiver"),
    )
    save_extension = LAYOUT_EXTENSION
    raw_extension = ".img.zst"
    layout_extensions = (LAYOUT_EXTENSION,)

    @classmethod
    def from_config(cls, config: Config) -> Udpcast:
        """Programs and options from ``[udpcast]``."""
        return cls(sender=config.get_str("udpcast", "sender"), receiver=config.get_str("udpcast", "receiver"),
                   sender_options=config.get_str("udpcast", "sender_options"),
                   receiver_options=config.get_str("udpcast", "receiver_options"),
                   netcat=config.get_str("frisbee", "netcat"),
                   retries_until_drop=config.get_int("udpcast", "retries_until_drop"))

    @property
    def sender_program(self) -> str:
        """``udp-sender`` or what the config names."""
        return self.sender

    def sender_argv(self, plan: SendPlan) -> list[str]:
        """``udp-sender --file IMAGE`` on the session's group and port, capped, waiting for its receivers."""
        return [
            self.sender, "--file", str(plan.image), "--nokbd", "--interface", plan.server_ip,
            "--mcast-data-address", plan.channel.group, "--portbase", str(plan.channel.port),
            "--max-bitrate", str(plan.bits_per_second),
            "--min-receivers", str(plan.receivers), "--max-wait", f"{plan.start_timeout:g}",
            "--rexmit-hello-interval", "100", "--retries-until-drop", str(self.retries_until_drop),
            *shlex.split(self.sender_options),
        ]

    def receiver_command(self, channel: Channel, server_ip: str, node_ip: str, disk: str,
                         image: Path, layout: Layout | None = None) -> str:
        """``udp-receiver --file DISK``, through ``zstd -d`` for a ``.img.zst`` image; for a file-system-aware
        image, ``udp-receiver | zstd -d | restore``."""
        if layout is not None:
            receive = shlex.join([self.receiver, "--nokbd", "--interface", node_ip, "--portbase", str(channel.port),
                                  *shlex.split(self.receiver_options)])
            return pipeline(receive, "zstd -d -q --progress | " + partclone.restore_consumer(layout, disk))
        argv = [self.receiver, "--nokbd", "--interface", node_ip, "--portbase", str(channel.port),
                "--file", disk, *shlex.split(self.receiver_options)]
        if image.name.endswith(".zst"):
            argv[1:1] = ["--pipe", "zstd -d -q --progress"]  # what it has written: the load's liveness
        return shlex.join(argv)

    async def disk_bytes_needed(self, image: Path) -> int | None:
        """What the image fills on a disk: its raw size, or the zstd frames' content size (read in a
        thread: the frames of a large image are walked); a file-system-aware image's layout says."""
        if self.records_layout(image.name):
            return (await asyncio.to_thread(read_layout, image)).needed
        return await asyncio.to_thread(decompressed_size, image)

    def parser(self, image_size: int, content_size: int | None = None,
               layout: Layout | None = None) -> UdpcastParser:
        """A parser that reports percent of the disk written, or of the image received."""
        if layout is not None:
            return LayoutParser(image_size, layout)
        return UdpcastParser(image_size, content_size)

    def save_parser(self, layout: Layout) -> partclone.SaveParser:
        """A parser of the file-system-aware save's output."""
        return partclone.SaveParser(layout)

    def node_programs(self, image: Path | None, layout: Layout | None = None) -> tuple[str, ...]:
        """udp-receiver (and zstd for a ``.img.zst``; the restore's programs for a file-system-aware image)
        to load; zstd and netcat to save (and what reads the disk's layout, and its partclone programs)."""
        if image is None:
            if layout is not None:
                return (*partclone.PROBE_PROGRAMS, "dd", "zstd", self.netcat, *partclone.save_programs(layout))
            return ("zstd", self.netcat)
        if layout is not None:
            return (self.receiver, "zstd", *partclone.restore_programs(layout))
        return (self.receiver, "zstd") if image.name.endswith(".zst") else (self.receiver,)

    def save_command(self, disk: str, server_ip: str, port: int, layout: Layout | None = None,
                     disk_size: int | None = None, raw: bool = False) -> str:
        """``zstd -c < DISK | nc SERVER PORT``: the disk, compressed, to the tool's receiver; with the disk's
        ``layout``, the partition table's area then each partition's partclone image, compressed (without
        one, the raw disk whatever ``raw`` says).

        The disk is zstd's standard input: given as a file name, a block
        device is "not a regular file" to zstd, which skips it."""
        send = f"{shlex.quote(self.netcat)} -q 0 {shlex.quote(server_ip)} {port}"
        if layout is not None:
            return pipeline(partclone.save_producer(layout, disk), f"zstd -q -c -1 | {send}")
        # the size in the frame header: a load can then tell the percent of the disk written
        size = f" --stream-size={disk_size}" if disk_size else ""
        return pipeline(f"zstd -q -c -1{size} < {shlex.quote(disk)}", send)
