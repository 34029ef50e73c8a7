"""An emulated node's disk is a block device with partitions (a loop device), as on hardware.

The loop devices themselves first (attach, size limit, partitions, AUTOCLEAR), then end to end on a
testbed of three nodes: the imaging OS sees ``/dev/sda`` and its partitions, ``partclone`` saves a
partition over telnet, what the node writes is in the disk file once it is off, no loop device stays
attached after off, reset and ``down`` (even after the controller was killed), ``disk=small`` is a
small disk, the installed OS finds its identity in a partition, and a node without a loop device
(``disk=noloop``) boots its bind-mounted file as before.  Needs root.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging.errors import UsageError
from imaging_testbed import images, lifecycle, loopdev
from imaging_testbed.faults import Faults, check_vm_knob
from imaging_testbed.procs import tracked

from .conftest import Testbed, missing_requirements, started_testbed

MIB = 1 << 20
DISK_MIB = 64
FAT_START, FAT_MIB = 1, 16  # partition 1: a FAT holding the image's identity, at 1 MiB
EXT4_START = FAT_START + FAT_MIB  # partition 2: an ext4, to the end of the disk
MTOOLS = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def need_root() -> None:
    """Skip where the testbed cannot run (not root, a tool missing)."""
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)


def sh(*argv: str | Path, input: str | None = None, env: dict[str, str] | None = None) -> str:
    """Run a program on the host; its output (CalledProcessError when it fails)."""
    return subprocess.run([str(a) for a in argv], input=input, capture_output=True, text=True, check=True,
                          env=env).stdout


def partitioned_disk(path: Path, identity: str, size_mib: int = DISK_MIB) -> None:
    """Write at ``path`` a disk of ``size_mib`` MiB: an MBR, a FAT with ``identity`` in
    /etc/imaging-image at 1 MiB (16 MiB), then an ext4 to the end."""
    path.unlink(missing_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size_mib * MIB)
    sh("sfdisk", "-q", path, input=f"label: dos\nstart={FAT_START * 2048}, size={FAT_MIB * 2048}, type=c\n"
                                   f"start={EXT4_START * 2048}, type=83\n")
    with tempfile.TemporaryDirectory() as work:
        fat, ext4, text = Path(work, "p1"), Path(work, "p2"), Path(work, "identity")
        sh("mkfs.vfat", "-C", fat, str(FAT_MIB * 1024))
        text.write_text(identity + "\n")
        sh("mmd", "-i", fat, "::/etc", env=MTOOLS)
        sh("mcopy", "-i", fat, text, "::/etc/imaging-image", env=MTOOLS)
        with open(ext4, "wb") as handle:
            handle.truncate((size_mib - EXT4_START) * MIB)
        sh("mkfs.ext4", "-q", "-F", ext4)
        with open(path, "r+b") as disk:
            for part, start in ((fat, FAT_START), (ext4, EXT4_START)):
                disk.seek(start * MIB)
                disk.write(part.read_bytes())


def wait_detached(path: Path, timeout: float = 3.0) -> list[str]:
    """The loop devices still attached to ``path`` after waiting up to ``timeout`` s for none."""
    deadline = time.monotonic() + timeout
    while (found := loopdev.attached_to(path)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


# --- the loop devices, without a testbed ----------------------------------------------------

@pytest.mark.parametrize("configure", [True, False], ids=["LOOP_CONFIGURE", "LOOP_SET_FD"])
def test_attach_gives_a_limited_device_with_partitions_that_autoclears(tmp_path: Path, configure: bool) -> None:
    need_root()
    disk = tmp_path / "disk"
    partitioned_disk(disk, images.new_identity("unit"))
    loop = loopdev.attach(disk, 40 * MIB, configure=configure)
    bdi = loop.sys_dir / "bdi"
    pacing = {name: (bdi / name).read_text() for name in ("strict_limit", "max_ratio_fine")}
    try:
        assert loop.limit_dirty(8 * MIB)
        assert (bdi / "strict_limit").read_text().strip() == "1"
        assert abs(int((bdi / "max_bytes").read_text()) - 8 * MIB) < MIB  # kept as a ratio: rounded
        assert loopdev.attached_to(disk) == [loop.name]
        st = disk.stat()
        st_dev, st_ino, limit, flags = loop.status()
        assert (st_dev, st_ino, limit) == (st.st_dev, st.st_ino, 40 * MIB)
        assert flags & (loopdev.LO_FLAGS_AUTOCLEAR | loopdev.LO_FLAGS_PARTSCAN) == 12
        assert loop.size() == 40 * MIB  # the limit, not the file's 64 MiB
        parts = asyncio.run(loopdev.add_partitions(loop))
        assert [p.number for p in parts] == [1, 2]
        assert [p.name for p in parts] == [f"{loop.name}p1", f"{loop.name}p2"]
        sizes = [int((loop.sys_dir / p.name / "size").read_text()) * 512 for p in parts]
        assert sizes == [FAT_MIB * MIB, (40 - EXT4_START) * MIB]  # the ext4 cut at the device's end
        assert sh("blkid", "-p", "-o", "value", "-s", "TYPE", f"/dev/{parts[0].name}").strip() == "vfat"
        device = os.open(loop.path, os.O_RDWR)  # through the device: its page cache only
        try:
            assert os.pwrite(device, b"through the loop", 39 * MIB) == 16
            assert os.pwrite(device, b"past the end", 40 * MIB - 4) == 4  # cut at the end
            with pytest.raises(OSError) as full:
                os.pwrite(device, b"past the end", 40 * MIB)
            assert full.value.errno == errno.ENOSPC
        finally:
            os.close(device)
    finally:
        loop.close()
    assert wait_detached(disk) == []
    assert not (loop.sys_dir / f"{loop.name}p1").exists()
    assert {name: (bdi / name).read_text() for name in pacing} == pacing  # the device's pacing put back
    with open(disk, "rb") as handle:
        handle.seek(39 * MIB)
        assert handle.read(16) == b"through the loop"  # flushed at the last close


def test_a_cap_left_by_a_killed_controller_is_undone(tmp_path: Path) -> None:
    need_root()
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(MIB))
    loop = loopdev.attach(disk, MIB)
    bdi = loop.sys_dir / "bdi"
    try:
        (bdi / "strict_limit").write_text("1")  # as a controller killed while it held the device leaves it
        (bdi / "max_ratio").write_text("1")
        assert loop.limit_dirty()
    finally:
        loop.close()
    assert wait_detached(disk) == []
    assert [(bdi / name).read_text().strip() for name in ("strict_limit", "max_ratio")] == ["0", "100"]


def test_attach_says_why_there_is_no_loop_device(tmp_path: Path) -> None:
    need_root()
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(MIB))
    with pytest.raises(loopdev.LoopUnavailable, match="cannot open /nonexistent/loop-control"):
        loopdev.attach(disk, MIB, control=Path("/nonexistent/loop-control"))
    with pytest.raises(loopdev.LoopUnavailable, match=r"cannot open .*missing"):
        loopdev.attach(tmp_path / "missing", MIB)
    assert loopdev.attached_to(disk) == []


def test_table_partitions_as_the_kernel_shows_them() -> None:
    table = {"partitiontable": {"label": "dos", "device": "/dev/loop7", "unit": "sectors", "sectorsize": 512,
                                "partitions": [
                                    {"node": "/dev/loop7p1", "start": 2048, "size": 4096, "type": "83"},
                                    {"node": "/dev/loop7p2", "start": 6144, "size": 20000, "type": "5"},
                                    {"node": "/dev/loop7p5", "start": 8192, "size": 100000, "type": "83"},
                                    {"node": "/dev/loop7p3", "start": 300000, "size": 10, "type": "83"}]}}
    got = loopdev.table_partitions(json.dumps(table), "/dev/loop7", 20 * MIB)
    assert got == [loopdev.TablePartition(1, 2048 * 512, 4096 * 512),
                   loopdev.TablePartition(2, 6144 * 512, 1024),  # extended: its first two sectors
                   loopdev.TablePartition(5, 8192 * 512, 20 * MIB - 8192 * 512)]  # cut; p3 is past the end
    assert loopdev.table_partitions("", "/dev/loop7", MIB) == []
    with pytest.raises(ValueError):
        loopdev.table_partitions(json.dumps({"partitiontable": {"partitions": [{"node": "/dev/sdb1", "start": 1,
                                                                                "size": 1}]}}), "/dev/loop7", MIB)


def test_the_noloop_fault() -> None:
    faults = Faults().apply("disk=small:8").apply("disk=noloop")
    assert faults.describe() == ["disk=small:8", "disk=noloop"]
    assert faults.apply("disk=ok") == Faults()
    with pytest.raises(UsageError, match="never a loop device"):
        check_vm_knob("disk=noloop")
    check_vm_knob("disk=small:8")


# --- end to end ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A testbed of three nodes for this module: node 1 partitioned, node 2 for disk=small, node 3 for disk=noloop."""
    with started_testbed(tmp_path_factory.mktemp("blockdev"), 3, disk_mib=DISK_MIB) as testbed:
        for number in (1, 2, 3):
            testbed.wait_stage(number, "ssh")
        yield testbed
    for number in (1, 2, 3):
        assert wait_detached(testbed.disk(number)) == [], "a loop device outlived down"


def power_off(bed: Testbed, number: int) -> None:
    """Power the node off and wait until it is."""
    assert bed.cmc(number, "off").stdout.strip() == "ok"
    bed.wait_stage(number, "off")


def fresh_disk(bed: Testbed, number: int, identity: str, imaging_os: bool) -> None:
    """Power the node off, give it a new partitioned disk holding ``identity``, boot it."""
    power_off(bed, number)
    partitioned_disk(bed.disk(number), identity)
    bed.set_next_boot(number, imaging_os)
    assert bed.cmc(number, "on").stdout.strip() == "ok"
    bed.wait_stage(number, "telnet" if imaging_os else "ssh")


def after_begin(output: str) -> list[str]:
    """The lines a telnet command printed after its ``echo BEGIN`` (the node's banner left out)."""
    lines = [line.rstrip("\r") for line in output.splitlines()]
    start = max(n for n, line in enumerate(lines) if line.endswith("BEGIN"))  # after a prompt, maybe
    return lines[start + 1:]


def console(bed: Testbed, number: int) -> str:
    """The node's console log so far."""
    return bed.layout.console_log(bed.node(number)).read_text()


def test_the_imaging_os_sees_the_disk_and_its_partitions(bed: Testbed) -> None:
    fresh_disk(bed, 1, images.new_identity("parted"), imaging_os=True)
    disk = bed.disk(1)
    [name] = loopdev.attached_to(disk)
    answer = bed.telnet(1, "echo BEGIN; for d in /dev/sda /dev/sda1 /dev/sda2 /dev/sda3; do"
                           " [ -b $d ] && echo block $d; done;"
                           " stat -c '%n %Hr:%Lr' /dev/sda; blockdev --getsize64 /dev/sda /dev/sda1 /dev/sda2;"
                           " blkid -p -o value -s TYPE /dev/sda1 /dev/sda2; sfdisk --json /dev/sda")
    assert answer.returncode == 0, answer
    lines = after_begin(answer.stdout)
    assert lines[:3] == ["block /dev/sda", "block /dev/sda1", "block /dev/sda2"]  # no sda3
    assert lines[3] == f"/dev/sda {Path(f'/sys/block/{name}/dev').read_text().strip()}"
    assert lines[4:9] == [str(DISK_MIB * MIB), str(FAT_MIB * MIB), str((DISK_MIB - EXT4_START) * MIB), "vfat", "ext4"]
    table = json.loads("\n".join(lines[9:]))["partitiontable"]
    assert [(p["node"], p["start"]) for p in table["partitions"]] == [("/dev/sda1", 2048), ("/dev/sda2", 34816)]
    assert f"disk: /dev/{name}, {DISK_MIB} MiB, partitions: 1 2" in console(bed, 1)


def test_partclone_saves_a_partition_over_telnet(bed: Testbed) -> None:
    fresh_disk(bed, 1, images.new_identity("partclone"), imaging_os=True)
    saved = bed.telnet(1, "echo BEGIN; partclone.vfat -c -s /dev/sda1 -o /tmp/p1.pcl >/tmp/log 2>&1; echo rc=$?;"
                          " head -c 15 /tmp/p1.pcl; echo; stat -c %s /tmp/p1.pcl; tail -n 3 /tmp/log", timeout=30)
    assert saved.returncode == 0, saved
    lines = after_begin(saved.stdout)
    assert lines[0] == "rc=0", saved.stdout
    assert lines[1] == "partclone-image"
    assert 0 < int(lines[2]) < FAT_MIB * MIB  # the used blocks, not the partition
    restored = bed.telnet(1, "echo BEGIN; partclone.vfat -r -s /tmp/p1.pcl -o /dev/sda1 >/dev/null 2>&1; echo rc=$?;"
                             " MTOOLS_SKIP_CHECK=1 mtype -i /dev/sda1 ::/etc/imaging-image 2>/dev/null", timeout=30)
    assert after_begin(restored.stdout)[0] == "rc=0", restored
    assert "imaging-test-image partclone " in restored.stdout


def test_writes_land_in_the_file_after_off_and_no_loop_stays(bed: Testbed) -> None:
    fresh_disk(bed, 1, images.new_identity("writes"), imaging_os=True)
    disk = bed.disk(1)
    assert len(loopdev.attached_to(disk)) == 1
    whole, part = os.urandom(16).hex(), os.urandom(16).hex()
    # no fsync: the bytes sit in the node's cache until power-off
    wrote = bed.telnet(1, f"printf {whole} | dd of=/dev/sda bs=512 seek=100 conv=notrunc 2>/dev/null &&"
                          f" printf {part} | dd of=/dev/sda2 bs=512 seek=10000 conv=notrunc 2>/dev/null")
    assert wrote.returncode == 0, wrote
    assert bed.cmc(1, "reset").stdout.strip() == "ok"  # a reset: a new device, never two
    bed.wait_stage(1, "telnet")
    assert len(loopdev.attached_to(disk)) == 1
    power_off(bed, 1)
    assert loopdev.attached_to(disk) == []
    with open(disk, "rb") as handle:
        handle.seek(100 * 512)
        assert handle.read(32).decode() == whole
        handle.seek(EXT4_START * MIB + 10000 * 512)
        assert handle.read(32).decode() == part
    bed.set_next_boot(1, imaging_os=False)
    assert bed.cmc(1, "on").stdout.strip() == "ok"
    bed.wait_stage(1, "ssh")


def test_the_installed_os_finds_its_identity_in_a_partition(bed: Testbed) -> None:
    identity = images.new_identity("in-a-partition")
    fresh_disk(bed, 1, identity, imaging_os=False)
    assert bed.ssh(1, "cat /etc/imaging-image").stdout.strip() == identity
    assert f"booted {identity} from /dev/sda1" in console(bed, 1)


def test_a_small_disk_is_a_small_device(bed: Testbed) -> None:
    disk = bed.disk(2)
    try:
        bed.fault(2, "disk=small:8")
        bed.boot(2, imaging_os=True)
        assert disk.stat().st_size == 8 * MIB
        assert after_begin(bed.telnet(2, "echo BEGIN; blockdev --getsize64 /dev/sda").stdout) == [str(8 * MIB)]
        full = bed.telnet(2, "dd if=/dev/zero of=/dev/sda bs=1M seek=7 count=2 conv=notrunc")
        assert full.returncode != 0 and "No space left on device" in full.stdout, full
        assert bed.telnet(2, "dd if=/dev/zero of=/dev/sda bs=1M seek=6 count=2 conv=notrunc").returncode == 0
    finally:
        bed.fault(2, "clear")
        power_off(bed, 2)
        disk.unlink()
        asyncio.run(images.write_fat(disk, DISK_MIB * MIB, images.new_identity("factory-fit02")))
        bed.boot(2, imaging_os=False)


def test_without_a_loop_device_the_disk_is_the_file(bed: Testbed) -> None:
    disk = bed.disk(3)
    try:
        bed.fault(3, "disk=noloop")
        bed.fault(3, "disk=small:8")
        bed.boot(3, imaging_os=True)
        assert loopdev.attached_to(disk) == []
        line = "disk: no loop device (fault disk=noloop): /dev/sda is the disk file, bind-mounted," \
               " without partition devices"
        assert line in console(bed, 3)
        seen = bed.telnet(3, "echo BEGIN; [ -f /dev/sda ] && ! [ -e /dev/sda1 ] &&"
                             " grep -c ' /dev/sda ' /proc/self/mounts")
        assert after_begin(seen.stdout) == ["1"], seen
        full = bed.telnet(3, "dd if=/dev/zero of=/dev/sda bs=1M seek=7 count=2 conv=notrunc")
        assert full.returncode != 0 and "File too large" in full.stdout, full  # a file size limit stands in
        bed.boot(3, imaging_os=False)  # a FAT superfloppy: the identity of the whole disk
        assert bed.ssh(3, "cat /etc/imaging-image").stdout.startswith("imaging-test-image factory-fit03 ")
    finally:
        bed.fault(3, "clear")
        power_off(bed, 3)
        with open(disk, "r+b") as handle:
            handle.truncate(DISK_MIB * MIB)
        bed.boot(3, imaging_os=False)


@pytest.mark.parametrize("crash", [False, True], ids=["down", "controller-killed-then-down"])
def test_no_loop_device_outlives_the_testbed(tmp_path: Path, crash: bool) -> None:
    """A disk named like nvme0n1 gets partitions nvme0n1p1…; nothing stays attached after down, even
    when the controller was SIGKILLed first (the node holds its disk until it is killed, like hardware)."""
    need_root()
    directory = tmp_path / "bed"
    record = asyncio.run(lifecycle.up(directory, 1, boot_delay=0.3, disk_path="/dev/nvme0n1", disk_mib=DISK_MIB))
    try:
        bed = Testbed(Path(record.directory), record.layout)
        disk = bed.disk(1)
        bed.wait_stage(1, "ssh")
        power_off(bed, 1)
        partitioned_disk(disk, images.new_identity("nvme"))
        bed.set_next_boot(1, imaging_os=True)
        assert bed.cmc(1, "on").stdout.strip() == "ok"
        bed.wait_stage(1, "telnet")
        seen = bed.telnet(1, "echo BEGIN; ls /dev/nvme0n1*")
        assert " ".join(after_begin(seen.stdout)).split() == ["/dev/nvme0n1", "/dev/nvme0n1p1", "/dev/nvme0n1p2"], seen
        assert len(loopdev.attached_to(disk)) == 1
        if crash:
            [controller] = [p for p in tracked(bed.layout.run_dir) if p.name == "controller"]
            os.kill(controller.pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while controller.alive():
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert len(loopdev.attached_to(disk)) == 1, "the running node lost its disk with the controller"
            size = bed.telnet(1, "echo BEGIN; blockdev --getsize64 /dev/nvme0n1").stdout
            assert after_begin(size) == [str(DISK_MIB * MIB)]
        [name] = loopdev.attached_to(disk)
    finally:
        asyncio.run(lifecycle.down(directory))
    assert wait_detached(disk) == []
    if crash:  # the killed controller could not put the device's writeback pacing back
        bdi = Path(f"/sys/block/{name}/bdi")
        assert (bdi / "strict_limit").read_text().strip() == "1"
        loopdev.reset_pacing(name)
        assert (bdi / "strict_limit").read_text().strip() == "0"
        assert (bdi / "max_ratio").read_text().strip() == "100"
