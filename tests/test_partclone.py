"""File-system-aware images: the layout record, the node-side commands (run here by a real shell on real
sfdisk, blkid, partclone, mkswap and zstd output), and the reading of what they print."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging import disklayout, partclone
from imaging.disklayout import Layout, Partition
from imaging.errors import ImageError
from imaging.transports.udpcast import Udpcast

MIB = 1 << 20
SWAP_UUID = "11111111-2222-3333-4444-555555555555"


def sh(command: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a node-side command as the imaging OS's shell would."""
    return subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, check=False)


def make_disk(path: Path, files: Path, label: str = "gpt") -> None:
    """A 256 MiB disk: ext4 (100 MiB, with ``files``), FAT (32 MiB), swap (16 MiB); made without root."""
    path.touch()
    os.truncate(path, 256 * MIB)
    types = ("linux", "uefi", "swap") if label == "gpt" else ("83", "c", "82")
    script = f"label: {label}\nsize=100M, type={types[0]}\nsize=32M, type={types[1]}\nsize=16M, type={types[2]}\n"
    subprocess.run(["sfdisk", "-q", str(path)], input=script.encode(), check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(files), "-E", f"offset={MIB}", str(path), "100M"], check=True)
    subprocess.run(["mkfs.vfat", "--offset", str(101 * MIB // 512), str(path), str(32 * 1024)], check=True,
                   capture_output=True)
    swap = path.with_name("swap")
    swap.touch()
    os.truncate(swap, 16 * MIB)
    swap.chmod(0o600)
    subprocess.run(["mkswap", "-U", SWAP_UUID, "-L", "myswap", str(swap)], check=True, capture_output=True)
    with open(swap, "rb") as source, open(path, "r+b") as disk:
        disk.seek(133 * MIB)
        disk.write(source.read(4096))


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Files for the ext4: one incompressible, one small, one in a folder."""
    folder = tmp_path / "files"
    (folder / "d").mkdir(parents=True)
    (folder / "d" / "random").write_bytes(os.urandom(12 * MIB))
    (folder / "hello").write_text("hello\n")
    return folder


@pytest.fixture
def loop_disk(tmp_path: Path, files: Path) -> Iterator[tuple[Path, str]]:
    """A partitioned disk file attached to a loop device whose partitions have devices (what a node's
    imaging OS shows: partclone saves from a partition's device)."""
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        pytest.skip("a loop device needs root and /dev/loop-control")
    disk = tmp_path / "disk"
    make_disk(disk, files)
    loop = subprocess.run(["losetup", "-f", "--show", "-P", str(disk)], capture_output=True, text=True,
                          check=True).stdout.strip()
    try:
        subprocess.run(["partx", "-a", loop], check=False, capture_output=True)  # the kernel may not scan by itself
        yield disk, loop
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def probe(disk: str) -> tuple[Layout, set[int]]:
    """Ask a disk its layout as the save job asks a node."""
    table, dump, size = partclone.split_table_probe(sh(partclone.table_probe(disk)).stdout.decode().splitlines())
    assert size is not None
    places = partclone.places_of(table, disk, size)
    filesystems, devices = partclone.split_fs_probe(sh(partclone.fs_probe(disk, places)).stdout.decode().splitlines())
    return partclone.layout_from(table, dump, size, disk, filesystems), devices


def lines(output: bytes) -> list[str]:
    """Output split as the telnet session splits it."""
    return [line for line in re.split(r"[\r\n]+", output.decode(errors="replace")) if line.strip()]


def test_layout_of_a_partitioned_disk_file(tmp_path: Path, files: Path) -> None:
    disk = tmp_path / "disk"
    make_disk(disk, files)
    layout, _ = probe(str(disk))
    assert layout.label == "gpt" and layout.head == MIB and layout.disk_size == 256 * MIB
    assert [(p.number, p.fs, p.method) for p in layout.partitions] == [
        (1, "ext4", "partclone.ext4"), (2, "vfat", "partclone.vfat"), (3, "swap", "swap")]
    swap = layout.partitions[2]
    assert (swap.uuid, swap.label, swap.start, swap.size) == (SWAP_UUID, "myswap", 133 * MIB, 16 * MIB)
    assert layout.needed == 149 * MIB + 33 * 512  # the last partition's end and the backup GPT
    assert "label: gpt" in layout.table and "\n1 : start=" in layout.table and "device:" not in layout.table
    assert str(disk) not in layout.table  # the table compares equal across disks


def test_layout_of_a_disk_without_table(tmp_path: Path) -> None:
    disk = tmp_path / "floppy"
    subprocess.run(["mkfs.vfat", "-C", str(disk), "4096"], check=True, capture_output=True)
    layout, _ = probe(str(disk))
    assert layout.label == "none" and layout.head == 0 and layout.needed == 4 * MIB
    assert [(p.number, p.fs, p.method, p.device) for p in layout.partitions] == [(0, "vfat", "partclone.vfat",
                                                                                   str(disk))]
    random = tmp_path / "random"
    random.write_bytes(os.urandom(MIB))
    assert probe(str(random))[0].partitions[0].method == "partclone.dd"


def test_layout_record_round_trip_and_damage(tmp_path: Path) -> None:
    layout = Layout("gpt", 8 * MIB, 512, MIB, "label: gpt\n", (
        Partition(1, MIB, 4 * MIB, "partclone.ext4", fs="ext4", device="/dev/sda1", used=123),
        Partition(2, 5 * MIB, MIB, "swap", fs="swap", uuid="u", label="l")))
    image = tmp_path / "x.ptcl.zst"
    payload = subprocess.run(["zstd", "-q", "-c"], input=b"payload" * 1000, capture_output=True, check=True).stdout
    image.write_bytes(payload + disklayout.trailer(layout))
    assert disklayout.read_layout(image) == layout
    assert disklayout.check_image(image).size == layout.needed
    assert subprocess.run(["zstd", "-d", "-q", "-c", str(image)], capture_output=True).stdout == b"payload" * 1000
    for damaged, why in ((payload, "no disk layout at its end"),
                         (payload + disklayout.trailer(layout)[:-1], "truncated"),
                         (payload + disklayout.trailer(layout)[:-12] + b"IMGLAYT9" + disklayout.trailer(layout)[-4:],
                          "no disk layout at its end"),
                         (payload + disklayout.trailer(layout).replace(b'"version": 1', b'"version": 9'),
                          "unreadable \\(layout version 9")):
        image.write_bytes(damaged)
        with pytest.raises(ImageError, match=why):
            disklayout.check_image(image)
    bad = Layout("gpt", 8, 512, 0, "", (Partition(1, 0, 8, "rm -rf /"),))
    image.write_bytes(payload + disklayout.trailer(bad))
    with pytest.raises(ImageError, match="unknown method"):
        disklayout.read_layout(image)


def test_methods_and_devices() -> None:
    assert disklayout.method_for("ext3", "83") == "partclone.ext3"
    assert disklayout.method_for("ntfs", "7") == "partclone.ntfs"
    assert disklayout.method_for("", "5") == "none"  # an extended partition: its table entries are restored
    assert disklayout.method_for("zfs_member", "bf") == "partclone.dd"
    assert disklayout.partition_device("/dev/sda", 2) == "/dev/sda2"
    assert disklayout.partition_device("/dev/nvme0n1", 2) == "/dev/nvme0n1p2"
    assert disklayout.partition_device("/dev/loop7", 1) == "/dev/loop7p1"


def test_commands_quote_what_they_are_given() -> None:
    layout = Layout("dos", 64 * MIB, 512, MIB, "label: dos\n\n1 : start= 2048, size= 2048, type=5\n", (
        Partition(1, MIB, MIB, "none", type="5"),
        Partition(5, 2 * MIB, 8 * MIB, "partclone.ext4", fs="ext4", device="/dev/x;reboot"),
        Partition(6, 10 * MIB, MIB, "swap", uuid="$(reboot)", label="a b")))
    save = partclone.save_producer(layout, "/dev/sd a")
    assert "-s '/dev/x;reboot'" in save and "if='/dev/sd a'" in save
    restore = partclone.restore_consumer(layout, "/dev/sd a")
    assert "-U '$(reboot)' -L 'a b'" in restore and "-O '/dev/sd a' -E 2097152" in restore
    assert "sfdisk --wipe never" in restore  # logical partitions: their boot records come from the table
    assert "'/dev/sd a1 : start= 2048, size= 2048, type=5'" in restore


def test_save_and_restore_round_trip(tmp_path: Path, loop_disk: tuple[Path, str], files: Path) -> None:
    """The commands a node runs, on a loop device: the image holds what the file systems use, and
    restored into a bigger disk file (no partition devices: each at its offset) gives the same table,
    an fsck-clean ext4 with the same files, the same FAT, and the swap's UUID and label."""
    source, loop = loop_disk
    layout, devices = probe(loop)
    assert devices == {1, 2, 3}
    saved = sh(partclone.save_producer(layout, loop) + " | zstd -q -1")
    assert saved.returncode == 0, saved.stderr[-500:]
    parser = partclone.SaveParser(layout)
    for line in lines(saved.stderr):
        parser.feed(line)
    assert parser.failure is None and parser.steps.percent() == 100.0
    used = parser.steps.used
    assert set(used) == {1, 2} and 12 * MIB < used[1] < 24 * MIB and used[2] < MIB
    assert len(saved.stdout) < 16 * MIB  # 12 MiB of files on a 256 MiB disk, and not the disk
    image = tmp_path / "disk.ptcl.zst"
    image.write_bytes(saved.stdout + disklayout.trailer(layout.with_used(used)))
    recorded = disklayout.read_layout(image)
    assert recorded.used == MIB + used[1] + used[2]

    target = tmp_path / "target"
    target.write_bytes(b"\xa5" * MIB * 8)  # something was there before
    os.truncate(target, 300 * MIB)
    restored = sh("zstd -d -q --progress | " + partclone.restore_consumer(recorded, str(target)),
                  image.read_bytes())
    assert restored.returncode == 0, restored.stderr[-800:]
    steps = partclone.Steps(recorded, partclone.restore_weights(recorded))
    for line in lines(restored.stderr):
        steps.feed(line)
    assert steps.failure is None and steps.percent() == 100.0 and steps.current == "sync"

    def dump(disk: Path) -> str:
        text = subprocess.run(["sfdisk", "--dump", str(disk)], capture_output=True, text=True, check=True).stdout
        return re.sub(r"last-lba: \d+\n", "", disklayout.strip_devices(text))

    assert dump(target) == dump(source)
    assert subprocess.run(["e2fsck", "-fn", f"{target}?offset={MIB}"], capture_output=True).returncode == 0
    for name in ("d/random", "hello"):
        read = subprocess.run(["debugfs", "-R", f"cat /{name}", f"{target}?offset={MIB}"], capture_output=True)
        assert read.stdout == (files / name).read_bytes()
    fat = tmp_path / "fat"
    with open(source, "rb") as a, open(target, "rb") as b:
        a.seek(101 * MIB)
        b.seek(101 * MIB)
        fat.write_bytes(b.read(32 * MIB))
        assert a.read(MIB) == fat.read_bytes()[:MIB]  # the FAT's boot sector and tables
    assert subprocess.run(["fsck.fat", "-n", str(fat)], capture_output=True).returncode == 0
    swap = subprocess.run(["blkid", "-p", "-o", "export", "-O", str(133 * MIB), "-S", str(16 * MIB), str(target)],
                          capture_output=True, text=True).stdout
    assert f"UUID={SWAP_UUID}" in swap and "LABEL=myswap" in swap and "TYPE=swap" in swap


def test_a_failed_restore_names_its_partition(tmp_path: Path) -> None:
    layout = Layout("none", 8 * MIB, 512, 0, "", (Partition(0, 0, 8 * MIB, "partclone.ext4", fs="ext4",
                                                            device="/dev/sda"),))
    target = tmp_path / "t"
    target.touch()
    os.truncate(target, 8 * MIB)
    failed = sh(partclone.restore_consumer(layout, str(target)), b"not a partclone image" * 100)
    assert failed.returncode != 0
    steps = partclone.Steps(layout, partclone.restore_weights(layout))
    for line in lines(failed.stderr):
        steps.feed(line)
    assert steps.failure is not None and "the whole disk (ext4, /dev/sda)" in steps.failure


def test_udpcast_commands_for_a_layout() -> None:
    udpcast = Udpcast()
    layout = Layout("gpt", 64 * MIB, 512, MIB, "label: gpt\n", (
        Partition(1, MIB, 32 * MIB, "partclone.ext4", fs="ext4", device="/dev/sda1", used=5 * MIB),
        Partition(2, 33 * MIB, 8 * MIB, "swap", fs="swap")))
    from imaging.transports.base import Channel
    load = udpcast.receiver_command(Channel("239.1.1.1", 9000), "10.0.0.1", "10.0.0.2", "/dev/sda",
                                    Path("x.ptcl.zst"), layout)
    assert load.startswith("s=$( { { udp-receiver --nokbd --interface 10.0.0.2 --portbase 9000;")
    assert "| zstd -d -q --progress | { " in load and "--file" not in load
    assert udpcast.node_programs(Path("x.ptcl.zst"), layout) == (
        "udp-receiver", "zstd", "head", "dd", "sfdisk", "partclone.ext4", "mkswap")
    assert udpcast.node_programs(None, layout) == ("sfdisk", "blkid", "dd", "zstd", "nc", "partclone.ext4")
    save = udpcast.save_command("/dev/sda", "10.0.0.1", 10001, layout)
    assert "partclone.ext4 -c -s /dev/sda1 -o -" in save and "| zstd -q -c -1 | nc -q 0 10.0.0.1 10001" in save
    parser = udpcast.parser(1000, None, layout)
    assert parser.steps is not None
    parser.feed('__IMAGING_PART__ head')
    progress = parser.feed("__IMAGING_PART__ 1")
    assert progress is not None and progress.percent == pytest.approx(100 / 6)
    parser.feed("Elapsed: 00:00:01, Remaining: 00:00:00, Completed:  50.00%, Rate: 1GB/min")
    assert parser.steps.percent() == pytest.approx(100 * 3.5 / 6)
    parser.feed("No space left on device")
    assert parser.failure is not None and "partition 1 (ext4, /dev/sda1)" in parser.failure


def test_logical_partitions_round_trip(tmp_path: Path, files: Path) -> None:
    """An MBR with an extended partition: the logical partitions' boot records, inside the extended one,
    come back from the table (sfdisk), their file systems from partclone, at their offsets."""
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        pytest.skip("a loop device needs root and /dev/loop-control")
    disk = tmp_path / "dos"
    disk.touch()
    os.truncate(disk, 96 * MIB)
    script = "label: dos\nsize=40M, type=83\ntype=5\nsize=24M, type=c\nsize=8M, type=82\n"
    subprocess.run(["sfdisk", "-q", str(disk)], input=script.encode(), check=True)
    table = subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True, check=True).stdout
    starts = {int(p["node"][-1]): int(p["start"]) * 512 for p in json.loads(table)["partitiontable"]["partitions"]}
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(files), "-E", f"offset={starts[1]}", str(disk), "40M"],
                   check=True)
    subprocess.run(["mkfs.vfat", "--offset", str(starts[5] // 512), str(disk), str(24 * 1024)], check=True,
                   capture_output=True)
    loop = subprocess.run(["losetup", "-f", "--show", "-P", str(disk)], capture_output=True, text=True,
                          check=True).stdout.strip()
    try:
        subprocess.run(["partx", "-a", loop], check=False, capture_output=True)
        layout, devices = probe(loop)
        assert [(p.number, p.method) for p in layout.partitions] == [
            (1, "partclone.ext4"), (2, "none"), (5, "partclone.vfat"), (6, "partclone.dd")]
        assert {1, 5, 6} <= devices
        saved = sh(partclone.save_producer(layout, loop) + " | zstd -q -1")
        assert saved.returncode == 0, saved.stderr[-500:]
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
    target = tmp_path / "target"
    target.touch()
    os.truncate(target, 96 * MIB)
    restored = sh("zstd -d -q | " + partclone.restore_consumer(layout, str(target)), saved.stdout)
    assert restored.returncode == 0, restored.stderr[-800:]

    def dump(path: Path) -> str:
        text = subprocess.run(["sfdisk", "--dump", str(path)], capture_output=True, text=True, check=True).stdout
        return disklayout.strip_devices(text)

    assert dump(target) == dump(disk) and "5 : start=" in dump(target)
    assert subprocess.run(["e2fsck", "-fn", f"{target}?offset={starts[1]}"], capture_output=True).returncode == 0
    with open(disk, "rb") as a, open(target, "rb") as b:
        a.seek(starts[5])
        b.seek(starts[5])
        assert a.read(24 * MIB) == b.read(24 * MIB)  # the FAT, every block of it here


def test_probe_answers_read_through_a_banner_and_a_prompt() -> None:
    """busybox telnetd says its banner, and dash its prompt ("# ") before the first line of output:
    both were taken for sfdisk's JSON and for a marker (a partition lost its file system)."""
    table = ["Debian GNU/Linux 12", "", '# {"partitiontable": {"label": "dos", "sectorsize": 512, "partitions": [',
             '{"node": "/dev/sda1", "start": 2048, "size": 2048, "type": "83"}]}}', partclone.DUMP_MARK,
             "label: dos", "", "/dev/sda1 : start=2048, size=2048, type=83", partclone.WHOLE_MARK, "PTTYPE=dos",
             partclone.SIZE_MARK, "4194304"]
    sfdisk_json, dump, size = partclone.split_table_probe(table)
    assert size == 4194304 and dump.startswith("label: dos")
    filesystems, devices = partclone.split_fs_probe(["Debian GNU/Linux 12", f"# {partclone.FS_MARK} 1", "TYPE=ext4",
                                                     f"{partclone.DEV_MARK} 1"])
    layout = partclone.layout_from(sfdisk_json, dump, size, "/dev/sda", filesystems)
    assert [(p.number, p.fs, p.start) for p in layout.partitions] == [(1, "ext4", 1 << 20)] and devices == {1}
