"""frisbee (Emulab's ``frisbeed`` / ``frisbee`` / ``imagezip``): ``.ndz`` images.

The client prints, on its way::

    Joined the team after 0 sec. ID is 1804289383. File is 203 chunks (206834 blocks)
    ..................................................................   3    136

(one ``.`` per chunk written and, after every 67 dots, the elapsed seconds and
the chunks still to come), then a ``Client <id> Performance:`` block and
``Left the team after 9 seconds on the field!``.  Builds used on some testbeds
print ``Progress: 42%`` lines and a final ``Wrote <n> bytes (<m> actual)``;
``Short write`` means a disk error.  The exit status is the verdict.

Where Emulab's ``imagedump`` is installed on the server, it tells how much of
a disk an image covers (``covered sector range: [0-N]``, 512-byte sectors):
each node's disk is checked against it before anything is written.
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

from ..config import Config
from ..disklayout import Layout
from .base import Channel, Progress, ProgressParser, SendPlan, Transport, pipeline

JOINED_RE = re.compile(r"Joined the team after .*File is (\d+) chunks")
DOTS_RE = re.compile(r"^(\.*)\s*(\d+)\s+(\d+)\s*$")
PERCENT_RE = re.compile(r"Progress:\s*([\d.]+)\s*%")
WROTE_RE = re.compile(r"Wrote (\d+) bytes \((\d+) actual\)")
LEFT_RE = re.compile(r"Left the team after (\d+) seconds")
COVERED_RE = re.compile(r"covered sector range: \[(\d+)-(\d+)\]")
SECTOR = 512
IMAGEDUMP_TIMEOUT = 60.0  # seconds: imagedump reads the whole image

log = logging.getLogger(__name__)


def covered_bytes(imagedump_output: str) -> int | None:
    """The bytes of disk an image covers, from ``imagedump``'s report; None without the line."""
    found = COVERED_RE.search(imagedump_output)
    return (int(found.group(2)) + 1) * SECTOR if found else None


class FrisbeeParser(ProgressParser):
    """Follows a frisbee client's output."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: int | None = None
        self.dots = 0
        self.written: int | None = None
        self.best = 0.0  # the highest percent seen

    def _percent_of_dots(self) -> float | None:
        return min(100.0, 100.0 * self.dots / self.chunks) if self.chunks else None

    def feed(self, line: str) -> Progress | None:
        """Digest one line of frisbee output."""
        progress = self._feed(line.strip())
        if progress is not None and progress.percent is not None:
            self.best = max(self.best, progress.percent)
        self.work = self.dots + int(self.best * 100) + (self.written or 0)
        return progress

    def _feed(self, stripped: str) -> Progress | None:
        if found := JOINED_RE.search(stripped):
            self.chunks = int(found.group(1))
            return Progress(0.0, f"joined, {self.chunks} chunks")
        if found := DOTS_RE.match(stripped):
            self.dots += len(found.group(1))
            if self.chunks:
                remaining = max(0, int(found.group(3)) - 1)  # printed before the chunk is counted
                return Progress(100.0 * (1 - remaining / self.chunks), f"{found.group(2)}s")
            return None
        if stripped and set(stripped) == {"."}:
            self.dots += len(stripped)
            percent = self._percent_of_dots()
            return Progress(percent) if percent is not None else None
        if found := PERCENT_RE.search(stripped):
            return Progress(float(found.group(1)))
        if found := WROTE_RE.search(stripped):
            self.written = int(found.group(1))
            return Progress(100.0, f"wrote {self.written} bytes")
        if LEFT_RE.search(stripped):
            self.finished = True
            return Progress(100.0, "left the team")
        if "Short write" in stripped and self.failure is None:
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
    extensions = (".ndz",)
    save_extension = ".ndz"

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
        """``frisbeed -i SERVER -m GROUP -p PORT -W BITS [options] IMAGE``."""
        return [self.server, "-i", plan.server_ip, "-m", plan.channel.group, "-p", str(plan.channel.port),
                "-W", str(plan.bits_per_second), *shlex.split(self.server_options), str(plan.image)]

    def receiver_command(self, channel: Channel, server_ip: str, node_ip: str, disk: str,
                         image: Path, layout: Layout | None = None) -> str:
        """``frisbee -i NODE -m GROUP -p PORT DISK``."""
        return shlex.join([self.client, "-i", node_ip, "-m", channel.group, "-p", str(channel.port), disk])

    async def disk_bytes_needed(self, image: Path) -> int | None:
        """The disk an image covers, asked of ``imagedump`` on the server; None
        (no check) when it is not installed or says nothing usable (logged)."""
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
            log.warning("%s %s took more than %g s: no disk size check", program, image, IMAGEDUMP_TIMEOUT)
            return None
        needed = covered_bytes(out.decode(errors="replace")) if proc.returncode == 0 else None
        if needed is None:
            log.warning("%s %s (exit %s) gave no covered sector range: no disk size check", program, image,
                        proc.returncode)
        return needed

    def parser(self, image_size: int, content_size: int | None = None,
               layout: Layout | None = None) -> FrisbeeParser:
        """A parser of the client's output (frisbee tells its own chunk count)."""
        return FrisbeeParser()

    def node_programs(self, image: Path | None, layout: Layout | None = None) -> tuple[str, ...]:
        """The frisbee client to load; imagezip and netcat to save."""
        return (self.client,) if image is not None else (self.imagezip, self.netcat)

    def save_command(self, disk: str, server_ip: str, port: int, layout: Layout | None = None,
                     disk_size: int | None = None) -> str:
        """``imagezip -o -z1 DISK - | nc SERVER PORT``."""
        return pipeline(f"{shlex.quote(self.imagezip)} -o -z1 {shlex.quote(disk)} -",
                        f"{shlex.quote(self.netcat)} {shlex.quote(server_ip)} {port}")
