"""A load whose image expands 1000x on the nodes: 8 nodes with 2 GiB disks load a raw
``.img.zst`` of about 70 KiB, made the way ``imaging-save --raw`` makes one (``zstd -q -c
-1`` of a stream: the frame does not declare its content size) from the testbed's default
image followed by zeros.

The sender has sent everything within a second; each receiver then decompresses and
writes 2 GiB for tens of seconds.  The load must succeed because each receiver is judged
by its own progress (``[nodes] stall_timeout``), not by the sender's end.  The test runs
the load with a short ``stall_timeout`` and checks the receivers kept writing for several
times that after the sender ended, so that a rule "fail some fixed time after the sender
ended" cannot pass it.  Every disk is then compared byte for byte with the image's
decompressed bytes (decompressed once, the 8 disks read alongside).

The disks become fully allocated (8 x 2 GiB): they and the image are deleted at the end.
"""

from __future__ import annotations

import asyncio
import io
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from imaging.imagecheck import check_zstd
from imaging_testbed import files
from imaging_testbed.procs import run
from imaging_testbed.programs import DD, SH, ZSTD
from tests.testbed.conftest import Testbed, started_testbed
from tests.testbed.product import product

NODES = 8
DISK_MIB = 2048
DISK_BYTES = DISK_MIB << 20
STALL_TIMEOUT = 5  # [nodes] stall_timeout of the load: seconds without progress before a node fails
CHUNK = 8 << 20  # bytes compared at a time
SAMPLE_EVERY = 0.1  # seconds between two looks at the disks


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A testbed of 8 nodes with 2 GiB disks; its disks and images are deleted after it is down."""
    directory = tmp_path_factory.mktemp("expandbed")
    try:
        with started_testbed(directory, NODES, disk_mib=DISK_MIB) as testbed:
            yield testbed
    finally:
        for pattern in ("disks/*", "images/*", "cache/*"):
            for path in directory.glob(pattern):
                if path.is_file() or path.is_symlink():
                    path.unlink()


async def make_expanding_image(default: Path, target: Path, size: int) -> int:
    """Write at ``target`` a raw image of a ``size``-byte disk: the bytes ``default`` (a ``.img.zst``)
    decompresses to, then zeros, compressed as ``imaging-save --raw`` compresses a disk (``zstd -q -c
    -1`` of a stream, so the frame does not declare its content size).  Returns the image's size."""
    head = check_zstd(default).size  # make_image compresses a file: its frame says what it holds
    assert head is not None and head < size, f"{default} holds {head} bytes"
    script = (f"{{ {ZSTD} -d -q -c {shlex.quote(str(default))};"
              f" {DD} if=/dev/zero bs=1M count={size - head} iflag=count_bytes status=none; }}"
              f" | {ZSTD} -q -c -1 > {shlex.quote(str(target))}")
    await run(SH, "-c", script)
    return target.stat().st_size


def senders(bed: Testbed) -> list[str]:
    """udp-sender processes serving this testbed's images (their command lines name them)."""
    found = subprocess.run(["pgrep", "-af", "udp-sender"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if str(bed.dir) in line]


def fs_used(path: Path) -> int:
    """Bytes used on the file system that holds ``path``."""
    fs = os.statvfs(path)
    return (fs.f_blocks - fs.f_bfree) * fs.f_frsize


def allocated(path: Path) -> int:
    """Bytes the file holds on the host's disk: what has been written to a sparse disk file
    (whether the receiver truncated it first or writes it in place)."""
    return os.stat(path).st_blocks * 512


@dataclass
class Watch:
    """What a background thread sees while the load runs: how much each disk holds over time
    (wall-clock times, to be set beside the transport logs' modification times)."""

    disks: Sequence[Path]
    fs: Path  # a path on the file system whose use is followed
    times: list[float] = field(default_factory=list)
    written: list[list[int]] = field(default_factory=list)  # per sample, per disk
    peak_used: int = 0  # bytes used on that file system, at most
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Sample until told to stop."""
        while not self.stop.is_set():
            self.times.append(time.time())
            self.written.append([allocated(disk) for disk in self.disks])
            self.peak_used = max(self.peak_used, fs_used(self.fs))
            self.stop.wait(SAMPLE_EVERY)

    def written_at(self, moment: float) -> int:
        """What all disks held at the last sample before ``moment``."""
        return sum(self.written[max(i for i, t in enumerate(self.times) if t <= moment)])

    def longest_pause(self, start: float) -> float:
        """The longest time after ``start`` during which a disk not yet full did not grow."""
        longest = 0.0
        for disk in range(len(self.disks)):
            since = start
            for i in range(1, len(self.times)):
                if self.times[i] < start:
                    continue
                if self.written[i][disk] != self.written[i - 1][disk] or self.written[i][disk] >= DISK_BYTES:
                    longest = max(longest, self.times[i] - since)
                    since = self.times[i]
        return longest


def read_full(handle: io.FileIO, buffer: bytearray) -> int:
    """Fill ``buffer`` from ``handle`` (short only at the end); how many bytes were read."""
    view = memoryview(buffer)
    filled = 0
    while filled < len(buffer) and (count := handle.readinto(view[filled:])):
        filled += count
    view.release()
    return filled


def differing_disks(image: Path, disks: Sequence[Path]) -> tuple[list[Path], int]:
    """Compare every disk with the bytes ``image`` decompresses to (decompressed once, the disks
    read alongside by one thread per core, into buffers allocated once); the disks that differ or are
    not the image's size, and that size."""
    differ: set[Path] = set()
    total = 0
    expected = bytearray(CHUNK)
    buffers = [bytearray(CHUNK) for _ in disks]
    with (subprocess.Popen([ZSTD, "-d", "-q", "-c", str(image)], stdout=subprocess.PIPE) as zstd,
          ExitStack() as stack, ThreadPoolExecutor(os.cpu_count() or 2) as pool):
        assert zstd.stdout is not None
        handles = [stack.enter_context(io.FileIO(disk)) for disk in disks]
        decompressed = stack.enter_context(io.FileIO(zstd.stdout.fileno(), closefd=False))
        while count := read_full(decompressed, expected):
            for disk, buffer, got in zip(disks, buffers, pool.map(read_full, handles, buffers), strict=True):
                # bytearrays compare with memcmp (memoryviews, byte by byte)
                if got != count or (buffer != expected if count == CHUNK else buffer[:count] != expected[:count]):
                    differ.add(disk)
            total += count
        assert zstd.wait() == 0, "zstd could not decompress the image"
    differ.update(disk for disk in disks if disk.stat().st_size != total)
    return sorted(differ), total


def test_load_of_an_image_expanding_1000x_on_8_nodes(bed: Testbed, tmp_path: Path) -> None:
    """A disk saved raw into a few tens of KiB (as a 4 GiB one is into ~140 KiB), loaded on 8 nodes at once."""
    image = bed.dir / "images" / "big.img.zst"
    started = time.monotonic()
    size = asyncio.run(make_expanding_image(bed.dir / "images" / f"{files.DEFAULT_IMAGE}.img.zst", image,
                                            DISK_BYTES))
    made = time.monotonic() - started
    assert size * 1000 <= DISK_BYTES, f"the image ({size} bytes) does not expand 1000x"
    extra = tmp_path / "stall.conf"
    extra.write_text(f"[nodes]\nstall_timeout = {STALL_TIMEOUT}\n")
    disks = [bed.disk(number) for number in range(1, NODES + 1)]
    used_before = fs_used(bed.dir)
    watch = Watch(disks, bed.dir)
    sampler = threading.Thread(target=watch.run, daemon=True)
    sampler.start()
    try:
        load = product(bed, "load", "--config", str(extra), "-i", "big", "--json", "-t", "240", "-a",
                       timeout=260)
    finally:
        watch.stop.set()
        sampler.join()
    assert load.code == 0, load.out[-3000:] + load.err
    summary = {r["node"]: r for r in load.json_lines()[-1]["summary"]}
    assert sorted(summary) == [f"fit{n:02d}" for n in range(1, NODES + 1)]
    for name, result in summary.items():
        assert result["ok"] and result["detail"].startswith("loaded big"), (name, result)
    assert senders(bed) == []

    # the stall rule is what let it pass: every receiver wrote for a long time after the sender ended
    # (a log's last change: the sender's "Transfer complete.", a receiver's exit status)
    logs = max(path for path in (bed.dir / "transport-logs").iterdir() if path.is_dir())
    sender_log = next(logs.glob("sender-*.log"))
    assert "Transfer complete" in sender_log.read_text(), sender_log.read_text()
    sender_end = sender_log.stat().st_mtime
    receivers_end = {}
    for name in summary:
        receiver_log = logs / f"{name}.log"
        text = receiver_log.read_text()
        assert f"{DISK_BYTES} bytes" in text, text[-500:]  # zstd's last word: all of it written
        assert text.rstrip().endswith("exit status 0"), text[-500:]
        receivers_end[name] = receiver_log.stat().st_mtime
    at_sender_end = watch.written_at(sender_end)
    assert at_sender_end < NODES * DISK_BYTES // 4, f"{at_sender_end >> 20} MiB written when the sender ended"
    tails = {name: end - sender_end for name, end in receivers_end.items()}
    assert min(tails.values()) > 2 * STALL_TIMEOUT, f"seconds each receiver ran after the sender ended: {tails}"
    pause = watch.longest_pause(sender_end)

    started = time.monotonic()
    differ, compared = differing_disks(image, disks)
    checked = time.monotonic() - started
    assert compared == DISK_BYTES
    assert differ == [], f"disks that do not hold the image: {differ}"
    print(f"\nimage {size} bytes (x{DISK_BYTES / size:.0f}) made in {made:.1f} s; load {load.seconds:.1f} s;"
          f" {at_sender_end >> 20} MiB on the disks when the sender ended, the receivers ended"
          f" {min(tails.values()):.1f} to {max(tails.values()):.1f} s later (longest pause of a disk"
          f" {pause:.1f} s); 8 disks compared in {checked:.1f} s; peak space used by the test"
          f" {(watch.peak_used - used_before) / 2**30:.1f} GiB")
