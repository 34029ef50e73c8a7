"""Test disks of the testbed: partition tables and file systems made in a file (no root, no loop device),
inspected back by the file systems' own checkers and their files' sha256."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from imaging_testbed import disks, images
from imaging_testbed.programs import DEBUGFS, QEMU

IDENTITY = "imaging-test-image disk-test 0123456789ab"
MIB = 1 << 20


async def made(path: Path, **spec: object) -> tuple[disks.DiskInfo, disks.DiskReport]:
    """A disk made at ``path`` of 64 MiB (unless said) and its inspection."""
    spec.setdefault("size_mib", 64)
    info = await disks.make_disk(path, disks.DiskSpec(**spec), IDENTITY)  # type: ignore[arg-type]
    return info, await disks.inspect(path)


def nonzero_bytes(path: Path, start: int, size: int) -> int:
    """Bytes of ``path`` from ``start``, ``size`` of them, that are not zero."""
    with open(path, "rb") as handle:
        handle.seek(start)
        data = handle.read(size)
    return len(data) - data.count(0)


@pytest.mark.parametrize("label", ["gpt", "dos"])
async def test_disk_holds_its_table_file_systems_and_files(tmp_path: Path, label: str) -> None:
    kernel = tmp_path / "kernel"
    kernel.write_bytes(os.urandom(300_000))
    path = tmp_path / "disk.img"
    info, report = await made(path, label=label, seed=5, fat_files={"/boot/vmlinuz": kernel})
    assert path.stat().st_size == 64 * MIB and path.stat().st_blocks * 512 < 40 * MIB  # sparse
    assert not list(tmp_path.glob(".disk.img*"))  # nothing left beside it
    assert report.table == info.table and f"label: {label}" in report.table and "device:" not in report.table
    assert [(p.number, p.fs) for p in report.partitions] == [(1, "vfat"), (2, "ext4"), (3, "swap")]
    assert all(p.clean for p in report.partitions), [p.check for p in report.partitions]
    fat, ext4, swap = report.partitions
    assert fat.start == MIB and fat.size == 16 * MIB and swap.size == 8 * MIB
    assert ext4.start == fat.start + fat.size and swap.start == ext4.start + ext4.size  # ext4 fills the middle
    end = 64 * MIB - (MIB if label == "gpt" else 0)  # gpt: the backup table's MiB
    assert swap.start + swap.size == end
    if label == "gpt":
        assert [line.split('name="')[1][:-1] for line in report.table.splitlines() if "name=" in line] == [
            "boot", "root", "swap"]
    assert fat.files == info.fat_files and ext4.files == info.files and ext4.links == info.links
    assert fat.files["/boot/vmlinuz"] == hashlib.sha256(kernel.read_bytes()).hexdigest()
    identity_sha = hashlib.sha256((IDENTITY + "\n").encode()).hexdigest()
    assert fat.files[disks.IDENTITY_FILE] == ext4.files[disks.IDENTITY_FILE] == identity_sha
    blobs = {name: sha for name, sha in ext4.files.items() if name.endswith(".bin")}
    assert len(blobs) >= 2 and len({name.rsplit("/", 1)[0] for name in blobs}) >= 2
    assert "/etc/localtime" in ext4.links and len(ext4.links["/home/user/media"]) > 60  # a fast and a slow link
    assert ext4.uuid == info.ext4_uuid and fat.uuid == info.fat_uuid
    assert (swap.uuid, swap.label) == (info.swap_uuid, info.swap_label) and swap.label == "swap-5"
    assert "SWAPSPACE2" in swap.check and not swap.files


async def test_random_files_do_not_compress(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    info, _ = await made(path, files_mib=16)
    packed = subprocess.run(["zstd", "-q", "-c", str(path)], capture_output=True, check=True).stdout
    assert len(packed) > 16 * MIB and info.deleted == 0


async def test_dirty_keeps_files_and_fills_free_blocks(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    info, before = await made(path, seed=2)
    fat = before.partition(1)
    assert await disks.dirty_bytes(path) == 0
    fat_data = nonzero_bytes(path, fat.start, fat.size)
    left = await disks.dirty(path, 8, seed=9)
    after = await disks.inspect(path)
    assert after == before and all(p.clean for p in after.partitions), [p.check for p in after.partitions]
    assert 7 * MIB <= left <= 8 * MIB
    assert await disks.dirty_bytes(path) >= 6 * MIB  # the ext4's share, in its free blocks
    assert nonzero_bytes(path, fat.start, fat.size) > fat_data + 512 * 1024  # the FAT's deleted file
    assert info.deleted == 0


async def test_deleted_data_is_capped_by_the_free_space(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    info, report = await made(path, deleted_mib=1024)
    ext4 = (await disks.partitions(path))[1]
    assert (ext4.number, ext4.fs, ext4.start) == (2, "ext4", report.partition(2).start)
    free = sum(length for _, length in await disks.free_extents(path, ext4))
    assert all(p.clean for p in report.partitions) and report.partition(2).files == info.files
    assert free > 10 * MIB and await disks.dirty_bytes(path) == free  # every free block holds data
    assert free < info.deleted < 64 * MIB


async def test_disks_built_alike_compare_equal(tmp_path: Path) -> None:
    (_, first), (_, second) = await asyncio.gather(made(tmp_path / "a.img", seed=3, deleted_mib=4),
                                                   made(tmp_path / "b.img", seed=3))
    assert first == second
    _, other = await made(tmp_path / "c.img", seed=4)
    assert other.table != first.table and other.partition(2).files != first.partition(2).files


async def test_a_flipped_byte_shows(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    info, report = await made(path)
    ext4, swap = report.partition(2), report.partition(3)
    name = sorted(n for n in info.files if n.endswith(".bin"))[0]
    blocks = subprocess.run([DEBUGFS, "-R", f"blocks {name}", f"{path}?offset={ext4.start}"], capture_output=True,
                            text=True, check=True).stdout.split()
    with open(path, "r+b") as handle:
        where = ext4.start + int(blocks[1]) * 4096 + 100
        handle.seek(where)
        byte = handle.read(1)
        handle.seek(where)
        handle.write(bytes([byte[0] ^ 0xFF]))
        handle.seek(swap.start + 1028)  # the swap area's last page: a header made for another size
        handle.write((1000).to_bytes(4, "little"))
    changed = await disks.inspect(path)
    files = changed.partition(2).files
    assert files[name] != info.files[name] and {n: s for n, s in files.items() if n != name} == {
        n: s for n, s in info.files.items() if n != name}
    assert changed.partition(2).clean  # file data is not the checker's business
    assert changed != report and not changed.partition(3).clean and "last page 1000 of 2048" in changed.partition(
        3).check


async def test_disk_without_partition_table(tmp_path: Path) -> None:
    path = tmp_path / "floppy.img"
    await images.write_fat(path, 4 * MIB, IDENTITY)
    report = await disks.inspect(path)
    assert report.table == ""
    (whole,) = report.partitions
    assert (whole.number, whole.start, whole.size, whole.fs, whole.clean) == (0, 0, 4 * MIB, "vfat", True)
    assert whole.files == {disks.IDENTITY_FILE: hashlib.sha256((IDENTITY + "\n").encode()).hexdigest()}
    assert await disks.dirty(path, 1, 0) > 0 and (await disks.inspect(path)).partitions[0].clean


def test_spec_is_checked() -> None:
    with pytest.raises(ValueError, match="too little for 8 MiB of files: a disk of 41 MiB"):
        disks.DiskSpec(40)
    disks.DiskSpec(41)
    with pytest.raises(ValueError, match="dos label"):
        disks.DiskSpec(64, bootable=True)
    with pytest.raises(ValueError, match="gpt or dos"):
        disks.DiskSpec(64, label="mac")
    with pytest.raises(ValueError, match="absolute"):
        disks.DiskSpec(64, fat_files={"boot/x": Path("/etc/hostname")})


async def test_bootable_disk_boots_syslinux_under_seabios(tmp_path: Path) -> None:
    config = tmp_path / "syslinux.cfg"
    # no SERIAL line: SeaBIOS already copies the screen to the serial port, and syslinux writing there too
    # interleaves the two copies character by character
    config.write_text("SAY imaging-disk-booted\nPROMPT 0\nTIMEOUT 1\nDEFAULT none\nLABEL none\n  KERNEL /none\n")
    path = tmp_path / "boot.img"
    info, report = await made(path, label="dos", bootable=True, fat_files={"/syslinux.cfg": config})
    assert all(p.clean for p in report.partitions)
    assert re.search(r"^1 : .*type=e, bootable$", report.table, re.M)
    assert {"/ldlinux.sys", "/ldlinux.c32", "/syslinux.cfg"} <= set(report.partition(1).files)
    assert report.partition(1).files == info.fat_files
    assert path.read_bytes()[:440] == disks.MBR_CODE.read_bytes()[:440]
    proc = await asyncio.create_subprocess_exec(
        QEMU, "-nographic", "-m", "96", "-nic", "none", "-no-reboot", "-drive", f"file={path},format=raw,if=ide",
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while b"imaging-disk-booted" not in seen and time.monotonic() < deadline:
            chunk = await asyncio.wait_for(proc.stdout.read(4096), max(deadline - time.monotonic(), 0.1))
            if not chunk:
                break
            seen += chunk
    finally:
        proc.kill()
        await proc.wait()
    assert b"imaging-disk-booted" in seen, seen[-500:]


async def test_partitioned_test_image_and_its_identity(tmp_path: Path) -> None:
    image = await images.make_image("parted", tmp_path, 64, partitioned=True)
    assert image.path == tmp_path / "parted.img" and image.raw_size == 64 * MIB
    assert await images.read_identity(image.path) == image.identity
    report = await disks.inspect(image.path)
    assert [p.fs for p in report.partitions] == ["vfat", "ext4", "swap"] and all(p.clean for p in report.partitions)
    assert image.sha256 == image.raw_sha256 == images.sha256_file(image.path)
    other = await images.make_image("parted2", tmp_path, 64, partitioned=True, random_fill=True, compressed=True,
                                    cache_dir=tmp_path / "cache")
    again = await images.make_image("parted2", tmp_path / "b", 64, partitioned=True, random_fill=True,
                                    compressed=True, cache_dir=tmp_path / "cache")
    assert other.identity == again.identity != image.identity and other.path.name == "parted2.img.zst"
    raw = tmp_path / "unpacked.img"
    subprocess.run(["zstd", "-q", "-d", "-o", str(raw), str(other.path)], check=True)
    assert await images.read_identity(raw) == other.identity and await disks.dirty_bytes(raw) > 10 * MIB
    unpacked = await disks.inspect(raw)
    assert unpacked.partition(2).files != report.partition(2).files  # each image its own files


async def test_identity_is_found_in_any_fat_partition(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    await disks.make_disk(path, disks.DiskSpec(64), IDENTITY)
    assert await images.read_identity(path) == IDENTITY
    subprocess.run(["mdel", "-i", f"{path}@@{MIB}", f"::{disks.IDENTITY_FILE}"], check=True,
                   env=disks.mtools_env())
    assert await images.read_identity(path) is None  # in the ext4 only: not the FAT's
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(MIB))
    assert await images.read_identity(blank) is None


async def test_small_fat_and_no_swap(tmp_path: Path) -> None:
    info, report = await made(tmp_path / "disk.img", size_mib=48, fat_mib=4, swap_mib=0, files_mib=2)
    assert [(p.number, p.fs, p.clean) for p in report.partitions] == [(1, "vfat", True), (2, "ext4", True)]
    assert report.partition(1).size == 4 * MIB and report.partition(2).files == info.files
    assert info.swap_uuid == info.swap_label == ""
