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
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from .base import Channel, Progress, ProgressParser, SendPlan, Transport, pipeline

ZSTD_MAGIC = 0xFD2FB528


def decompressed_size(path: Path) -> int | None:
    """The content size a ``.zst`` file's first frame header declares (None when absent);
    a raw image's own size."""
    if not path.name.endswith(".zst"):
        return path.stat().st_size
    with open(path, "rb") as handle:
        header = handle.read(18)
    if len(header) < 6 or int.from_bytes(header[:4], "little") != ZSTD_MAGIC:
        return None
    descriptor = header[4]
    single_segment = bool(descriptor & 0x20)
    offset = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 0x03]
    size_bytes = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    if size_bytes == 0 or len(header) < offset + size_bytes:
        return None
    value = int.from_bytes(header[offset:offset + size_bytes], "little")
    return value + 256 if size_bytes == 2 else value


BYTES_RE = re.compile(r"bytes=\s*(\d[\d ]*?)\s*\(\s*([\d.]+)\s*Mbps\)")
FAILURES = (
    (re.compile(r"No space left|Short write|write error", re.IGNORECASE), "disk write failed: {line}"),
    (re.compile(r"[Tt]imeout|timed out"), "transfer timed out: {line}"),
    (re.compile(r"Dropping client|Disconnecting"), "dropped by the sender: {line}"),
    (re.compile(r"zstd: .*(error|Error)"), "decompression failed: {line}"),
)


class UdpcastParser(ProgressParser):
    """udp-receiver prints ``bytes= 10 705 968  (196.20 Mbps)`` (digits grouped by
    spaces, lines separated by ``\\r``) and ends with ``Transfer complete.``."""

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.bytes = 0

    def feed(self, line: str) -> Progress | None:
        """Digest one line of udp-receiver output."""
        found = BYTES_RE.search(line)
        if found:
            self.bytes = int(found.group(1).replace(" ", ""))
            percent = min(100.0, 100.0 * self.bytes / self.image_size) if self.image_size else None
            return Progress(percent, f"{found.group(2)} Mbps")
        if "Transfer complete" in line:
            self.finished = True
            return Progress(100.0, "transfer complete")
        for pattern, message in FAILURES:
            if pattern.search(line) and self.failure is None:
                self.failure = message.format(line=line.strip())
        return None


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
    extensions = (".img.zst", ".img")
    save_extension = ".img.zst"

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
                         image: Path) -> str:
        """``udp-receiver --file DISK``, through ``zstd -d`` for a ``.img.zst`` image."""
        argv = [self.receiver, "--nokbd", "--interface", node_ip, "--portbase", str(channel.port),
                "--file", disk, *shlex.split(self.receiver_options)]
        if image.name.endswith(".zst"):
            argv[1:1] = ["--pipe", "zstd -d -q"]
        return shlex.join(argv)

    async def disk_bytes_needed(self, image: Path) -> int | None:
        """What the image fills on a disk: its raw size, or the zstd frame's content size."""
        return decompressed_size(image)

    def parser(self, image_size: int) -> UdpcastParser:
        """A parser that reports percent of the image's bytes received."""
        return UdpcastParser(image_size)

    def node_programs(self, image: Path | None) -> tuple[str, ...]:
        """udp-receiver (and zstd for a ``.img.zst``) to load; zstd and netcat to save."""
        if image is None:
            return ("zstd", self.netcat)
        return (self.receiver, "zstd") if image.name.endswith(".zst") else (self.receiver,)

    def save_command(self, disk: str, server_ip: str, port: int) -> str:
        """``zstd -c < DISK | nc SERVER PORT``: the disk, compressed, to the tool's receiver.

        The disk is zstd's standard input: given as a file name, a block
        device is "not a regular file" to zstd, which skips it."""
        return pipeline(f"zstd -q -c -1 < {shlex.quote(disk)}",
                        f"{shlex.quote(self.netcat)} -q 0 {shlex.quote(server_ip)} {port}")
