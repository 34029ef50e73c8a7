"""The load job at the fast level: real ensure_reset, NextBoot, LockSet and udpcast transport over the
in-process fakes of tests/fakes.py (cards, telnet, sender); no root, no network, milliseconds."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from imaging.cli.settings import load_plan, next_boot
from imaging.config import Config
from imaging.disklayout import Layout
from imaging.errors import ImagingError
from imaging.events import NodeResult
from imaging.images import Image
from imaging.inventory import Inventory
from imaging.jobs.load import LoadPlan, load
from imaging.partclone import restore_weights
from imaging.power.base import PowerOptions
from imaging.transports.udpcast import Udpcast
from imaging.units import human_size
from tests.fakes import (
    DISK,
    FAST_BOOT,
    IMAGING_OS,
    FakeNode,
    FakeTestbed,
    fs_uuid,
    in_order,
    job_state,
    layout_image,
    links_left,
    make_bed,
    make_node,
    standard_layout,
)

MIB = 2**20


@pytest.fixture
def image(tmp_path: Path) -> Image:
    """A raw 64 KiB image."""
    path = tmp_path / "images" / "ubuntu.img"
    path.parent.mkdir()
    path.write_bytes(os.urandom(64 * 1024))
    return Image(path, ".img", path.stat().st_size, path.stat().st_mtime)


def fakes(*numbers: int, **faults: object) -> list[FakeNode]:
    """Healthy nodes with 1 MiB disks (each ``faults`` value applies to every one)."""
    return [FakeNode(make_node(n), bytearray(MIB), **faults) for n in numbers]  # type: ignore[arg-type]


def bed_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nodes: list[FakeNode]) -> FakeTestbed:
    """The fakes, installed where the load looks them up."""
    bed = make_bed(tmp_path, nodes)
    bed.install(monkeypatch)
    return bed


def plan_for(tmp_path: Path, bed: FakeTestbed, image: Image, **changes: object) -> LoadPlan:
    """A plan as the CLI builds it (500 Mibps, reset at the end), with ``changes``."""
    nodes = [fake.node for fake in bed.nodes.values()]
    plan = LoadPlan(nodes=nodes, image=image, transport=Udpcast(), server_ip="127.0.0.1",
                    bandwidth={n.number: 500 for n in nodes}, disk={n.number: "/dev/sda" for n in nodes},
                    timeout=5.0, reset_after=True, power=PowerOptions(timeout=1.0), boot=FAST_BOOT,
                    stall_timeout=0.2,  # a receiver the sender dropped fails after 0.2 s without progress
                    pattern_multicast="234.5.6.*", pattern_port="10000 + *", pattern_size=8,
                    lock_dir=tmp_path / "locks", log_dir=tmp_path / "logs")
    return replace(plan, **changes)  # type: ignore[arg-type]


async def run_load(bed: FakeTestbed, plan: LoadPlan) -> tuple[dict[int, NodeResult], list[str]]:
    """Run the load and its cleanup; every node's result, and the hosts whose link was left by the job."""
    state = job_state(bed)
    try:
        results = await load(plan, state, bed.emit)
        left = links_left(bed)
    finally:
        state.cleanup()
    assert [r.node for r in results] == list(plan.nodes)
    return {r.node.number: r for r in results}, left


def loaded(fake: FakeNode, image: Image) -> bool:
    """Does the node's disk start with the image?"""
    return bytes(fake.disk[:image.size]) == image.path.read_bytes()


async def test_each_node_boots_the_imaging_os_receives_the_image_then_boots_its_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image: Image) -> None:
    bed = bed_for(tmp_path, monkeypatch, fakes(1, 2, 3))
    results, left = await run_load(bed, plan_for(tmp_path, bed, image))
    assert {n: (r.ok, r.detail) for n, r in results.items()} == {n: (True, "loaded ubuntu.img") for n in (1, 2, 3)}
    [sender] = bed.senders
    assert (sender.option("--file"), sender.min_receivers, sender.bitrate) == (str(image.path), 3, 500 * MIB)
    assert sender.process is not None and sender.process.returncode is not None  # stopped and reaped
    for fake in bed.nodes.values():
        assert loaded(fake, image), fake.host
        assert fake.boots == [IMAGING_OS, DISK]
        # the link points at the imaging OS when the node resets, and is gone before the receiver runs:
        # a crash from then on boots the disk; the last reset boots the new disk
        assert in_order(bed.of(fake.host), ("boot", IMAGING_OS), ("receiver", "no link"), ("boot", DISK),
                        ("phase", "done")), bed.of(fake.host)
        assert bed.index("disk-size", fake.host) < bed.index("sender-start", str(sender.port))
    assert left == []


async def test_no_reset_leaves_the_nodes_in_the_imaging_os_with_their_links_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image: Image) -> None:
    bed = bed_for(tmp_path, monkeypatch, fakes(1, 2))
    results, left = await run_load(bed, plan_for(tmp_path, bed, image, reset_after=False))
    assert all(r.ok and r.detail == "loaded ubuntu.img (left in the imaging OS)" for r in results.values())
    for fake in bed.nodes.values():
        assert loaded(fake, image)
        assert (fake.boots, fake.booted) == ([IMAGING_OS], IMAGING_OS)
        assert ("receiver", fake.host, "no link") in bed.timeline
    assert left == []


async def test_a_reset_the_card_ignores_is_a_power_cycle_and_an_off_node_is_turned_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image: Image) -> None:
    fit01, fit02, fit03 = fakes(1, 2, 3)
    fit02.reset_ignored = True
    fit03.power, fit03.booted = "off", None
    bed = bed_for(tmp_path, monkeypatch, [fit01, fit02, fit03])
    results, _ = await run_load(bed, plan_for(tmp_path, bed, image))
    assert all(r.ok for r in results.values()), results
    assert all(loaded(fake, image) for fake in (fit01, fit02, fit03))
    booting = {e.node: e.message for e in bed.events if e.phase == "booting"}
    assert booting == {"fit01": "", "fit02": "reset ignored by the CMC, power-cycled", "fit03": "turned on"}
    assert in_order(bed.of("fit02"), ("cmc", "reset"), ("cmc", "off"), ("cmc", "on"), ("boot", IMAGING_OS),
                    ("receiver", "no link"))
    first = next(entry for entry in bed.of("fit03") if entry[0] == "cmc")
    assert first == ("cmc", "on")
    assert fit02.boots == fit03.boots == [IMAGING_OS, DISK]


async def test_the_sender_starts_once_each_node_is_ready_or_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image: Image) -> None:
    fast, slow, small, dead = fakes(1, 2, 3, 4)
    slow.boot_delay = 0.3
    small.boot_delay, small.disk_size = 0.4, 1024  # the slowest, then fails its disk check
    dead.cmc_down = True
    bed = bed_for(tmp_path, monkeypatch, [fast, slow, small, dead])
    results, _ = await run_load(bed, plan_for(tmp_path, bed, image))
    assert results[1].ok and results[2].ok
    assert results[3].detail.startswith("disk too small: fit03 has 1.0 KiB, the image needs 64.0 KiB")
    assert results[4].detail.startswith("unreachable (timeout 1s)")
    [sender] = bed.senders
    start = bed.index("sender-start", str(sender.port))
    assert sender.min_receivers == 2
    for host in ("fit01", "fit02", "fit03"):
        assert bed.index("disk-size", host) < start, host
    assert bed.index("cmc", "fit04", "status", "no answer") < start
    assert bed.index("phase", "fit01", "ready") < start and bed.index("phase", "fit02", "ready") < start
    assert loaded(fast, image) and loaded(slow, image)  # the slow node did not miss the transfer
    assert not loaded(small, image) and not loaded(dead, image)


async def test_one_sender_per_bandwidth_each_capped_at_its_nodes_bandwidth(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image: Image) -> None:
    bed = bed_for(tmp_path, monkeypatch, fakes(1, 2, 3))
    plan = plan_for(tmp_path, bed, image, bandwidth={1: 100, 2: 200, 3: 100})
    results, _ = await run_load(bed, plan)
    assert all(r.ok for r in results.values())
    by_rate = {s.bitrate: s for s in bed.senders}
    assert sorted(by_rate) == [100 * MIB, 200 * MIB]
    assert (by_rate[100 * MIB].min_receivers, by_rate[200 * MIB].min_receivers) == (2, 1)
    assert len({(s.option("--mcast-data-address"), s.port) for s in bed.senders}) == 2
    assert {f.host: f.bitrate for f in bed.nodes.values()} == {"fit01": 100 * MIB, "fit02": 200 * MIB,
                                                               "fit03": 100 * MIB}


@pytest.mark.parametrize(("option", "expected"), [(None, {"fit01": 300, "fit02": 50}),
                                                  (200, {"fit01": 200, "fit02": 200})])
async def test_b_overrides_the_configured_bandwidths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     image: Image, option: int | None,
                                                     expected: dict[str, int]) -> None:
    bed = bed_for(tmp_path, monkeypatch, fakes(1, 2))
    conf = tmp_path / "site.conf"
    conf.write_text(f"[nodes]\nbandwidth = 300\nbandwidth.fit02 = 50\nidle_after_reset = 0.1\n"
                    f"[networking]\ntelnet_backoff = 0.01\n[transport]\nserver_ip = 127.0.0.1\n"
                    f"[pxelinux]\nconfig_dir = {bed.config_dir}\n[locks]\nlock_dir = {tmp_path / 'locks'}\n"
                    f"[logging]\ntransport_logs = {tmp_path / 'logs'}\n")
    config = Config.from_files([conf])
    nodes = [fake.node for fake in bed.nodes.values()]
    plan = load_plan(config, Inventory(nodes), nodes, image, Udpcast(), bandwidth=option, timeout=5.0,
                     reset_after=True, lock_wait=0.0)
    state = job_state(bed)
    assert next_boot(config, nodes).places == state.nextboot.places
    try:
        results = await load(plan, state, bed.emit)
    finally:
        state.cleanup()
    assert all(r.ok for r in results), results
    assert {f.host: f.bitrate for f in bed.nodes.values()} == {h: v * MIB for h, v in expected.items()}
    assert sorted(s.bitrate for s in bed.senders) == sorted({v * MIB for v in expected.values()})


async def test_a_failing_node_does_not_stop_the_others_and_names_its_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image: Image) -> None:
    fit01, fit02, fit03, fit04 = fakes(1, 2, 3, 4)
    fit02.receiver_exit = 137  # killed mid-transfer
    fit03.never_boots = True
    bed = bed_for(tmp_path, monkeypatch, [fit01, fit02, fit03, fit04])
    boot = replace(FAST_BOOT, boot_timeout=0.3)
    results, _ = await run_load(bed, plan_for(tmp_path, bed, image, boot=boot))
    log = tmp_path / "logs" / "fit02.log"
    assert (results[1].ok, results[4].ok) == (True, True)
    assert not results[2].ok and results[2].detail.startswith(f"receiver killed by signal 9 (log {log})")
    assert results[3].detail.startswith("imaging OS not up within boot_timeout 0.3s"), results[3].detail
    assert loaded(fit01, image) and loaded(fit04, image) and not loaded(fit02, image)
    assert fit01.boots == fit04.boots == [IMAGING_OS, DISK]
    text = log.read_text()
    assert text.startswith("$ udp-receiver ") and "bytes= 32768  (100.00 Mbps)\nexit status 137\n" in text
    finals = {e.node: e.phase for e in bed.events if e.phase in ("done", "failed")}
    assert finals == {"fit01": "done", "fit02": "failed", "fit03": "failed", "fit04": "done"}


async def test_a_sender_that_cannot_start_fails_its_nodes_with_its_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image: Image) -> None:
    bed = bed_for(tmp_path, monkeypatch, fakes(1, 2))
    bed.sender_missing = True
    results, left = await run_load(bed, plan_for(tmp_path, bed, image))
    for result in results.values():
        assert not result.ok and result.detail.startswith(
            "cannot start udp-sender: No such file or directory; install it or set its path in the config")
    assert left == []  # the links went as soon as telnet was up


@pytest.mark.parametrize(("reset_after", "after", "boots"), [(True, "; reset to boot its disk", [IMAGING_OS, DISK]),
                                                             (False, "; left in the imaging OS (-n)", [IMAGING_OS])])
async def test_a_node_failing_in_the_imaging_os_is_reset_into_its_disk_unless_no_reset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image: Image, reset_after: bool, after: str,
        boots: list[str]) -> None:
    fit01, fit02 = fakes(1, 2)
    fit02.receiver_exit = 1
    bed = bed_for(tmp_path, monkeypatch, [fit01, fit02])
    results, left = await run_load(bed, plan_for(tmp_path, bed, image, reset_after=reset_after))
    assert results[1].ok
    assert not results[2].ok and results[2].detail.endswith(after), results[2].detail
    assert fit02.boots == boots
    assert left == []


async def test_a_node_without_the_receiver_program_fails_alone_before_the_sender_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image: Image) -> None:
    fit01, fit02 = fakes(1, 2)
    fit02.missing = ("udp-receiver",)
    bed = bed_for(tmp_path, monkeypatch, [fit01, fit02])
    results, _ = await run_load(bed, plan_for(tmp_path, bed, image))
    assert results[1].ok and loaded(fit01, image)
    assert not results[2].ok and "udp-receiver" in results[2].detail
    assert not [entry for entry in bed.timeline if entry[:2] == ("receiver", "fit02")]  # never run
    assert bed.senders[0].min_receivers == 1


async def test_a_receiver_is_judged_by_its_progress_not_by_the_sender_s_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image: Image) -> None:
    """A receiver that goes on writing (decompressing) for 5 stall timeouts after the sender ended
    succeeds; one whose progress stops fails after stall_timeout, naming it, and alone."""
    fit01, fit02, fit03 = fakes(1, 2, 3)
    fit02.write_tail = 1.0
    fit03.hangs = True
    bed = bed_for(tmp_path, monkeypatch, [fit01, fit02, fit03])
    results, _ = await run_load(bed, plan_for(tmp_path, bed, image))
    assert results[1].ok and results[2].ok, results
    assert loaded(fit02, image)
    assert not results[3].ok
    assert "made no progress for 0.2s ([nodes] stall_timeout)" in results[3].detail, results[3].detail
    assert results[3].seconds < 2


# -- file-system-aware loads (.ptcl.zst): one pipe, each partition restored at its offset ------------------------
@pytest.fixture
def source_disk() -> bytes:
    """The disk a layout image was saved from: 1 MiB of random bytes, partitioned as :func:`standard_layout`."""
    return os.urandom(1 << 20)


@pytest.fixture
def recorded() -> Layout:
    """The layout a save of :func:`standard_layout` records (the table's area, the used bytes partclone said)."""
    layout = standard_layout()
    return replace(layout, head=32 * 1024, table="label: gpt\n")


@pytest.fixture
def layout_img(tmp_path: Path, recorded: Layout, source_disk: bytes) -> Image:
    """A ``.ptcl.zst`` of ``source_disk``: FAT (64 KiB used), ext4 (128 KiB used), swap, 64 KiB raw."""
    return layout_image(tmp_path / "images" / "ubuntu.ptcl.zst", recorded, source_disk)


def restored(fake: FakeNode, layout: Layout, source: bytes) -> bool:
    """Does the node's disk hold the image's table area and each partition's used bytes at its place?"""
    disk = bytes(fake.disk)
    return disk[:layout.head] == source[:layout.head] and all(
        disk[p.start:p.start + p.used] == source[p.start:p.start + p.used] for p in layout.partitions if p.used)


def step_percents(layout: Layout) -> set[float]:
    """Every percent the restore's steps can show: at each step's start and at each partclone progress line
    (the fake prints 25, 50, 75 and 100 %), each step weighted by the bytes it writes."""
    weights = restore_weights(layout)
    total = sum(weights.values())
    values, done = {0.0}, 0
    for step, weight in weights.items():
        values.add(round(100 * done / total, 6))
        if step != "head" and next(p for p in layout.partitions if str(p.number) == step).method != "partclone.dd":
            values.update(round(100 * (done + weight * k / 4) / total, 6) for k in range(1, 5))
        done += weight
    return values | {round(100 * done / total, 6)}


async def test_a_layout_load_restores_each_partition_at_its_offset_with_progress_from_its_steps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout_img: Image, recorded: Layout,
        source_disk: bytes) -> None:
    bed = bed_for(tmp_path, monkeypatch, fakes(1, 2))
    results, left = await run_load(bed, plan_for(tmp_path, bed, layout_img))
    assert {n: (r.ok, r.detail) for n, r in results.items()} == {n: (True, "loaded ubuntu.ptcl.zst") for n in (1, 2)}
    for fake in bed.nodes.values():
        assert restored(fake, recorded, source_disk), fake.host
        swap = bytes(fake.disk[736 * 1024:740 * 1024])
        assert swap[-10:] == b"SWAPSPACE2" and swap[1036:1052] == uuid.UUID(fs_uuid("swap", 3)).bytes
        assert ("sfdisk", fake.host, "relocate") in bed.timeline  # the backup GPT at this disk's end
        assert in_order(bed.of(fake.host), ("boot", IMAGING_OS), ("receiver", "no link"), ("boot", DISK),
                        ("phase", "done"))
        receiving = [e for e in bed.events if e.node == fake.host and e.phase == "receiving"]
        percents = [e.percent for e in receiving if e.percent is not None]
        # the percent is the restore's (each partition weighted by what it writes), not the bytes received
        assert percents == sorted(percents) and len(percents) >= 6
        assert {round(p, 6) for p in percents} <= step_percents(recorded), percents
        messages = {e.message for e in receiving}
        assert {"writing partition 1 (vfat, /dev/sda1)", "writing partition 2 (ext4, /dev/sda2)"} <= messages
        log = (tmp_path / "logs" / f"{fake.host}.log").read_text()
        assert "__IMAGING_PART__ 2\n" in log and "Transfer complete." in log and log.endswith("exit status 0\n")
    [sender] = bed.senders
    assert sender.option("--file") == str(layout_img.path) and sender.min_receivers == 2
    assert left == []


async def test_a_layout_load_checks_the_disk_against_the_layout_s_needed_size(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout_img: Image, recorded: Layout) -> None:
    fit01, fit02 = fakes(1, 2)
    fit02.disk_size = 512 * 1024  # holds the image's data (288 KiB), not its partitions (up to 864 KiB)
    bed = bed_for(tmp_path, monkeypatch, [fit01, fit02])
    results, _ = await run_load(bed, plan_for(tmp_path, bed, layout_img))
    assert recorded.needed == 880 * 1024 + 512 and recorded.used < fit02.disk_size
    assert results[1].ok
    assert results[2].detail.startswith(f"disk too small: fit02 has {human_size(512 * 1024)}, the image needs"
                                        f" {human_size(recorded.needed)}"), results[2].detail
    assert not [entry for entry in bed.timeline if entry[:2] == ("receiver", "fit02")]
    assert bed.senders[0].min_receivers == 1


async def test_a_receiver_killed_inside_partition_2_names_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout_img: Image, recorded: Layout,
        source_disk: bytes) -> None:
    fit01, fit02 = fakes(1, 2)
    fit02.receiver_exit, fit02.fail_in = 137, 2  # udp-receiver killed while the ext4 is being written
    bed = bed_for(tmp_path, monkeypatch, [fit01, fit02])
    results, left = await run_load(bed, plan_for(tmp_path, bed, layout_img))
    assert results[1].ok and restored(fit01, recorded, source_disk)
    assert ("receiver-killed", "fit02", "2") in bed.timeline
    detail = results[2].detail
    assert not results[2].ok and "partition 2 (ext4, /dev/sda2)" in detail, detail
    assert f"(log {tmp_path / 'logs' / 'fit02.log'})" in detail
    assert fit02.boots == [IMAGING_OS, DISK] and left == []


async def test_a_restore_failing_inside_partition_2_names_it_and_what_partclone_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout_img: Image) -> None:
    fit01, fit02 = fakes(1, 2)
    fit02.fail_in, fit02.fail_reason = 2, "No space left on device"
    bed = bed_for(tmp_path, monkeypatch, [fit01, fit02])
    results, _ = await run_load(bed, plan_for(tmp_path, bed, layout_img))
    assert results[1].ok
    detail = results[2].detail
    assert not results[2].ok and "No space left on device" in detail and "partition 2 (ext4, /dev/sda2)" in detail
    assert ("restore-failed", "fit02", "2") in bed.timeline


async def test_a_layout_load_is_judged_by_the_restore_s_progress(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout_img: Image, recorded: Layout,
        source_disk: bytes) -> None:
    """A restore that goes on writing for 5 stall timeouts after the last byte came succeeds; one that stops
    printing inside partition 2 fails after stall_timeout, naming the partition, and alone."""
    fit01, fit02, fit03 = fakes(1, 2, 3)
    fit02.write_tail = 1.0
    fit03.hangs, fit03.fail_in = True, 2
    bed = bed_for(tmp_path, monkeypatch, [fit01, fit02, fit03])
    results, _ = await run_load(bed, plan_for(tmp_path, bed, layout_img))
    assert results[1].ok and results[2].ok, results
    assert restored(fit02, recorded, source_disk)
    assert ("hung", "fit03", "2") in bed.timeline
    detail = results[3].detail
    assert not results[3].ok
    assert "made no progress for 0.2s ([nodes] stall_timeout)" in detail, detail
    assert "while writing partition 2 (ext4, /dev/sda2)" in detail, detail
    assert results[3].seconds < 2


async def test_a_layout_load_names_a_missing_restore_program_before_the_sender_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout_img: Image) -> None:
    fit01, fit02 = fakes(1, 2)
    fit02.missing = ("mkswap",)
    bed = bed_for(tmp_path, monkeypatch, [fit01, fit02])
    results, _ = await run_load(bed, plan_for(tmp_path, bed, layout_img))
    assert results[1].ok
    assert not results[2].ok and "has no mkswap" in results[2].detail
    assert not [entry for entry in bed.timeline if entry[:2] == ("receiver", "fit02")]


@pytest.mark.parametrize("problem", ["empty image", "no sender", "no imaging-OS config", "log folder"])
async def test_a_script_calling_the_job_gets_the_preflight_checks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image: Image, problem: str) -> None:
    """The checks the README promises run inside ``jobs.load.load``: a script that calls the job, not the
    command line, is refused the same way before any node is touched."""
    bed = bed_for(tmp_path, monkeypatch, fakes(1, 2))
    plan = plan_for(tmp_path, bed, image)
    if problem == "empty image":
        image.path.write_bytes(b"")
    elif problem == "no sender":
        plan = replace(plan, transport=Udpcast(sender="no-such-udp-sender"))
    elif problem == "no imaging-OS config":
        (bed.config_dir / bed.imaging_os).unlink()
    else:
        (tmp_path / "logs").write_text("a file where the log folder goes\n")
    state = job_state(bed)
    with pytest.raises(ImagingError) as refused:
        await load(plan, state, bed.emit)
    assert refused.value.exit_code == 2, refused.value.message
    assert bed.timeline == [] and links_left(bed) == [] and not (tmp_path / "locks").exists()
