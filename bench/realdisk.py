#!/usr/bin/env python3
"""Real disks: a file-system-aware image's cost follows the data, a raw image's the disk.

The same data on two disk sizes, side by side in one run: a partitioned disk
(GPT; FAT, ext4, swap) holding :data:`FILES_MIB` MiB of files (random, so
incompressible) with :data:`DELETED_MIB` MiB of files written then deleted in its
free space, on a 2 GiB and a 16 GiB sparse disk (:mod:`imaging_testbed.disks`).
For each size, on an emulated testbed of 1 + :data:`TARGETS` nodes whose disks
have that size:

* ``imaging-save`` (udpcast, file-system-aware, ``.ptcl.zst``), ``imaging-save --raw``
  (udpcast, ``.img.zst``) and ``imaging-save --transport frisbee`` (Emulab's imagezip,
  file-system-aware, ``.ndz``) of node 1: wall time of the command (the faster of
  :data:`RUNS` for the file-system-aware ones), size of the image;
* ``imaging-load`` of each image onto the other nodes, by the transport that saved it
  (udp-sender/udp-receiver, or frisbeed/frisbee): wall time (the faster of two for
  the file-system-aware images; the raw load
  of the 16 GiB disk goes to :data:`RAW_BIG_TARGETS` nodes only: each node's disk
  file becomes fully allocated, and 8 x 16 GiB do not fit this machine's disk);
* the size of ``zstd -1`` of the used data alone (every file of the ext4 and the
  FAT, read back from the source disk), the reference of the image size.

Ratios: file-system-aware image / ``zstd -1`` of the used data (target <= 1.1);
16 GiB / 2 GiB of save and load times for every format (target <= 1.15 for the
file-system-aware ones: their cost follows the data; the raw one's grows with the
disk); frisbee / udpcast of the file-system-aware save and load times and image
sizes.  Every loaded node is checked: table equal, file systems clean, files'
sha256 equal (file-system-aware), or bytes equal (raw, by sha256).

Needs root (network namespaces) and ~45 GB of free disk.  Takes ~10 minutes.

    .venv/bin/python bench/realdisk.py [--sizes 2048,16384] [--targets 8] [--formats fs,raw,frisbee]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from testbeds import in_server, lacks_root, product_env, temporary_testbed, wait_for_stage

from imaging_testbed import disks
from imaging_testbed.images import new_identity, sha256_file
from imaging_testbed.layout import Layout

BIN = Path(sys.executable).parent
FILES_MIB = 400
DELETED_MIB = 2048
TARGETS = 8
RAW_BIG_TARGETS = 2
BIG_MIB = 8192  # from this disk size on, the raw load goes to RAW_BIG_TARGETS nodes
TIMEOUT = 1800  # the commands' own deadline (-t)
BOOT_DELAY = 0.3
RUNS = 2  # of the file-system-aware save and load
# label -> the save's options (the load takes the transport's, and reads the image by its name)
FORMATS = {"fs": (), "raw": ("--raw",), "frisbee": ("--transport", "frisbee")}
RAW_FORMATS = ("raw",)


@dataclass
class Row:
    """What one disk size gave."""

    disk_mib: int
    used_zstd: int = 0  # bytes of zstd -1 of the used data alone
    figures: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def command(layout: Layout, folder: Path, *argv: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    """``imaging-<argv>`` in the server namespace from ``folder``: seconds and the result."""
    start = time.perf_counter()
    done = subprocess.run(in_server(layout, [str(BIN / f"imaging-{argv[0]}"), *argv[1:], "-t", str(TIMEOUT)]),
                          env=product_env(layout), cwd=folder, capture_output=True, text=True, check=False,
                          timeout=TIMEOUT + 60)
    return time.perf_counter() - start, done


def cmc(layout: Layout, number: int, verb: str) -> None:
    """A request to a node's card, from the server namespace."""
    node = layout.nodes()[number - 1]
    subprocess.run(in_server(layout, ["curl", "-s", "-m", "5", f"http://{node.cmc_ip}/{verb}"]), check=True,
                   capture_output=True)


def used_data_zstd(disk: Path, work: Path) -> int:
    """Bytes of ``zstd -1`` of every file the disk's file systems hold, read back from the disk."""
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        data = Path(scratch) / "data"
        asyncio.run(disks.extract_files(disk, data))
        tar = subprocess.run(f"tar -C {data} -cf - . | zstd -q -1 -c | wc -c", shell=True, capture_output=True,
                             text=True, check=True)
    return int(tar.stdout.split()[0])


def fastest(layout: Layout, folder: Path, row: Row, what: str, runs: list[list[str]]) -> float | None:
    """The shortest wall time of the commands ``runs``; None, with a note in ``row``, when one failed."""
    times = []
    for argv in runs:
        seconds, done = command(layout, folder, *argv)
        if done.returncode != 0:
            row.notes.append(f"{what} failed: {(done.stdout + done.stderr).strip()[-400:]}")
            return None
        times.append(seconds)
    return min(times)


def one_size(disk_mib: int, targets: int, work: Path, files_mib: int, deleted_mib: int,
             formats: list[str]) -> Row:
    """Save both formats from node 1 of a fresh testbed, load each onto the others, and check them."""
    row = Row(disk_mib)
    nodes = 1 + targets
    with temporary_testbed(nodes, prefix=f"realdisk-{disk_mib}-", work=work, boot_delay=BOOT_DELAY,
                           disk_mib=disk_mib) as layout:
        wait_for_stage(layout, "ssh", "no-os", "telnet")
        cmc(layout, 1, "off")
        source = layout.disk_path(layout.nodes()[0])
        source.unlink()
        spec = disks.DiskSpec(size_mib=disk_mib, files_mib=files_mib, deleted_mib=deleted_mib, seed=7)
        started = time.perf_counter()
        info = asyncio.run(disks.make_disk(source, spec, new_identity("realdisk")))
        row.notes.append(f"disk made in {time.perf_counter() - started:.1f} s")
        report = asyncio.run(disks.inspect(source))
        row.used_zstd = used_data_zstd(source, work)
        row.notes.append(f"deleted data left in the free blocks: {info.deleted >> 20} MiB")
        cmc(layout, 1, "on")
        folder = work / f"images-{disk_mib}"
        folder.mkdir()
        for label in formats:
            extra = FORMATS[label]
            raw = label in RAW_FORMATS
            runs = 1 if raw else RUNS  # the cheap ones twice: the faster run is the figure
            saved = fastest(layout, folder, row, f"save {label}",
                            [["save", *extra, "-o", f"{label}{run}", "1"] for run in range(runs)])
            if saved is None:
                continue
            image = next(p for p in folder.glob(f"saving__fit01__*__{label}0.*") if p.suffix != ".sha256")
            row.figures[f"save {label} s"] = saved
            row.figures[f"image {label} MiB"] = image.stat().st_size / 2**20
            count = targets if not raw or disk_mib < BIG_MIB else min(targets, RAW_BIG_TARGETS)
            transport = [option for option in extra if option != "--raw"]
            loaded = fastest(layout, folder, row, f"load {label}",
                             [["load", *transport, "-i", str(image), f"2-{1 + count}"]] * runs)
            if loaded is None:
                continue
            row.figures[f"load {label} s"] = loaded
            row.figures[f"load {label} nodes"] = count
            for number in range(2, 2 + count):
                cmc(layout, number, "off")
            bad = check_targets(layout, source, report, raw, range(2, 2 + count))
            row.notes.append(f"{label}: {count} nodes checked, {len(bad)} differ" + (f" ({bad[:3]})" if bad else ""))
            for number in range(2, 2 + count):  # its space given back: an empty sparse disk again
                disk = layout.disk_path(layout.nodes()[number - 1])
                os.truncate(disk, 0)
                os.truncate(disk, disk_mib << 20)
                cmc(layout, number, "on")
    return row


def check_targets(layout: Layout, source: Path, report: disks.DiskReport, raw: bool,
                  numbers: range) -> list[str]:
    """The loaded nodes whose disk does not hold the source's (by inspection, or by bytes for raw)."""
    bad = []
    raw_sha = sha256_file(source) if raw else ""
    for number in numbers:
        disk = layout.disk_path(layout.nodes()[number - 1])
        if raw:
            if sha256_file(disk) != raw_sha:
                bad.append(f"fit{number:02d}: bytes differ")
            continue
        got = asyncio.run(disks.inspect(disk))
        if got.table != report.table:
            bad.append(f"fit{number:02d}: table differs")
        for mine, theirs in zip(got.partitions, report.partitions, strict=False):
            if not mine.clean or mine.files != theirs.files or mine.fs != theirs.fs:
                bad.append(f"fit{number:02d}: partition {mine.number} differs or is not clean")
    return bad


def ratio(a: float | None, b: float | None) -> str:
    """``a / b`` to two decimals, or ``-``."""
    return f"{a / b:.2f}" if a is not None and b else "-"


def main() -> int:
    """Run both sizes, print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2048,16384", help="disk sizes in MiB (default 2048,16384)")
    parser.add_argument("--targets", type=int, default=TARGETS, help=f"nodes loaded (default {TARGETS})")
    parser.add_argument("--work", type=Path, default=Path("/var/tmp"), help="where the testbeds live")
    parser.add_argument("--files", type=int, default=FILES_MIB, help=f"MiB of files (default {FILES_MIB})")
    parser.add_argument("--deleted", type=int, default=DELETED_MIB, help=f"MiB deleted (default {DELETED_MIB})")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help=f"what to save and load, of {', '.join(FORMATS)} (default: all)")
    args = parser.parse_args()
    formats = args.formats.split(",")
    if not set(formats) <= set(FORMATS):
        parser.error(f"--formats {args.formats}: each of {', '.join(FORMATS)}")
    if lacks_root("realdisk.py"):
        return 2
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="imaging-realdisk-", dir=args.work) as scratch:
        for size in sizes:
            print(f"--- {size} MiB disks: {args.files} MiB of files, {args.deleted} MiB deleted", flush=True)
            rows.append(one_size(size, args.targets, Path(scratch), args.files, args.deleted, formats))
            print(json.dumps({"disk_mib": rows[-1].disk_mib, **rows[-1].figures, "notes": rows[-1].notes}), flush=True)
    keys = [f"{what} {label} {unit}" for label in formats
            for what, unit in (("save", "s"), ("image", "MiB"), ("load", "s"), ("load", "nodes"))]
    print()
    print(f"{'disk':>8} {'zstd(used) MiB':>15} " + " ".join(f"{k:>18}" for k in keys))
    for row in rows:
        cells = [f"{row.figures[k]:18.1f}" if k in row.figures else f"{'-':>18}" for k in keys]
        print(f"{row.disk_mib:>6}Mi {row.used_zstd / 2**20:15.1f} " + " ".join(cells))
    print()
    for row in rows:
        figure = row.figures.get
        print(f"{row.disk_mib} MiB: " + "; ".join(
            f"{label} image / zstd -1 of the used data = {ratio(figure(f'image {label} MiB'), row.used_zstd / 2**20)}"
            + ("" if label in RAW_FORMATS else " (target <= 1.1)") for label in formats))
        if "frisbee" in formats and "fs" in formats:
            print("    frisbee / udpcast (file-system-aware): " + ", ".join(
                f"{what} {ratio(figure(f'{what} frisbee {unit}'), figure(f'{what} fs {unit}'))}"
                for what, unit in (("save", "s"), ("image", "MiB"), ("load", "s"))))
        for note in row.notes:
            print(f"    {note}")
    if len(rows) >= 2:
        small, big = rows[0], rows[-1]
        for label in formats:
            for what in ("save", "load"):
                key = f"{what} {label} s"
                nodes = f"load {label} nodes"
                print(f"{what} {label:>8}: {big.disk_mib} MiB / {small.disk_mib} MiB ="
                      f" {ratio(big.figures.get(key), small.figures.get(key))}"
                      + ("" if label in RAW_FORMATS else " (target <= 1.15)")
                      + (f" ({int(big.figures.get(nodes, 0))} vs {int(small.figures.get(nodes, 0))} nodes)"
                         if what == "load" and big.figures.get(nodes) != small.figures.get(nodes) else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
