"""The save job at the fast level: the real save receiver (a TCP listener on 127.0.0.1), ensure_reset,
NextBoot and LockSet, over the fakes of tests/fakes.py; each fake node streams its disk from its own
loopback address, as ``zstd | nc`` would.  No root; milliseconds."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from imaging.events import NodeResult
from imaging.jobs.save import SavePlan, save, stamp_command, stamp_line
from imaging.transports.udpcast import Udpcast
from tests.fakes import DISK, FAST_BOOT, IMAGING_OS, FakeNode, FakeTestbed, in_order, job_state, make_bed, make_node

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
                    timeout=5.0, reset_after=True, cmc_timeout=1.0, cmc_port=80, boot=FAST_BOOT,
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
