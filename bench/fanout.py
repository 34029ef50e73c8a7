#!/usr/bin/env python3
"""Multicast fan-out: how the time of ``imaging-load`` grows with the number of
nodes, side by side with sending the same image to the nodes one after the other.

One 64 MiB image of random bytes (raw ``.img``: nothing to compress, udpcast
sends all 64 MiB) is loaded with ``imaging-load -i random64 -b 100 -a --json``
(a 100 Mibit/s cap) on fresh emulated testbeds of 1, 8 and 32 nodes (80 MiB
disks).  For each load it prints the wall time of the command, the transfer
phase (from ``Starting transfer`` to ``Transfer complete.`` in the sender's log,
timestamped by polling the log every 10 ms; and, as a cross-check, from the first
``receiving`` event to the last node's 100 % in the ``--json`` events), the
payload throughput (64 MiB x 8 / transfer s) as a fraction of the cap
(100 x 2^20 bit/s), the share of the machine's CPU busy during the transfer,
how many nodes the JSON summary says succeeded, and how many disks really hold
the image (sha256 of the first 64 MiB of each disk file against the image's).
Ratios: wall(32)/wall(1) (target <= 1.10) and transfer(32)/transfer(1).

frisbee beside udpcast, in the same run on the same testbeds: the same 64 MiB
made a raw ``.ndz`` by Emulab's ``imagezip -r`` (nothing to compress either),
loaded with ``imaging-load --transport frisbee`` at the same cap, on 1, 8 and 32
nodes: ``frisbeed``'s log times its transfer, from the first client's ``joins``
to the last one's ``leaves``.  Ratios: frisbee / udpcast of the wall and
transfer times for each node count, and frisbee's own wall(32)/wall(1).

Baseline, on the 8-node testbed booted into the imaging OS: the same image sent
to the 8 nodes one after the other over TCP, ``nc -l -p PORT -d 1<>DISK`` run on
each node over telnet, fed from the server namespace by a Python sender paced
at the same 100 Mibit/s of payload (a token bucket; ``pv`` is not among the
project's Debian packages): ratio unicast(8)/multicast(8) of transfer times.
For information, the same 8 nodes uncapped (``-b 100000``; on 2 cores
udp-sender and the receivers are then CPU-bound) and unicast unthrottled; and
the 32 nodes once more with ``--config`` setting ``[udpcast] retries_until_drop
= 60`` (the default, 15, drops a dead receiver sooner; fewer than that drops
receivers that are only late when 32 of them share 2 cores).

Needs root (network namespaces), like the testbed.  Every testbed it starts is
torn down, whatever happens.  Takes about 2-3 minutes.  Run it from the checkout:

    .venv/bin/python bench/fanout.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from testbeds import in_server, lacks_root, product_env, temporary_testbed, wait_for_stage

from imaging_testbed import frisbee, pxe, state
from imaging_testbed.images import TestImage, make_image, sha256_file
from imaging_testbed.layout import Layout

BIN = Path(sys.executable).parent
IMAGE = "random64"
IMAGE_MIB = 64
IMAGE_BYTES = IMAGE_MIB << 20
CAP_MIBPS = 100
UNCAPPED_MIBPS = 100_000
SIZES = (1, 8, 32)
UNICAST_NODES = 8
DISK_MIB = 80
BOOT_DELAY = 0.3
LOAD_TIMEOUT = 120  # imaging-load's own deadline (-t)
COMMAND_TIMEOUT = 180.0  # after this we kill any command of this benchmark
POLL = 0.01  # seconds between two looks at the sender's log
TOLERANT_RETRIES = 60  # the informational 32-node run: [udpcast] retries_until_drop (default 15)
UNICAST_PORT = 5001
CHUNK = 64 * 1024
HELPER = "--unicast-helper"  # internal: the unicast sender, run in the server namespace


# --- testbeds --------------------------------------------------------------------------------------

def testbed(count: int, work: Path) -> AbstractContextManager[Layout]:
    """A testbed of ``count`` nodes with DISK_MIB disks in a fresh folder under ``work``, always torn down."""
    return temporary_testbed(count, prefix=f"fanout-{count}-", work=work, boot_delay=BOOT_DELAY, disk_mib=DISK_MIB)


def wipe_disks(layout: Layout) -> None:
    """Zero the first IMAGE_MIB of every disk in place (same inode: the nodes keep it bind-mounted),
    and flush it, so that the next check proves the next load and no write-back overlaps it."""
    zeros = bytes(1 << 20)
    for node in layout.nodes():
        with open(layout.disk_path(node), "r+b") as disk:
            for _ in range(IMAGE_MIB):
                disk.write(zeros)
    os.sync()


def disks_holding(layout: Layout, image: TestImage) -> int:
    """How many nodes' disks start with the image's bytes."""
    return sum(sha256_file(layout.disk_path(n), IMAGE_BYTES) == image.raw_sha256 for n in layout.nodes())


def machine_ticks() -> tuple[int, int]:
    """Busy and total CPU ticks of the whole machine so far (``/proc/stat``; idle and iowait are not busy)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])
    return total - fields[3] - fields[4], total


def busy_between(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The fraction of the machine's CPU (all cores) busy between two :func:`machine_ticks`."""
    return (after[0] - before[0]) / max(1, after[1] - before[1])


# --- one multicast load ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Markers:
    """What a transport's sender logs when the transfer starts, and when one receiver is done with it."""

    start: str
    done: str
    done_count: bool  # the transfer is complete once ``done`` was said once per node (else once)


MARKERS = {"udpcast": Markers("Starting transfer", "Transfer complete.", done_count=False),
           "frisbee": Markers(" joins ", " leaves at ", done_count=True)}


@dataclass
class SenderWatch:
    """When the sender's log said the transfer started and completed, with CPU ticks then."""

    logs: Path  # the product's transport-logs folder
    markers: Markers
    nodes: int
    offsets: dict[Path, int] = field(default_factory=dict)
    text: str = ""
    started: float | None = None
    completed: float | None = None
    ticks: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        """Skip what earlier loads logged: only what comes after counts."""
        self._read()
        self.text = ""

    def _read(self) -> None:
        for path in self.logs.rglob("sender-*.log"):
            offset = self.offsets.get(path, 0)
            with open(path, "rb") as handle:
                handle.seek(offset)
                gained = handle.read()
            self.offsets[path] = offset + len(gained)
            self.text += gained.decode(errors="replace")

    def look(self) -> None:
        """Read what the sender logs gained since the last look; timestamp the markers."""
        self._read()
        now = time.perf_counter()
        if self.started is None and self.markers.start in self.text:
            self.started = now
            self.ticks.append(machine_ticks())
        needed = self.nodes if self.markers.done_count else 1
        if self.started is not None and self.completed is None and self.text.count(self.markers.done) >= needed:
            self.completed = now
            self.ticks.append(machine_ticks())


@dataclass(frozen=True)
class LoadRun:
    """The figures of one load (multicast by the product, or the unicast baseline)."""

    label: str
    nodes: int
    mibps: int  # the cap; 0 = none
    wall: float
    transfer: float | None  # seconds of the transfer phase
    cross_check: float | None  # the same from the --json events (multicast) or the sequential loop (unicast)
    busy: float | None  # machine CPU share during the transfer (unicast: during the whole loop)
    succeeded: int
    disks_ok: int
    failures: list[str]


def event_transfer(events: list[dict[str, object]]) -> float | None:
    """From the first ``receiving`` event to the last node's ``receiving`` at 100 % (or,
    for a node whose last progress event came just short of it, its ``rebooting``)."""
    receiving = [e for e in events if e.get("phase") == "receiving"]
    finished: dict[str, float] = {}
    for event in events:
        percent = event.get("percent")
        if (event.get("phase") == "receiving" and isinstance(percent, int | float) and percent >= 100) \
                or event.get("phase") == "rebooting":
            finished.setdefault(str(event["node"]), float(str(event["time"])))
    if not receiving or not finished:
        return None
    return max(finished.values()) - min(float(str(e["time"])) for e in receiving)


async def run_load(layout: Layout, mibps: int, extra: list[str], transport: str
                   ) -> tuple[float, SenderWatch, list[dict[str, object]], list[str], int]:
    """Run ``imaging-load [EXTRA] -i IMAGE -b MIBPS -a --json`` while watching the sender's log.

    Returns the wall time, the watch, the JSON records, the other output lines and the exit code.
    """
    watch = SenderWatch(layout.transport_logs_dir, MARKERS[transport], layout.count)
    argv = in_server(layout, [str(BIN / "imaging-load"), *extra, "-i", IMAGE, "-b", str(mibps),
                              "-t", str(LOAD_TIMEOUT), "--json", "-a"])
    start = time.perf_counter()
    process = await asyncio.create_subprocess_exec(*argv, env=product_env(layout), cwd=layout.directory,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    records: list[dict[str, object]] = []
    other: list[str] = []

    async def read() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").strip()
            try:
                records.append(json.loads(line))
            except ValueError:
                if line:
                    other.append(line)

    async def poll() -> None:
        while True:
            watch.look()
            await asyncio.sleep(POLL)

    poller = asyncio.create_task(poll())
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT):
            await read()
            code = await process.wait()
    except TimeoutError:
        other.append(f"killed after {COMMAND_TIMEOUT:g} s")
        code = -1
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        if process.returncode is None:
            process.kill()
            await process.wait()
    wall = time.perf_counter() - start
    watch.look()
    return wall, watch, records, other, code


def grouped_failures(results: list[dict[str, object]]) -> list[str]:
    """The failed nodes of a JSON summary, grouped by reason (log paths left out)."""
    by_reason: dict[str, list[str]] = {}
    for result in results:
        if not result.get("ok"):
            reason = re.sub(r" \(log [^)]*\)", "", str(result.get("detail")))
            by_reason.setdefault(reason, []).append(str(result.get("node")))
    return [f"{len(nodes)} node(s) ({' '.join(sorted(nodes))}): {reason}" for reason, nodes in by_reason.items()]


def multicast(layout: Layout, image: TestImage, mibps: int, label: str, extra: list[str] | None = None,
              wipe: bool = True, transport: str = "udpcast") -> LoadRun:
    """Load the image on every node of the testbed with the product (``extra`` options first, then
    ``--transport TRANSPORT``); its figures, disks checked.  ``wipe``: zero the disks first (a fresh
    testbed's do not hold the image).  Nodes a failed load left in the imaging OS are loaded again too."""
    wait_for_stage(layout, "ssh", "telnet")
    if wipe:
        wipe_disks(layout)
    wall, watch, records, other, code = asyncio.run(run_load(layout, mibps, [*(extra or []), "--transport",
                                                                            transport], transport))
    summary = next((r for r in records if "summary" in r), None)
    results = summary["summary"] if summary and isinstance(summary["summary"], list) else []
    failures = grouped_failures(results)
    if summary is None:
        failures.append(f"no JSON summary (exit {code}): {' | '.join(other[-3:])}")
    elif code != 0 and not failures:
        failures.append(f"exit {code}")
    transfer = watch.completed - watch.started if watch.started and watch.completed else None
    busy = busy_between(*watch.ticks) if len(watch.ticks) == 2 else None
    return LoadRun(label, layout.count, mibps, wall, transfer, event_transfer(events=records), busy,
                   sum(1 for r in results if r.get("ok")), disks_holding(layout, image), failures)


# --- the unicast baseline --------------------------------------------------------------------------

async def paced_send(writer: asyncio.StreamWriter, path: Path, mibps: int) -> int:
    """Send the file at most ``mibps`` Mibit/s of payload (0: as fast as possible); bytes sent."""
    rate = mibps * 2**20 / 8
    sent = 0
    start = time.perf_counter()
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            if rate:
                ahead = sent / rate - (time.perf_counter() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    return sent


async def unicast_one(ip: str, image: Path, mibps: int, disk: str) -> dict[str, object]:
    """Start ``nc -l`` writing the disk on node ``ip`` over telnet, send it the image; the figures."""
    from imaging import telnet

    begin = time.perf_counter()
    output: list[str] = []
    # sync: the disk is a block device whose written pages reach the node's disk file only when flushed
    command = f"nc -l -p {UNICAST_PORT} -d 1<> {shlex.quote(disk)} && sync"
    receiver = asyncio.create_task(telnet.run(ip, command, telnet.TelnetSettings(connect_timeout=2), output.append))
    try:
        async with asyncio.timeout(60):
            while True:  # until nc listens; it accepts one connection only, so no probing
                if receiver.done():
                    return {"ip": ip, "error": f"receiver ended first: {receiver.result()} {output[-2:]}"}
                try:
                    reader, writer = await asyncio.open_connection(ip, UNICAST_PORT)
                    break
                except OSError:
                    await asyncio.sleep(0.005)
            connected = time.perf_counter()
            sent = await paced_send(writer, image, mibps)
            writer.write_eof()
            await reader.read()  # nc closes once it has written everything
            writer.close()
            status = await receiver
    finally:
        receiver.cancel()
    done = time.perf_counter()
    return {"ip": ip, "status": status, "bytes": sent, "setup": connected - begin, "transfer": done - connected,
            "output": output[-3:]}


async def unicast_all(image: Path, mibps: int, disk: str, ips: list[str]) -> None:
    """The helper's body: each node in turn, one JSON line per node on stdout."""
    for ip in ips:
        try:
            result = await unicast_one(ip, image, mibps, disk)
        except Exception as exc:  # one node's failure is reported, the others still run
            result = {"ip": ip, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)


def boot_imaging_os(layout: Layout) -> str | None:
    """Reset every node into the imaging OS (the product's ``imaging-reset``) and wait for telnet;
    the next-boot links are removed again once they are up.  None, or what went wrong."""
    for node in layout.nodes():
        pxe.set_next_boot(layout, node, True)
    try:
        done = subprocess.run(in_server(layout, [str(BIN / "imaging-reset"), "-a"]), env=product_env(layout),
                              cwd=layout.directory, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                              check=False)
        if done.returncode != 0:
            return f"imaging-reset -a exited {done.returncode}: {done.stdout.strip()[-300:]} {done.stderr.strip()}"
        wait_for_stage(layout, "telnet")
    finally:
        for node in layout.nodes():
            pxe.set_next_boot(layout, node, False)
    return None


def unicast(layout: Layout, image: TestImage, mibps: int, label: str) -> LoadRun:
    """Send the image to every node in turn over TCP; its figures, disks checked."""
    wait_for_stage(layout, "telnet")
    wipe_disks(layout)
    disk = state.load(layout.directory).disk_path  # where the disk appears inside a node
    argv = in_server(layout, [sys.executable, str(Path(__file__).resolve()), HELPER, str(image.path), str(mibps),
                              disk, *[n.control_ip for n in layout.nodes()]])
    ticks = machine_ticks()
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
        stdout, code, stderr = done.stdout, done.returncode, done.stderr
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout or ""
        stdout = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
        code, stderr = -1, f"killed after {COMMAND_TIMEOUT:g} s"
    wall = time.perf_counter() - start
    busy = busy_between(ticks, machine_ticks())
    results = []
    for line in stdout.splitlines():
        with contextlib.suppress(ValueError):
            results.append(json.loads(line))
    good = [r for r in results if r.get("status") == 0 and r.get("bytes") == IMAGE_BYTES]
    failures = [f"{r['ip']}: {r.get('error') or r}" for r in results if r not in good]
    if len(results) != layout.count:
        failures.append(f"helper exited {code} after {len(results)} nodes: {stderr.strip()[-300:]}")
    transfers = [float(r["transfer"]) for r in good]
    total = sum(transfers) if len(good) == layout.count else None
    return LoadRun(label, layout.count, mibps, wall, total, wall, busy, len(good), disks_holding(layout, image),
                   failures)


# --- the report ------------------------------------------------------------------------------------

def print_runs(runs: list[LoadRun]) -> None:
    """The table of every run, then the failures grouped by reason."""
    print(f"  {'run':<46} {'nodes':>5} {'cap':>5} {'wall':>8} {'transfer':>9} {'rest':>7} {'(x-check)':>10}"
          f" {'payload':>8} {'of cap':>6} {'CPU':>4} {'ok (--json)':>11} {'disks':>6}")
    for run in runs:
        capped = bool(run.mibps) and run.mibps < UNCAPPED_MIBPS
        transfer = f"{run.transfer:7.2f} s" if run.transfer else "       - "
        rest = f"{run.wall - run.transfer:5.2f} s" if run.transfer else "     - "
        check = f"{run.cross_check:8.2f} s" if run.cross_check else "        - "
        payload, share = "-", "-"
        if run.transfer:
            streams = run.nodes if run.label.startswith("unicast") else 1  # unicast: the nodes one after the other
            mibit = IMAGE_BYTES * 8 * streams / run.transfer / 2**20
            payload = f"{mibit:.1f}"
            share = f"{mibit / run.mibps:.0%}" if capped else "-"
        busy = f"{run.busy:.0%}" if run.busy is not None else "-"
        verdict = f"{run.succeeded}/{run.nodes}" + ("" if run.succeeded == run.nodes else " FAIL")
        print(f"  {run.label:<46} {run.nodes:>5} {run.mibps if capped else 'none':>5} {run.wall:6.2f} s {transfer}"
              f" {rest} {check} {payload:>8} {share:>6} {busy:>4} {verdict:>11} {run.disks_ok:>3}/{run.nodes:<2}")
    for run in runs:
        for failure in run.failures:
            print(f"  FAILED: {run.label}, {run.nodes} nodes: {failure}")


def ratio(numerator: float | None, denominator: float | None) -> str:
    """``a / b`` formatted, or a dash when either is unknown."""
    return f"{numerator / denominator:.2f}" if numerator and denominator else "-"


def caveat(run: LoadRun) -> str:
    """A warning when a run's figures come from a failed load."""
    return "" if run.succeeded == run.nodes else f"  [load FAILED on {run.nodes - run.succeeded}/{run.nodes} nodes]"


def disks_home() -> str | None:
    """Where the testbeds go: a tmpfs (/dev/shm) when it has room for the 32 nodes' disks, so
    that each emulated node writes its own disk, as real nodes do, rather than 32 of them
    sharing one file system journal; else the default temporary folder."""
    shm = "/dev/shm"
    try:
        stats = os.statvfs(shm)
    except OSError:
        return None
    needed = (SIZES[-1] * DISK_MIB + 4 * IMAGE_MIB) << 20
    return shm if stats.f_bavail * stats.f_frsize > 2 * needed else None


def frisbee_image(image: TestImage, programs: Path) -> None:
    """The same bytes as a raw ``.ndz`` beside the image: ``imagezip -r`` (every sector, as loaded)."""
    target = image.path.with_suffix(".ndz")
    subprocess.run([str(programs / frisbee.IMAGEZIP), "-r", "-z1", str(image.path), str(target)], check=True,
                   capture_output=True, timeout=COMMAND_TIMEOUT)


def run_all(work: Path, programs: Path | None) -> dict[str, LoadRun]:
    """Every testbed and every load, in order; the figures by key.  frisbee's loads only with ``programs``
    (the folder of Emulab's programs)."""
    runs: dict[str, LoadRun] = {}
    for count in SIZES:
        with testbed(count, work) as layout:
            image = asyncio.run(make_image(IMAGE, layout.images_dir, IMAGE_MIB, compressed=False,
                                           cache_dir=work / "cache", random_fill=True))
            runs[f"multicast {count}"] = multicast(layout, image, CAP_MIBPS, f"multicast: imaging-load -b {CAP_MIBPS}",
                                                   wipe=False)
            if programs is not None:
                frisbee_image(image, programs)
                runs[f"frisbee {count}"] = multicast(layout, image, CAP_MIBPS,
                                                     f"frisbee: imaging-load --transport frisbee -b {CAP_MIBPS}",
                                                     transport="frisbee")
            if count == SIZES[-1]:
                tolerant = layout.directory / "tolerant.conf"
                tolerant.write_text(f"[udpcast]\nretries_until_drop = {TOLERANT_RETRIES}\n")
                runs["tolerant"] = multicast(layout, image, CAP_MIBPS,
                                             f"  same, --retries-until-drop {TOLERANT_RETRIES} (info)",
                                             ["--config", str(tolerant)])
            if count != UNICAST_NODES:
                continue
            runs["uncapped"] = multicast(layout, image, UNCAPPED_MIBPS,
                                         f"multicast: imaging-load -b {UNCAPPED_MIBPS} (info)")
            wait_for_stage(layout, "ssh", "telnet")
            problem = boot_imaging_os(layout)
            if problem:
                print(f"  unicast baseline skipped: {problem}")
                continue
            runs["unicast"] = unicast(layout, image, CAP_MIBPS, f"unicast: TCP one node after another, {CAP_MIBPS}")
            runs["unicast fast"] = unicast(layout, image, 0, "unicast: the same, unthrottled (info)")
    return runs


def main() -> int:
    """Run every load and print the table and the ratios."""
    if len(sys.argv) > 1 and sys.argv[1] == HELPER:
        image, mibps, disk, *ips = sys.argv[2:]
        asyncio.run(unicast_all(Path(image), int(mibps), disk, ips))
        return 0
    if lacks_root("bench/fanout.py"):
        return 2
    began = time.perf_counter()
    cores = os.cpu_count()
    programs = frisbee.locate()
    print(f"multicast fan-out of a {IMAGE_MIB} MiB random image ({IMAGE}.img, raw) with imaging-load (udpcast"
          f"{', and frisbee' if programs else ''}) on {cores} cores; figures are noisy when other work shares the"
          " machine" + ("" if programs else "\n(no frisbee programs here: `make frisbee` builds them)") + "\n")
    with tempfile.TemporaryDirectory(prefix="bench-fanout-", dir=disks_home()) as scratch:
        runs = run_all(Path(scratch), programs)
    print("  wall: the whole command.  transfer: sender log 'Starting transfer' -> 'Transfer complete.' (frisbee:"
          " frisbeed's first 'joins' -> last 'leaves'; unicast: sum of the per-node sends).  rest: wall - transfer.")
    print("  x-check: --json, first 'receiving' -> last node at 100 % (unicast: the whole loop, telnet set-up"
          " included).  payload: Mibit/s of image per stream.")
    print("  CPU: share of the machine's CPU (all cores) busy during the transfer.  ok: nodes the --json summary"
          " calls ok.  disks: sha256 of the first 64 MiB == the image's.\n")
    print_runs(list(runs.values()))
    print()
    one, many, tolerant = runs.get(f"multicast {SIZES[0]}"), runs.get(f"multicast {SIZES[-1]}"), runs.get("tolerant")
    if one and many:
        print(f"  wall({SIZES[-1]})/wall({SIZES[0]})         = {ratio(many.wall, one.wall):>5}  (target <= 1.10)"
              f"{caveat(many)}")
        print(f"  transfer({SIZES[-1]})/transfer({SIZES[0]}) = {ratio(many.transfer, one.transfer):>5}{caveat(many)}")
    if one and tolerant:
        print(f"  with --retries-until-drop {TOLERANT_RETRIES}: wall({SIZES[-1]})/wall({SIZES[0]}) ="
              f" {ratio(tolerant.wall, one.wall)}, transfer({SIZES[-1]})/transfer({SIZES[0]}) ="
              f" {ratio(tolerant.transfer, one.transfer)}{caveat(tolerant)}")
    for count in SIZES:
        udp, fris = runs.get(f"multicast {count}"), runs.get(f"frisbee {count}")
        if udp and fris:
            print(f"  frisbee/udpcast, {count:>2} nodes: wall {ratio(fris.wall, udp.wall):>5},"
                  f" transfer {ratio(fris.transfer, udp.transfer):>5}{caveat(fris)}{caveat(udp)}")
    fris_one, fris_many = runs.get(f"frisbee {SIZES[0]}"), runs.get(f"frisbee {SIZES[-1]}")
    if fris_one and fris_many:
        print(f"  frisbee wall({SIZES[-1]})/wall({SIZES[0]}) = {ratio(fris_many.wall, fris_one.wall):>5},"
              f" transfer({SIZES[-1]})/transfer({SIZES[0]}) = {ratio(fris_many.transfer, fris_one.transfer)}"
              f"{caveat(fris_many)}")
    eight, uni = runs.get(f"multicast {UNICAST_NODES}"), runs.get("unicast")
    if eight and uni:
        print(f"  unicast({UNICAST_NODES})/multicast({UNICAST_NODES}) transfer = {ratio(uni.transfer, eight.transfer)}"
              f"  (both at {CAP_MIBPS} Mibit/s of payload){caveat(eight)}{caveat(uni)}")
    uncapped, fast = runs.get("uncapped"), runs.get("unicast fast")
    if uncapped and uncapped.succeeded < uncapped.nodes:
        print(f"  uncapped multicast to {UNICAST_NODES} nodes: no figure, the load failed{caveat(uncapped)}")
    elif uncapped and uncapped.transfer and uncapped.busy is not None:
        bound = "bounded by CPU, not by the cap" if uncapped.busy >= 0.8 else "the CPU is not saturated"
        mibit = IMAGE_BYTES * 8 / uncapped.transfer / 2**20
        print(f"  uncapped multicast to {UNICAST_NODES} nodes: {mibit:.0f} Mibit/s"
              f" with the machine's CPU {uncapped.busy:.0%} busy: {bound} (udp-sender, {UNICAST_NODES} udp-receivers,"
              f" the bridge's copies, on {cores} cores)")
    if fast and fast.transfer:
        print(f"  unthrottled unicast: {fast.transfer / fast.nodes:.2f} s per node (TCP over a veth, memory to memory)")
    print(f"\nbenchmark wall time: {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
