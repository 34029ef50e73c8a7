"""frisbee (Emulab's ``frisbeed`` / ``frisbee`` / ``imagezip``): ``.ndz`` images.

The client writes everything to its standard error (the node's telnet session
carries it; ``tests/data/frisbee/`` holds real logs)::

    Joined the team after 0 sec. ID is 1004524055. File is 101 chunks (105906176 bytes)
    ...................................................................   5     34
    ..................................
    Client 1004524055 Performance:
    …
    Left the team after 6 seconds on the field!
    Wrote 134217728 bytes (134217728 actual)

one ``.`` per 1 MiB chunk written (the line ends only after 67 of them, with the
elapsed seconds and the chunks still to come: the line is followed as it
grows), then the statistics.  A disk error is ``write error: <reason>`` (or
``Short write!``); the exit status is the verdict.  Builds used on some
testbeds print ``Progress: 42%`` lines, which are followed too.

How much of a disk an image covers is asked of Emulab's ``imagedump`` on the
server (``covered sector range: [0-N]``, 512-byte sectors), else read from the
image's own chunk headers; each node's disk is checked against it before
anything is written.  ``frisbeed`` runs with ``-d``: its log then goes to the
sender's log file instead of syslog.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, Key
from ..disklayout import Layout
from ..imagecheck import check_ndz
from .base import Channel, Progress, ProgressParser, SendPlan, Transport, pipeline

JOINED_RE = re.compile(r"Joined the team after .*File is (\d+) chunks")
DOTS_RE = re.compile(r"^(\.*)\s*(\d+)\s+(\d+)\s*$")
PERCENT_RE = re.compile(r"Progress:\s*([\d.]+)\s*%")
WROTE_RE = re.compile(r"Wrote (\d+) bytes \((\d+) actual\)")
LEFT_RE = re.compile(r"Left the team after (\d+) seconds")
COVERED_RE = re.compile(r"covered sector range: \[(\d+)-(\d+)\]")
# what the client says when it cannot write the disk (perror's "<what>: <reason>")
FAILURES = ("write error:", "Short write", "Writing Zeros:", "seek failed:", "opening output file:", "fsync:")
SECTOR = 512
IMAGEDUMP_TIMEOUT = 60.0  # seconds: imagedump reads the whole image

log = logging.getLogger(__name__)


def covered_bytes(imagedump_output: str) -> int | None:
    """The bytes of disk an image covers, from ``imagedump``'s report; None without the line."""
    found = COVERED_RE.search(imagedump_output)
    return (int(found.group(2)) + 1) * SECTOR if found else None


class FrisbeeParser(ProgressParser):
    """Follows a frisbee client's output: the chunk count it joined for, one ``.`` per chunk written
    (followed as the line grows: a line ends only after 67), the final ``Wrote`` and ``Left``."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: int | None = None
        self.dots = 0  # on ended lines
        self.line_dots = 0  # on the line still being written
        self.written: int | None = None
        self.best = 0.0  # the highest percent seen

    def _percent(self) -> float | None:
        return min(100.0, 100.0 * (self.dots + self.line_dots) / self.chunks) if self.chunks else None

    def _update(self, progress: Progress | None) -> Progress | None:
        if progress is not None and progress.percent is not None:
            self.best = max(self.best, progress.percent)
        self.work = self.dots + self.line_dots + int(self.best * 100) + (self.written or 0)
        return progress

    def feed(self, line: str) -> Progress | None:
        """Digest one line of frisbee output."""
        return self._update(self._feed(line.strip()))

    def partial(self, text: str) -> Progress | None:
        """The dots of the line being written so far."""
        stripped = text.strip()
        if not stripped or set(stripped) != {"."}:
            return None
        self.line_dots = len(stripped)
        percent = self._percent()
        return self._update(Progress(percent) if percent is not None else None)

    def _dots(self, count: int, seconds: str = "") -> Progress | None:
        self.dots += count
        self.line_dots = 0
        percent = self._percent()
        return Progress(percent, f"{seconds}s" if seconds else "") if percent is not None else None

    def _feed(self, stripped: str) -> Progress | None:
        if found := JOINED_RE.search(stripped):
            self.chunks = int(found.group(1))
            return Progress(0.0, f"joined, {self.chunks} chunks")
        if found := DOTS_RE.match(stripped):
            return self._dots(len(found.group(1)), found.group(2))
        if stripped and set(stripped) == {"."}:
            return self._dots(len(stripped))
        if found := PERCENT_RE.search(stripped):
            return Progress(float(found.group(1)))
        if found := WROTE_RE.search(stripped):
            self.written = int(found.group(1))
            return Progress(100.0, f"wrote {self.written} bytes")
        if LEFT_RE.search(stripped):
            self.finished = True
            return Progress(100.0, "left the team")
        if self.failure is None and any(sign in stripped for sign in FAILURES):
            self.failure = f"disk write failed: {stripped}"
        return None


@dataclass(frozen=True)
class Frisbee(Transport):
    """The frisbee transport."""

    server: str = "frisbeed"
    server_options: str = ""
    client: str = "frisbee"
    imagezip: str = "imagezip"
    netcat: str = "nc"
    imagedump: str = "imagedump"

    name = "frisbee"
    KEYS = (
        Key("frisbee", "server", "word", "frisbeed", "the frisbee multicast server program"),
        Key("frisbee", "server_options", "words", "", "extra options given to the frisbee server"),
        Key("frisbee", "client", "word", "frisbee", "the frisbee client, run on the node"),
        Key("frisbee", "imagezip", "word", "imagezip", "the disk compressor run on the node by save"),
        Key("frisbee", "netcat", "word", "nc", "netcat on the node, used by save"),
        Key("frisbee", "imagedump", "word", "imagedump",
            "Emulab's image inspector on the server: when installed, disks are checked against the image"),
    )
    save_extension = ".ndz"
    raw_extension = ".ndz"  # imagezip -r: the same format, every sector in it

    @classmethod
    def from_config(cls, config: Config) -> Frisbee:
        """Programs and options from ``[frisbee]``."""
        return cls(server=config.get_str("frisbee", "server"),
                   server_options=config.get_str("frisbee", "server_options"),
                   client=config.get_str("frisbee", "client"), imagezip=config.get_str("frisbee", "imagezip"),
                   netcat=config.get_str("frisbee", "netcat"), imagedump=config.get_str("frisbee", "imagedump"))

    @property
    def sender_program(self) -> str:
        """``frisbeed`` or what the config names."""
        return self.server

    def sender_argv(self, plan: SendPlan) -> list[str]:
        """``frisbeed -d -i SERVER -m GROUP -p PORT -W BITS [options] IMAGE`` (``-d``: its log on its output,
        which the sender's log file keeps, not in syslog)."""
        return [self.server, "-d", "-i", plan.server_ip, "-m", plan.channel.group, "-p", str(plan.channel.port),
                "-W", str(plan.bits_per_second), *shlex.split(self.server_options), str(plan.image)]

    def receiver_command(self, channel: Channel, server_ip: str, node_ip: str, disk: str,
                         image: Path, layout: Layout | None = None) -> str:
        """``frisbee -i NODE -m GROUP -p PORT DISK``."""
        return shlex.join([self.client, "-i", node_ip, "-m", channel.group, "-p", str(channel.port), disk])

    async def disk_bytes_needed(self, image: Path) -> int | None:
        """The disk an image covers, asked of ``imagedump`` on the server, else read from the image's chunk
        headers (a version 1 image does not say: None, no check)."""
        needed = await self._imagedump(image)
        if needed is None:
            needed = (await asyncio.to_thread(check_ndz, image)).size
        return needed

    async def _imagedump(self, image: Path) -> int | None:
        """What ``imagedump`` says the image covers; None when it is not installed or says nothing usable
        (logged)."""
        program = shutil.which(self.imagedump)
        if program is None:
            return None
        proc = await asyncio.create_subprocess_exec(program, str(image), stdin=subprocess.DEVNULL,
                                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            async with asyncio.timeout(IMAGEDUMP_TIMEOUT):
                out, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.warning("%s %s took more than %g s", program, image, IMAGEDUMP_TIMEOUT)
            return None
        needed = covered_bytes(out.decode(errors="replace")) if proc.returncode == 0 else None
        if needed is None:
            log.warning("%s %s (exit %s) gave no covered sector range", program, image, proc.returncode)
        return needed

    def parser(self, image_size: int, content_size: int | None = None,
               layout: Layout | None = None) -> FrisbeeParser:
        """A parser of the client's output (frisbee tells its own chunk count)."""
        return FrisbeeParser()

    def node_programs(self, image: Path | None, layout: Layout | None = None) -> tuple[str, ...]:
        """The frisbee client to load; imagezip and netcat to save."""
        return (self.client,) if image is not None else (self.imagezip, self.netcat)

    def save_command(self, disk: str, server_ip: str, port: int, layout: Layout | None = None,
                     disk_size: int | None = None, raw: bool = False) -> str:
        """``imagezip -z1 DISK - | nc SERVER PORT``: imagezip reads the partition table and saves only the
        blocks each file system uses (a partition of a kind it does not know whole); ``-r`` with ``raw``:
        every sector.  imagezip's level 1 is zlib's fastest, as zstd -1 for udpcast."""
        mode = " -r" if raw else ""
        return pipeline(f"{shlex.quote(self.imagezip)}{mode} -z1 {shlex.quote(disk)} -",
                        f"{shlex.quote(self.netcat)} -q 0 {shlex.quote(server_ip)} {port}")
