#!/usr/bin/env python3
"""Save throughput: how fast ``imaging-save`` brings a node's disk back to the
server, side by side with plain ``nc`` copies of the same bytes in the same run.

One emulated node with a 256 MiB disk, filled from the host with random bytes
after its first MiB (the factory FAT file system stays, so the node still
boots; random, so that zstd has nothing to gain and the whole 256 MiB travel).
Then, median of :data:`RUNS` runs each:

* ``imaging-save -n --json --raw -o bench 1`` run in the server namespace from a
  scratch folder: the wall time of the command (reset, boot of the imaging OS,
  transfer, publication; ``-n`` leaves the node in the imaging OS, so no final
  reset), and its transfer phase, from the first ``saving`` event to the
  ``done`` event (the events' own timestamps);
* plain copies from the node (in the imaging OS) to ``nc -l`` on the server
  writing a file, over the product's telnet client: ``nc -q 0 SERVER PORT <
  /dev/sda`` (raw), and ``zstd -q -c -1 < /dev/sda | nc …`` (the same compression
  as the save).  Their transfer is timed on the node (``date +%s.%N`` before
  and after, the same clock as the server's) up to the listener's exit.

MiB/s is the disk's 256 MiB over the transfer.  Ratios: save / plain of the
transfer times (1.00 = the product's receiver costs nothing over ``nc``).

Needs root (network namespaces), like the testbed.  The testbed is torn down
whatever happens.  Takes about 40 s.  Run it from the checkout:

    .venv/bin/python bench/save.py
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from testbeds import in_server, lacks_root, product_env, temporary_testbed, wait_for_stage

from imaging_testbed import lifecycle, pxe, state
from imaging_testbed.images import sha256_file
from imaging_testbed.layout import Layout

BIN = Path(sys.executable).parent
DISK_MIB = 256
DISK_BYTES = DISK_MIB << 20
KEEP_MIB = 1  # the factory FAT file system at the start of the disk stays
RUNS = 3
BOOT_DELAY = 0.3
SAVE_TIMEOUT = 120  # imaging-save's own deadline (-t)
COMMAND_TIMEOUT = 180.0  # after this we kill any command of this benchmark
PLAIN_PORT = 5002
HELPER = "--plain-helper"  # internal: one plain copy, run in the server namespace


@dataclass
class Figure:
    """One way of copying the disk: its runs."""

    label: str
    walls: list[float] = field(default_factory=list)
    transfers: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)  # bytes that reached the server
    good: int = 0  # runs whose bytes decompress (or are) the node's disk
    failures: list[str] = field(default_factory=list)

    @property
    def wall(self) -> float | None:
        return statistics.median(self.walls) if self.walls else None

    @property
    def transfer(self) -> float | None:
        return statistics.median(self.transfers) if self.transfers else None


# --- the testbed -----------------------------------------------------------------------------------

def testbed(work: Path) -> AbstractContextManager[Layout]:
    """A one-node testbed with a DISK_MIB disk in a fresh folder under ``work``, always torn down."""
    return temporary_testbed(1, prefix="save-", work=work, boot_delay=BOOT_DELAY, disk_mib=DISK_MIB)


def fill_disk(layout: Layout) -> str:
    """Random bytes after the first MiB of the disk, in place (the node keeps the file bind-mounted); its sha256."""
    path = layout.disk_path(layout.node(1))
    with open(path, "r+b") as disk:
        disk.seek(KEEP_MIB << 20)
        for _ in range(DISK_MIB - KEEP_MIB):
            disk.write(os.urandom(1 << 20))
    os.sync()
    return sha256_file(path)


def unzipped_sha256(path: Path) -> str:
    """sha256 of ``zstd -d`` of ``path``."""
    done = subprocess.run(f"zstd -d -c -q {shlex.quote(str(path))} | sha256sum", shell=True, capture_output=True,
                          text=True, check=False)
    return done.stdout.split()[0] if done.returncode == 0 and done.stdout else ""


# --- the product -----------------------------------------------------------------------------------

def save_once(layout: Layout, folder: Path, disk_sha: str, figure: Figure) -> None:
    """One ``imaging-save -n --json`` from ``folder``; its figures added to ``figure``, the file removed."""
    argv = in_server(layout, [str(BIN / "imaging-save"), "--json", "--raw", "-n", "-o", "bench", "-t",
                              str(SAVE_TIMEOUT), "1"])
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, env=product_env(layout), cwd=folder, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        figure.failures.append(f"killed after {COMMAND_TIMEOUT:g} s")
        return
    wall = time.perf_counter() - start
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    saving = [e["time"] for e in events if e.get("phase") == "saving"]
    finished = [e["time"] for e in events if e.get("phase") == "done"]
    if done.returncode != 0 or not saving or not finished:
        summary = events[-1] if events else {}
        figure.failures.append(f"exit {done.returncode}: {summary.get('summary') or done.stderr.strip()[-300:]}")
        return
    figure.walls.append(wall)
    figure.transfers.append(finished[-1] - saving[0])
    images = sorted(folder.glob("saving__fit01__*__bench.img.zst"))
    if images:
        figure.sizes.append(images[0].stat().st_size)
        figure.good += unzipped_sha256(images[0]) == disk_sha
    for path in folder.glob("saving__*"):
        path.unlink()


def boot_imaging_os(layout: Layout) -> None:
    """Make sure the node runs the imaging OS (after a save with ``-n`` it already does)."""
    _, statuses = asyncio.run(lifecycle.status(layout.directory))
    if all(s.stage == "telnet" for s in statuses):
        return
    node = layout.node(1)
    pxe.set_next_boot(layout, node, True)
    try:
        subprocess.run(in_server(layout, [str(BIN / "imaging-reset"), "1"]), env=product_env(layout),
                       capture_output=True, timeout=COMMAND_TIMEOUT, check=False)
        wait_for_stage(layout, "telnet")
    finally:
        pxe.set_next_boot(layout, node, False)


# --- the plain copies ------------------------------------------------------------------------------

async def plain_helper(node_ip: str, server_ip: str, port: int, output: Path, producer: str) -> dict[str, object]:
    """In the server namespace: ``nc -l`` into ``output``, the node's ``producer | nc`` over telnet
    (``< FILE`` as ``producer``: ``nc < FILE``)."""
    from imaging import telnet

    with open(output, "wb") as sink:
        listener = await asyncio.create_subprocess_exec("nc", "-l", server_ip, str(port), stdout=sink,
                                                        stdin=subprocess.DEVNULL)
    try:
        await asyncio.sleep(0.2)  # nc listens
        send = f"nc -q 0 {shlex.quote(server_ip)} {port}"
        pipe = f"{send} < {producer.removeprefix('<').strip()}" if producer.startswith("<") else f"{producer} | {send}"
        command = (f"s=$(date +%s.%N); {pipe};"
                   f" r=$?; echo __TIMES $s $(date +%s.%N); [ $r = 0 ]")
        lines: list[str] = []
        start = time.time()
        status = await asyncio.wait_for(telnet.run(node_ip, command, telnet.TelnetSettings(), lines.append),
                                        COMMAND_TIMEOUT)
        await asyncio.wait_for(listener.wait(), 30)
        end = time.time()
    finally:
        if listener.returncode is None:
            listener.kill()
            await listener.wait()
    times = [line.split()[1:3] for line in lines if line.startswith("__TIMES ")]
    began = float(times[-1][0]) if times else start
    return {"status": status, "wall": end - start, "transfer": max(end, float(times[-1][1]) if times else end) - began,
            "bytes": output.stat().st_size}


def plain_once(layout: Layout, folder: Path, producer: str, compressed: bool, disk_sha: str, figure: Figure) -> None:
    """One plain copy; its figures added to ``figure``, the file removed."""
    boot_imaging_os(layout)
    disk = state.load(layout.directory).disk_path
    output = folder / "plain.out"
    argv = in_server(layout, [sys.executable, str(Path(__file__).resolve()), HELPER, layout.node(1).control_ip,
                              layout.server_ip, str(PLAIN_PORT), str(output), producer.format(disk=shlex.quote(disk))])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        figure.failures.append(f"killed after {COMMAND_TIMEOUT:g} s")
        return
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        figure.failures.append(f"helper exited {done.returncode}: {done.stderr.strip()[-300:]}")
        return
    if result["status"] != 0:
        figure.failures.append(f"the node's pipeline exited {result['status']}")
        return
    figure.walls.append(result["wall"])
    figure.transfers.append(result["transfer"])
    figure.sizes.append(result["bytes"])
    figure.good += (unzipped_sha256(output) if compressed else sha256_file(output)) == disk_sha
    output.unlink(missing_ok=True)


# --- the report ------------------------------------------------------------------------------------

def row(figure: Figure, reference: Figure | None) -> str:
    """One line of the table."""
    wall = f"{figure.wall:6.2f} s" if figure.wall else "      - "
    transfer = f"{figure.transfer:6.2f} s" if figure.transfer else "      - "
    rate = f"{DISK_MIB / figure.transfer:7.1f}" if figure.transfer else "      -"
    size = f"{statistics.median(figure.sizes) / 2**20:7.1f}" if figure.sizes else "      -"
    ratio = ""
    if reference is not None and reference.transfer and figure.transfer:
        ratio = f"{reference.transfer / figure.transfer:.2f}"
    runs = len(figure.walls) + len(figure.failures)
    return (f"  {figure.label:<44} {wall:>9} {transfer:>9} {rate:>7} {size:>8} {figure.good}/{runs:<3}"
            f" {ratio:>10}")


def main() -> int:
    """Measure, print the table and the ratios."""
    if len(sys.argv) > 1 and sys.argv[1] == HELPER:
        node_ip, server_ip, port, output, producer = sys.argv[2:]
        print(json.dumps(asyncio.run(plain_helper(node_ip, server_ip, int(port), Path(output), producer))))
        return 0
    if lacks_root("bench/save.py"):
        return 2
    began = time.perf_counter()
    print(f"save throughput of one node's {DISK_MIB} MiB disk (random after the first MiB) on {os.cpu_count()} cores,"
          f" median of {RUNS} runs; figures are noisy when other work shares the machine\n")
    product = Figure("imaging-save --raw -n (zstd -1 | nc -> receiver)")
    raw = Figure("plain: nc < /dev/sda -> nc -l > file")
    zipped = Figure("plain: zstd -1 /dev/sda | nc -> nc -l > file")
    with tempfile.TemporaryDirectory(prefix="bench-save-") as scratch:
        work = Path(scratch)
        with testbed(work) as layout:
            wait_for_stage(layout, "ssh", "telnet")
            disk_sha = fill_disk(layout)
            folder = work / "saves"
            folder.mkdir()
            for _ in range(RUNS):
                save_once(layout, folder, disk_sha, product)
                plain_once(layout, folder, "< {disk}", False, disk_sha, raw)
                plain_once(layout, folder, "zstd -q -c -1 < {disk}", True, disk_sha, zipped)
    print(f"  {'copy':<44} {'wall':>9} {'transfer':>9} {'MiB/s':>7} {'MiB sent':>8} {'ok':<5}"
          f" {'save/this':>10}")
    for figure in (product, raw, zipped):
        print(row(figure, None if figure is product else product))
    for figure in (product, raw, zipped):
        for failure in figure.failures:
            print(f"  FAILED: {figure.label}: {failure}")
    print("\n  wall: the whole command (save: reset, boot of the imaging OS, transfer, publication; plain: the telnet"
          " session and the listener).")
    print("  transfer: save, first 'saving' event -> 'done' event; plain, on the node before the pipeline -> the"
          " listener's exit.")
    print(f"  MiB/s: {DISK_MIB} MiB of disk / transfer.  ok: runs whose file is (or decompresses to) the node's disk.")
    for figure in (raw, zipped):
        if product.transfer and figure.transfer:
            print(f"  save/plain transfer, against '{figure.label.removeprefix('plain: ')}':"
                  f" {product.transfer / figure.transfer:.2f}")
    if product.wall and product.transfer:
        print(f"  save: transfer is {product.transfer / product.wall:.0%} of the command's wall time")
    print(f"\nbenchmark wall time: {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
