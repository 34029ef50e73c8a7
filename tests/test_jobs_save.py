"""The save job at the fast level: the real save receiver (a TCP listener on 127.0.0.1), ensure_reset,
NextBoot and LockSet, over the fakes of tests/fakes.py; each fake node streams its disk from its own
loopback address, as ``zstd | nc`` would.  No root; milliseconds."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from imaging.disklayout import check_image, read_layout, trailer
from imaging.errors import UsageError
from imaging.events import NodeResult
from imaging.images import Image
from imaging.jobs.load import LoadPlan, load
from imaging.jobs.save import SavePlan, save, stamp_command, stamp_line
from imaging.power.base import PowerOptions
from imaging.transports.udpcast import Udpcast
from imaging.units import human_size
from tests.fakes import (
    DISK,
    FAST_BOOT,
    IMAGING_OS,
    PXE_FILE,
    FakeNode,
    FakeTestbed,
    disk_layout,
    fs_uuid,
    in_order,
    job_state,
    links_left,
    make_bed,
    make_node,
    payload,
    standard_layout,
    unzstd,
)

SIZE = 2


def free_port_base(count: int) -> int:
    """A port P such that P+1 … P+count are free now (session n listens on P+n)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        if first + count > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + count):
                    taken = stack.enter_context(socket.socket())
                    taken.bind(("127.0.0.1", port))
            except OSError:
                continue
        return first - 1
    raise AssertionError("no free ports")


def fakes(*numbers: int) -> list[FakeNode]:
    """Nodes whose disks hold 256 KiB of their own random bytes."""
    return [FakeNode(make_node(n), bytearray(os.urandom(256 * 1024))) for n in numbers]


def target(tmp_path: Path, host: str) -> Path:
    """Where the save of ``host`` is published."""
    return tmp_path / "saves" / f"saving__{host}__2026-01-01@00-00__base.img.zst"


def plan_for(tmp_path: Path, bed: FakeTestbed, **changes: object) -> SavePlan:
    """A plan as the CLI builds it (reset at the end, no stamp), with ``changes``."""
    nodes = [fake.node for fake in bed.nodes.values()]
    (tmp_path / "saves").mkdir(exist_ok=True)
    plan = SavePlan(nodes=nodes, targets={n.number: target(tmp_path, n.hostname) for n in nodes},
                    transport=Udpcast(), server_ip="127.0.0.1", disk={n.number: "/dev/sda" for n in nodes},
                    timeout=5.0, reset_after=True, power=PowerOptions(timeout=1.0), boot=FAST_BOOT,
                    pattern_port=f"{free_port_base(len(nodes))} + *", pattern_size=len(nodes),
                    lock_dir=tmp_path / "locks", stamp=dict.fromkeys((n.number for n in nodes), None))
    return replace(plan, **changes)  # type: ignore[arg-type]


async def run_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nodes: list[FakeNode], keep_partial: bool = False,
                   **changes: object) -> tuple[FakeTestbed, dict[int, NodeResult]]:
    """Save ``nodes`` (then clean up as the CLI does); the bed and every node's result."""
    bed = make_bed(tmp_path, nodes)
    bed.install(monkeypatch)
    plan = plan_for(tmp_path, bed, **changes)
    state = job_state(bed)
    state.keep_partial = keep_partial
    try:
        results = await save(plan, state, bed.emit)
    finally:
        state.cleanup()
    assert [r.node for r in results] == list(plan.nodes)
    return bed, {r.node.number: r for r in results}


def saved_files(tmp_path: Path) -> set[str]:
    """What the saves folder holds."""
    return {path.name for path in (tmp_path / "saves").iterdir()}


def published(tmp_path: Path, fake: FakeNode) -> bool:
    """The node's disk is published under its name, with a sidecar holding its sha256."""
    path = target(tmp_path, fake.host)
    digest = hashlib.sha256(fake.disk).hexdigest()
    sidecar = path.with_name(path.name + ".sha256")
    return (path.read_bytes() == bytes(fake.disk)
            and sidecar.read_text() == f"{digest}  {path.name}\n")


async def test_each_disk_is_published_with_its_sha256_then_the_node_boots_its_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fit01, fit02 = fakes(1, 2)
    bed, results = await run_save(tmp_path, monkeypatch, [fit01, fit02])
    for fake in (fit01, fit02):
        result = results[fake.node.number]
        name = target(tmp_path, fake.host).name
        assert result.ok and result.detail == (f"saved {name} (256.0 KiB, sha256"
                                               f" {hashlib.sha256(fake.disk).hexdigest()[:12]})")
        assert published(tmp_path, fake)
        assert fake.boots == [IMAGING_OS, DISK]
        assert in_order(bed.of(fake.host), ("boot", IMAGING_OS), ("save", "no link"), ("boot", DISK),
                        ("phase", "done")), bed.of(fake.host)
    assert saved_files(tmp_path) == {target(tmp_path, h).name + ext for h in ("fit01", "fit02")
                                     for ext in ("", ".sha256")}


@pytest.mark.parametrize(("fault", "reason"), [
    ("save_exit", "the save pipeline on the node failed (exit 1): zstd: /dev/sda: Input/output error"),
    ("save_unclean", "writing {partial} failed: Connection reset by peer"),
])
async def test_a_failed_pipeline_or_a_cut_stream_publishes_nothing_and_spares_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str, reason: str) -> None:
    fit01, fit02 = fakes(1, 2)
    if fault == "save_exit":
        fit02.save_exit = 1  # the whole disk went through, then the pipeline said it failed
    else:
        fit02.save_unclean = True  # a TCP reset half-way; the node's pipeline says 0
    _, results = await run_save(tmp_path, monkeypatch, [fit01, fit02])
    partial = target(tmp_path, "fit02").with_name(target(tmp_path, "fit02").name + ".partial")
    assert results[1].ok and published(tmp_path, fit01)
    assert not results[2].ok and results[2].detail.startswith(reason.format(partial=partial)), results[2].detail
    assert saved_files(tmp_path) == {target(tmp_path, "fit01").name, target(tmp_path, "fit01").name + ".sha256"}


async def test_keep_partial_keeps_what_a_failed_save_received(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [fit01] = fakes(1)
    fit01.save_exit = 1
    _, results = await run_save(tmp_path, monkeypatch, [fit01], keep_partial=True)
    name = target(tmp_path, "fit01").name
    assert not results[1].ok
    assert saved_files(tmp_path) == {name + ".partial"}
    kept = (tmp_path / "saves" / (name + ".partial")).read_bytes()
    assert bytes(fit01.disk).startswith(kept)  # what had been read when the pipeline's status came


async def test_no_reset_leaves_the_node_in_the_imaging_os(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [fit01] = fakes(1)
    bed, results = await run_save(tmp_path, monkeypatch, [fit01], reset_after=False)
    assert results[1].ok and published(tmp_path, fit01)
    assert (fit01.boots, fit01.booted) == ([IMAGING_OS], IMAGING_OS)
    assert ("save", "fit01", "no link") in bed.timeline


async def test_the_stamp_is_written_before_the_disk_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [fit01] = fakes(1)
    before = bytes(fit01.disk)
    line = stamp_line("fit01", "base", "alice", "$(reboot) `id` it's fine")
    _, results = await run_save(tmp_path, monkeypatch, [fit01],
                                stamp={1: stamp_command("/dev/sda1", "/mnt", line)})
    assert results[1].ok
    saved = target(tmp_path, "fit01").read_bytes()
    assert saved == before + line.encode() + b"\n"  # the saved image holds the stamp, word for word
    assert published(tmp_path, fit01)


# -- file-system-aware saves (.ptcl.zst): the layout probed, partclone per partition, the layout trailer --------
def layout_target(tmp_path: Path, host: str) -> Path:
    """Where the file-system-aware save of ``host`` is published."""
    return tmp_path / "saves" / f"saving__{host}__2026-01-01@00-00__base.ptcl.zst"


def layout_fakes(*numbers: int) -> list[FakeNode]:
    """Nodes with 1 MiB disks of random bytes partitioned as :func:`standard_layout` (FAT, ext4, swap, raw)."""
    return [FakeNode(make_node(n), bytearray(os.urandom(1 << 20)), layout=standard_layout()) for n in numbers]


async def run_layout_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nodes: list[FakeNode],
                          **changes: object) -> tuple[FakeTestbed, dict[int, NodeResult]]:
    """Save ``nodes`` into ``.ptcl.zst`` targets (imaging-save's default format)."""
    targets = {fake.node.number: layout_target(tmp_path, fake.host) for fake in nodes}
    return await run_save(tmp_path, monkeypatch, nodes, False, targets=targets, **changes)


def sidecar_matches(path: Path) -> bool:
    """The sha256 sidecar holds the digest of the whole file, its layout trailer included."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return path.with_name(path.name + ".sha256").read_text() == f"{digest}  {path.name}\n"


async def test_a_layout_save_publishes_each_partition_by_partclone_and_the_used_bytes_in_its_trailer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fit01, fit02 = layout_fakes(1, 2)
    fit02.layout = disk_layout(1 << 20, ("ext4", 64 * 1024, 256 * 1024, 40 * 4096), ("vfat", 320 * 1024, 128 * 1024,
                               4096), label="dos")
    bed, results = await run_layout_save(tmp_path, monkeypatch, [fit01, fit02])
    for fake in (fit01, fit02):
        assert fake.layout is not None
        path = layout_target(tmp_path, fake.host)
        result = results[fake.node.number]
        assert result.ok, result.detail
        recorded = read_layout(path)
        # what sfdisk and blkid said of each partition, with the bytes partclone said it uses (not their sizes)
        assert recorded.partitions == fake.layout.partitions
        assert (recorded.label, recorded.disk_size, recorded.sector_size) == (fake.layout.label, 1 << 20, 512)
        assert recorded.head == fake.layout.partitions[0].start  # the table's area: up to the first partition
        assert recorded.table.startswith(f"label: {fake.layout.label}\n") and "/dev/sda" not in recorded.table
        assert sidecar_matches(path)
        # the image: the table's area, then each saved partition's partclone image, in order; read by the real zstd
        content = subprocess.run(["zstd", "-d", "-c", str(path)], capture_output=True, check=True).stdout
        assert content == payload(recorded, bytes(fake.disk))
        assert check_image(path).size == recorded.needed
        assert path.read_bytes().endswith(trailer(recorded))
        assert result.detail == (f"saved {path.name} ({human_size(path.stat().st_size)},"
                                 f" {human_size(recorded.used)} of data, sha256"
                                 f" {hashlib.sha256(path.read_bytes()).hexdigest()[:12]})")
        assert fake.boots == [IMAGING_OS, DISK]
        assert in_order(bed.of(fake.host), ("probe", "table"), ("probe", "file systems"), ("save", "no link"),
                        ("boot", DISK), ("phase", "done")), bed.of(fake.host)
    assert [p.used for p in read_layout(layout_target(tmp_path, "fit01")).partitions] == [64 * 1024, 128 * 1024,
                                                                                         None, 64 * 1024]
    saving = [e.percent for e in bed.events if e.node == "fit01" and e.phase == "saving" and e.percent]
    assert saving == sorted(saving) and all(0 < p <= 99 for p in saving)  # how far partclone got
    assert saved_files(tmp_path) == {layout_target(tmp_path, h).name + ext for h in ("fit01", "fit02")
                                     for ext in ("", ".sha256")}


async def test_a_blank_disk_is_saved_whole_by_partclone_dd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [fit01] = fakes(1)  # 256 KiB, no table, no file system
    _, results = await run_layout_save(tmp_path, monkeypatch, [fit01])
    path = layout_target(tmp_path, "fit01")
    assert results[1].ok, results[1].detail
    recorded = read_layout(path)
    assert recorded.label == "none" and [(p.number, p.method, p.device, p.used) for p in recorded.partitions] == [
        (0, "partclone.dd", "/dev/sda", 256 * 1024)]
    assert unzstd(path.read_bytes()) == bytes(fit01.disk) and sidecar_matches(path)


async def test_a_partition_without_its_device_fails_the_node_before_anything_is_streamed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fit01, fit02 = layout_fakes(1, 2)
    fit02.hidden = (2,)  # its imaging OS shows no /dev/sda2
    bed, results = await run_layout_save(tmp_path, monkeypatch, [fit01, fit02])
    assert results[1].ok
    assert not results[2].ok
    assert results[2].detail.startswith("fit02's imaging OS shows no device /dev/sda2 for partition 2 (ext4,"
                                        " /dev/sda2): partclone reads a partition from its device; save with --raw")
    assert ("save", "fit02", "no link") not in bed.timeline  # nothing was streamed
    assert ("probe", "fit02", "file systems") in bed.timeline
    assert saved_files(tmp_path) == {layout_target(tmp_path, "fit01").name, layout_target(tmp_path, "fit01").name
                                     + ".sha256"}
    assert links_left(bed) == [] and fit02.boots == [IMAGING_OS, DISK]


@pytest.mark.parametrize(("fail_exit", "said"), [(1, "read ERROR:Input/output error"), (137, "")])
async def test_a_save_failing_inside_partition_2_names_it_and_publishes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_exit: int, said: str) -> None:
    fit01, fit02 = layout_fakes(1, 2)
    fit02.fail_in, fit02.fail_exit = 2, fail_exit  # partclone.ext4 fails (or is killed) half-way through /dev/sda2
    bed, results = await run_layout_save(tmp_path, monkeypatch, [fit01, fit02])
    assert results[1].ok
    detail = results[2].detail
    assert not results[2].ok
    assert detail.startswith("the save pipeline on the node failed (exit 1) while reading partition 2 (ext4,"
                             " /dev/sda2)"), detail
    assert said in detail
    assert ("save-failed", "fit02", "2") in bed.timeline
    name = layout_target(tmp_path, "fit01").name
    assert saved_files(tmp_path) == {name, name + ".sha256"}  # the stream ended cleanly; nothing published all the same
    assert links_left(bed) == []


async def test_a_missing_partclone_program_is_named_before_streaming(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fit01, fit02 = layout_fakes(1, 2)
    fit02.missing = ("partclone.ext4",)
    bed, results = await run_layout_save(tmp_path, monkeypatch, [fit01, fit02])
    assert results[1].ok
    assert results[2].detail.startswith("the imaging OS of fit02 has no partclone.ext4: install it there, or set its"
                                        " path in [udpcast]"), results[2].detail
    assert in_order(bed.of("fit02"), ("probe", "file systems"), ("phase", "failed"))
    assert ("save", "fit02", "no link") not in bed.timeline
    assert not [p for p in (tmp_path / "saves").iterdir() if "fit02" in p.name]


async def test_a_layout_image_saved_from_one_node_loads_onto_another(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The save's producer and the load's restore agree: each partition's data lands at its place, the swap
    is recreated with its UUID and label, the table's area is copied; the free space is not written."""
    [fit01] = layout_fakes(1)
    _, results = await run_layout_save(tmp_path, monkeypatch, [fit01])
    assert results[1].ok
    path = layout_target(tmp_path, "fit01")
    blank = FakeNode(make_node(2), bytearray(1 << 20))
    bed = FakeTestbed(tmp_path / "pxelinux.cfg", PXE_FILE, [blank])
    bed.install(monkeypatch)
    image = Image(path, ".ptcl.zst", path.stat().st_size, path.stat().st_mtime)
    plan = LoadPlan(nodes=[blank.node], image=image, transport=Udpcast(), server_ip="127.0.0.1", bandwidth={2: 500},
                    disk={2: "/dev/sda"}, timeout=5.0, reset_after=True, power=PowerOptions(timeout=1.0),
                    boot=FAST_BOOT, stall_timeout=0.5, pattern_multicast="234.5.6.*", pattern_port="10000 + *",
                    pattern_size=8, lock_dir=tmp_path / "locks", log_dir=tmp_path / "logs")
    state = job_state(bed)
    try:
        [result] = await load(plan, state, bed.emit)
    finally:
        state.cleanup()
    assert result.ok, result.detail
    source, copy = bytes(fit01.disk), bytes(blank.disk)
    assert copy[:32 * 1024] == source[:32 * 1024]
    for part in read_layout(path).partitions:
        if part.used is not None:
            assert copy[part.start:part.start + part.used] == source[part.start:part.start + part.used], part
            assert copy[part.start + part.used:part.start + part.size] == bytes(part.size - part.used), part
    swap = copy[736 * 1024:740 * 1024]
    assert swap[-10:] == b"SWAPSPACE2" and swap[1036:1052] == uuid.UUID(fs_uuid("swap", 3)).bytes
    assert swap[1052:1056] == b"swap"


@pytest.mark.parametrize("problem", ["exists", "same file", "unwritable", "no imaging-OS config"])
async def test_a_script_calling_the_job_gets_the_preflight_checks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str) -> None:
    """``jobs.save.save`` itself refuses, before any node is touched, what the command line refuses."""
    bed = make_bed(tmp_path, fakes(1, 2))
    bed.install(monkeypatch)
    plan = plan_for(tmp_path, bed)
    if problem == "exists":
        plan.targets[2].write_bytes(b"an earlier save\n")
    elif problem == "same file":
        plan = replace(plan, targets=dict.fromkeys(plan.targets, plan.targets[1]))
    elif problem == "unwritable":
        plan = replace(plan, targets={n: tmp_path / "absent" / t.name for n, t in plan.targets.items()})
    else:
        (bed.config_dir / bed.imaging_os).unlink()
    with pytest.raises(UsageError):
        await save(plan, job_state(bed), bed.emit)
    assert bed.timeline == []
    if problem == "exists":
        assert plan.targets[2].read_bytes() == b"an earlier save\n"
        assert (await save(replace(plan, force=True, targets={1: plan.targets[1]}, nodes=plan.nodes[:1]),
                           job_state(bed), bed.emit))[0].ok
