"""File-system-aware images end to end on the emulated testbed: a node's disk with a GPT, a FAT, an ext4
with files and swap, and deleted data in its free blocks, saved as ``.ptcl.zst`` (what the file systems
use), loaded on three other nodes: each restored disk has the same table, fsck-clean file systems with
every file's sha256 equal, the swap's UUID and label, and boots to ssh saying the image's identity.
Faults with the new format: a disk too small, a receiver killed inside a partition, a node reset and a
Ctrl-C mid-save: nothing partial published, every link restored, the failure naming the partition."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging.disklayout import read_layout
from imaging_testbed.disks import DiskReport, DiskSpec
from imaging_testbed.images import new_identity
from tests.testbed.conftest import Testbed, started_testbed
from tests.testbed.product import Run
from tests.testbed.test_save import Follow, links, save, saves, throttle, unthrottle

NODES = 5
DISK_MIB = 128
SPEC = DiskSpec(size_mib=DISK_MIB, files_mib=24, deleted_mib=64, seed=11)
DEADLINE = 40


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A testbed of 5 nodes with 128 MiB disks, for this module."""
    with started_testbed(tmp_path_factory.mktemp("ptclbed"), NODES, disk_mib=DISK_MIB) as testbed:
        yield testbed


@pytest.fixture(scope="module")
def source(bed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DiskReport, str]:
    """Node 1's disk made like a used system's (written while the node is off), its saved image, and its
    report and identity."""
    identity = new_identity("ptcl")
    report = bed.used_disk(1, SPEC, identity)
    folder = tmp_path_factory.mktemp("ptclsaves")
    done = ptcl_save(bed, folder, "-o", "used", "1")
    assert done.code == 0, done.out + done.err
    images = sorted(folder.glob("saving__fit01__*__used.ptcl.zst"))
    assert len(images) == 1, sorted(p.name for p in folder.iterdir())
    return images[0], report, identity


def ptcl_save(bed: Testbed, cwd: Path, *args: str) -> Run:
    """``imaging-save`` in its default format, file-system-aware."""
    return save(bed, cwd, *args, raw=False)


@pytest.fixture(autouse=True)
def healthy(bed: Testbed) -> Iterator[None]:
    """Every test ends with healthy, unthrottled nodes."""
    yield
    for number in range(1, NODES + 1):
        bed.fault(number, "clear")
        unthrottle(bed, number)


def load(bed: Testbed, cwd: Path, *args: str) -> Run:
    """``imaging-load`` in the server namespace."""
    return save(bed, cwd, *args, command="load", timeout=120)


def test_round_trip_keeps_tables_files_and_boots(bed: Testbed, source: tuple[Path, DiskReport, str],
                                                  tmp_path: Path) -> None:
    image, report, identity = source
    layout = read_layout(image)
    assert [(p.number, p.fs, p.method) for p in layout.partitions] == [
        (1, "vfat", "partclone.vfat"), (2, "ext4", "partclone.ext4"), (3, "swap", "swap")]
    # the image holds the files (24 MiB, random) and not the 64 MiB deleted, nor the empty disk
    assert 24 << 20 < image.stat().st_size < 36 << 20
    assert 24 << 20 < layout.used < 40 << 20 and layout.needed <= DISK_MIB << 20
    listed = save(bed, image.parent, "-l", command="list")
    assert "gpt 1:vfat 2:ext4 3:swap" in listed.out, listed.out + listed.err

    done = load(bed, tmp_path, "-i", str(image), "-t", "90", "2-4")
    assert done.code == 0, done.out + done.err
    wait = save(bed, tmp_path, "-t", "30", "2-4", command="wait")
    assert wait.code == 0, wait.out + wait.err
    for number in (2, 3, 4):
        said = bed.ssh(number, "cat /etc/imaging-image", timeout=10)
        assert said.stdout.strip() == identity, said
    bed.assert_disks_hold((2, 3, 4), report)
    assert links(bed) == []


def test_a_disk_too_small_is_refused_before_writing(bed: Testbed, source: tuple[Path, DiskReport, str],
                                                    tmp_path: Path) -> None:
    image, _, _ = source
    bed.fault(5, "disk=small:64")
    done = load(bed, tmp_path, "-i", str(image), "-t", str(DEADLINE), "5")
    assert done.code == 1
    assert "disk too small: fit05 has 64" in done.out + done.err, done.out + done.err
    assert links(bed) == []


def test_a_receiver_killed_inside_a_partition_names_it(bed: Testbed, source: tuple[Path, DiskReport, str],
                                                       tmp_path: Path) -> None:
    image, _, _ = source
    bed.fault(5, f"receiver=die:{12 << 20}")  # 12 MiB of the stream: inside the ext4's files
    done = load(bed, tmp_path, "-i", str(image), "-t", str(DEADLINE), "5")
    assert done.code == 1
    assert "partition 2 (ext4" in done.out, done.out + done.err
    assert links(bed) == []


@pytest.mark.parametrize("strike", ["reset", "sigint"])
def test_a_save_struck_mid_partition_publishes_nothing(bed: Testbed, source: tuple[Path, DiskReport, str],
                                                       tmp_path: Path, strike: str) -> None:
    """Node 1 saved again, slowed down (its files then take ~6 s); struck while partclone reads the ext4."""
    throttle(bed, 1, "32mbit")
    follow = Follow(bed, tmp_path, "-o", "struck", "-t", str(DEADLINE), "1", raw=False)
    follow.wait_for(lambda e: e.get("phase") == "saving" and "partition 2" in (e.get("message") or "")
                    and (e.get("percent") or 0) >= 30, "reading partition 2", timeout=DEADLINE)
    if strike == "reset":
        assert bed.cmc(1, "reset").stdout.strip() == "ok"
    else:
        follow.process.send_signal(signal.SIGINT)
    code, seconds, summary, err = follow.finish()
    assert code == (130 if strike == "sigint" else 1), err
    assert seconds < DEADLINE + 3
    assert saves(tmp_path) == [] and links(bed) == []
    assert "Traceback" not in err
    if strike == "reset":
        detail = summary["summary"][0]["detail"]
        assert "partition 2 (ext4, /dev/sda2)" in detail, detail
