"""Test disks that hold what real disks hold: a partition table, file systems with files, a swap
area, deleted data in the free blocks; and the inspection that tells whether two disks hold the same.

Made without root, loop device or mount: ``sfdisk`` writes the table into the (sparse) file,
``mkfs.vfat --offset`` and ``mkfs.ext4 -E offset=`` write each file system at its partition's
place (``mkfs.ext4 -d`` fills it from a folder), mtools reach the FAT at ``FILE@@OFFSET``, the
e2fsprogs reach the ext4 through ``'FILE?offset=BYTES'`` (libext2fs's own I/O option).  ``mkswap``
has no offset option (util-linux 2.38): it makes its area in a sparse file of the partition's
size, whose first page (the whole swap header) is copied into the disk.

The layout (:class:`DiskSpec`): 1 MiB before the first partition; partition 1 a FAT, 2 an ext4
filling what is left, 3 a swap area at the end of the disk.  Both file systems hold the image's
identity at :data:`IDENTITY_FILE`; the ext4 also holds random (incompressible) files derived
from the spec's seed, small text files and symbolic links.  Everything random is derived from
the seed: two disks made from the same spec and identity compare equal by :func:`inspect`.

:func:`dirty` leaves deleted data in the free space as a used system does; :func:`inspect`
reports what a round trip must keep (table, file systems, their checkers' verdicts, every
file's sha256).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import re
import struct
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imaging.errors import ImagingError, UsageError

from .procs import run
from .programs import (
    BLKID,
    DEBUGFS,
    E2FSCK,
    FSCK_FAT,
    MCOPY,
    MDEL,
    MDIR,
    MKFS_EXT4,
    MKFS_VFAT,
    MKSWAP,
    MMD,
    SFDISK,
    SYSLINUX,
)

log = logging.getLogger(__name__)

IDENTITY_FILE = "/etc/imaging-image"  # the image's identity line, in the FAT and in the ext4
MIB = 1024 * 1024
SECTOR = 512
ALIGN = MIB // SECTOR  # partitions start on MiB boundaries, as partitioning tools place them
EXT4_BLOCK = 4096
SWAP_PAGE = 4096  # x86-64's page size: the swap header is the first page
MBR_CODE = Path("/usr/lib/syslinux/mbr/mbr.bin")  # syslinux-common's MBR boot code (440 bytes)
MBR_CODE_BYTES = 440  # the boot code's room before the disk signature and the partition entries
POOL_BYTES = 136 * MIB  # deleted data repeats with this period: beyond zstd's windows, even --long's 128 MiB
CHUNK = 4 * MIB
REAL_DELETE_BYTES = 4 * MIB  # at most this much of the ext4's deleted data is a file debugfs writes and removes
FAT_LABEL = "IMAGINGBOOT"
EXT4_LABEL = "imaging-root"
TYPES = {  # partition types: (gpt, dos)
    "fat16": ("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "e"),  # basic data; W95 FAT16 (LBA)
    "fat32": ("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "c"),  # basic data; W95 FAT32 (LBA)
    "linux": ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", "83"),
    "swap": ("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "82"),
}
FOLDERS = ("home/user/data", "srv/media", "var/lib/db")  # where the ext4's random files go
EXT_FS = ("ext2", "ext3", "ext4")


def mtools_env() -> dict[str, str]:
    """The environment mtools run in: no check of the FAT's geometry against a drive's."""
    return {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


@dataclass(frozen=True)
class DiskSpec:
    """What a test disk holds.  Sizes in MiB; ``files_mib`` of random files in the ext4, ``deleted_mib``
    of data written then deleted (:func:`dirty`, capped by the free space); ``fat_files`` maps FAT paths
    to host files copied there too (a kernel, say).  ``bootable``: a dos label, partition 1 active,
    syslinux's MBR code and ``syslinux`` installed in the FAT (the caller puts syslinux.cfg and what
    it boots in ``fat_files``).  ``swap_mib`` 0: no swap partition."""

    size_mib: int
    label: str = "gpt"
    fat_mib: int = 16
    swap_mib: int = 8
    files_mib: int = 8
    deleted_mib: int = 0
    seed: int = 0
    fat_files: Mapping[str, Path] = field(default_factory=dict, hash=False)
    bootable: bool = False

    def __post_init__(self) -> None:
        if self.label not in ("gpt", "dos"):
            raise ValueError(f"label {self.label!r}: gpt or dos")
        if self.bootable and self.label != "dos":
            raise ValueError("a bootable disk has a dos label (syslinux's MBR code boots the active partition):"
                             " give label='dos'")
        if min(self.size_mib, self.fat_mib, self.swap_mib, self.files_mib, self.deleted_mib) < 0:
            raise ValueError("sizes are at least 0")
        if self.fat_mib < 4:
            raise ValueError(f"a FAT partition of {self.fat_mib} MiB: at least 4")
        for name in self.fat_files:
            if not name.startswith("/") or name.endswith("/") or ".." in name.split("/"):
                raise ValueError(f"FAT path {name!r}: absolute, to a file")
        if not _holds(self.ext4_mib, self.files_mib):
            enough = next(size for size in range(self.size_mib, self.size_mib + 2 * self.files_mib + 64)
                          if _holds(_sectors(size, self.label, self.fat_mib, self.swap_mib)[1][1] // ALIGN,
                                    self.files_mib))
            raise ValueError(f"a {self.size_mib} MiB disk leaves {self.ext4_mib} MiB to the ext4, too little for"
                             f" {self.files_mib} MiB of files: a disk of {enough} MiB holds them")

    @property
    def ext4_mib(self) -> int:
        """The size of the ext4 partition."""
        return (_places(self)[1][1]) // ALIGN


def _holds(ext4_mib: int, files_mib: int) -> bool:
    """Whether an ext4 of ``ext4_mib`` holds ``files_mib`` of files and the small ones: room for its
    journal (mke2fs's default size), inode tables (at most a sixteenth), extent blocks, a margin."""
    blocks = ext4_mib * MIB // EXT4_BLOCK
    journal = next((size for limit, size in ((2048, 0), (32768, 4), (256 * 1024, 16), (512 * 1024, 32),
                                             (4096 * 1024, 64), (8192 * 1024, 128), (16384 * 1024, 256),
                                             (32768 * 1024, 512)) if blocks < limit), 1024)
    return ext4_mib >= 8 and files_mib + files_mib // 64 + 3 + journal + ext4_mib // 16 <= ext4_mib


@dataclass(frozen=True)
class DiskInfo:
    """What :func:`make_disk` put on a disk."""

    path: Path
    identity: str
    table: str  # as :attr:`DiskReport.table` says it
    files: dict[str, str]  # the ext4's regular files: path -> sha256
    fat_files: dict[str, str]  # the FAT's files: path -> sha256
    links: dict[str, str]  # the ext4's symbolic links: path -> target
    ext4_uuid: str
    fat_uuid: str  # the FAT's volume id, as blkid shows it (ABCD-1234)
    swap_uuid: str  # empty without swap
    swap_label: str
    deleted: int  # bytes of deleted data left in the free space


@dataclass(frozen=True)
class PartitionReport:
    """One partition (number 0: a disk without partition table, read as one file system)."""

    number: int
    start: int  # bytes from the disk's start
    size: int  # bytes
    fs: str  # blkid's TYPE (ext4, vfat, swap), empty when it knows none
    uuid: str
    label: str
    clean: bool  # the file system's checker found nothing wrong (swap: a valid header for this partition)
    files: dict[str, str]  # regular files: path -> sha256
    links: dict[str, str]  # symbolic links: path -> target
    check: str = field(default="", compare=False)  # what the checker said


@dataclass(frozen=True)
class DiskReport:
    """What a disk holds, as a round trip must keep it: two disks that hold the same compare equal."""

    table: str  # ``sfdisk --dump`` without device names (``1 : start=…``) nor ``device:`` line; "" if none
    partitions: tuple[PartitionReport, ...]

    def partition(self, number: int) -> PartitionReport:
        """The partition numbered ``number``; KeyError when the disk has none."""
        for part in self.partitions:
            if part.number == number:
                return part
        raise KeyError(number)


@dataclass(frozen=True)
class Part:
    """A partition as found on a disk (:func:`partitions`)."""

    number: int
    start: int  # bytes
    size: int  # bytes
    fs: str
    uuid: str
    label: str


# --- making a disk ----------------------------------------------------------------------------------------------


async def make_disk(path: Path, spec: DiskSpec, identity: str) -> DiskInfo:
    """Write at ``path`` a sparse disk file as ``spec`` says, whose file systems hold ``identity``
    in :data:`IDENTITY_FILE`; what it holds.  The file appears complete or not at all (made under
    a temporary name beside it); an existing file at ``path`` is replaced.  ImagingError when a
    program fails (ext4 too small for the files, a FAT too small for ``fat_files``)."""
    if spec.bootable and not MBR_CODE.exists():
        raise UsageError(f"{MBR_CODE} is missing: install its Debian package (apt-get install syslinux-common)")
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    with open(partial, "wb") as handle:
        handle.truncate(spec.size_mib * MIB)
    try:
        await run(SFDISK, "-q", str(partial), input=_script(spec))
        if spec.bootable:
            with open(MBR_CODE, "rb") as code, open(partial, "r+b") as disk:
                disk.write(code.read(MBR_CODE_BYTES))
        with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as scratch:
            fat_files = await _make_fat(partial, spec, identity, Path(scratch))
            files, links = await _make_ext4(partial, spec, identity, Path(scratch))
            await _make_swap(partial, spec, Path(scratch))
        deleted = await dirty(partial, spec.deleted_mib, spec.seed) if spec.deleted_mib else 0
        table = normal_table(await run(SFDISK, "--dump", str(partial)))
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    log.info("made test disk %s (%d MiB, %s, %s)", path, spec.size_mib, spec.label, identity)
    swap = spec.swap_mib > 0
    return DiskInfo(path, identity, table, files, fat_files, links, _uuid(spec.seed, "ext4"),
                    _fat_serial(spec.seed), _uuid(spec.seed, "swap") if swap else "",
                    _swap_label(spec.seed) if swap else "", deleted)


def _places(spec: DiskSpec) -> list[tuple[int, int]]:
    """(start, size) in sectors of the spec's FAT, ext4 and swap area (size 0 without swap)."""
    return _sectors(spec.size_mib, spec.label, spec.fat_mib, spec.swap_mib)


def _sectors(size_mib: int, label: str, fat_mib: int, swap_mib: int) -> list[tuple[int, int]]:
    """(start, size) in sectors of the FAT, the ext4 and the swap area of a disk of ``size_mib``.

    The swap area ends at the disk's end (gpt: before the backup table, on a MiB boundary)."""
    total = size_mib * ALIGN
    last = total - 34 if label == "gpt" else total - 1  # the last usable sector
    fat = (ALIGN, fat_mib * ALIGN)
    swap_size = swap_mib * ALIGN
    swap_start = (last + 1 - swap_size) // ALIGN * ALIGN
    ext4_start = fat[0] + fat[1]
    return [fat, (ext4_start, max(swap_start - ext4_start, 0)), (swap_start, swap_size)]


def _fat_kind(spec: DiskSpec) -> str:
    """fat16 below 512 MiB, fat32 from there on (as mkfs.fat would choose)."""
    return "fat16" if spec.fat_mib < 512 else "fat32"


def _script(spec: DiskSpec) -> str:
    """The sfdisk script of the disk's table (ids derived from the seed)."""
    gpt = spec.label == "gpt"
    column = 0 if gpt else 1
    head = ["label: gpt" if gpt else "label: dos",
            f"label-id: {_uuid(spec.seed, 'table').upper()}" if gpt else f"label-id: 0x{_hex(spec.seed, 'table', 8)}",
            "unit: sectors"]
    if gpt:
        head.append(f"first-lba: {ALIGN}")
    kinds = [(_fat_kind(spec), "boot"), ("linux", "root"), ("swap", "swap")]
    lines = []
    for number, ((start, size), (kind, name)) in enumerate(zip(_places(spec), kinds, strict=True), 1):
        if size == 0:
            continue
        line = f"start={start}, size={size}, type={TYPES[kind][column]}"
        if gpt:
            line += f', uuid={_uuid(spec.seed, f"partition {number}").upper()}, name="{name}"'
        elif number == 1 and spec.bootable:
            line += ", bootable"
        lines.append(line)
    return "\n".join([*head, "", *lines]) + "\n"


async def _make_fat(disk: Path, spec: DiskSpec, identity: str, scratch: Path) -> dict[str, str]:
    """Partition 1's FAT with the identity, a README and ``fat_files`` (and syslinux when bootable);
    its files' sha256."""
    start, size = _places(spec)[0]
    small = ["-s", "1"] if spec.fat_mib < 16 else []  # clusters of one sector: enough of them for a FAT16
    await run(MKFS_VFAT, f"--offset={start}", "-h", str(start), "-F", _fat_kind(spec)[3:], *small, "-n", FAT_LABEL,
              "-i", _hex(spec.seed, "fat", 8), str(disk), str(size * SECTOR // 1024))
    target = f"{disk}@@{start * SECTOR}"
    env = mtools_env()
    if spec.bootable:
        await run(SYSLINUX, "--install", "--offset", str(start * SECTOR), str(disk))
    folder = scratch / "fat"
    folder.mkdir()
    sources: dict[str, Path] = {}
    for name, text in ((IDENTITY_FILE, identity + "\n"),
                       ("/README.TXT", f"imaging test disk, seed {spec.seed}\r\n")):
        local = folder / name.strip("/").replace("/", "_")
        local.write_text(text)
        sources[name] = local
    sources.update(spec.fat_files)
    needed = sorted({str(parent) for name in sources for parent in Path(name).parents} - {"/"},
                    key=lambda folder: (folder.count("/"), folder))  # parents first
    if needed:
        await run(MMD, "-D", "s", "-i", target, *(f"::{name}" for name in needed), env=env)
    for name, local in sources.items():
        await run(MCOPY, "-D", "o", "-i", target, str(local), f"::{name}", env=env)
    digests = {name: await asyncio.to_thread(_sha256, local) for name, local in sources.items()}
    if spec.bootable:
        for name in ("/ldlinux.sys", "/ldlinux.c32"):
            copy = folder / name.strip("/")
            await run(MCOPY, "-n", "-i", target, f"::{name}", str(copy), env=env)
            digests[name] = await asyncio.to_thread(_sha256, copy)
    return digests


async def _make_ext4(disk: Path, spec: DiskSpec, identity: str, scratch: Path) -> tuple[dict[str, str],
                                                                                          dict[str, str]]:
    """Partition 2's ext4 filled from a folder of the spec's files; its files' sha256 and its links."""
    start, size = _places(spec)[1]
    root = scratch / "root"
    files, links = await asyncio.to_thread(_write_tree, root, spec, identity)
    ext4_uuid = _uuid(spec.seed, "ext4")
    try:
        await run(MKFS_EXT4, "-q", "-F", "-b", str(EXT4_BLOCK), "-L", EXT4_LABEL, "-U", ext4_uuid,
                  "-E", f"offset={start * SECTOR},nodiscard,root_owner=0:0,hash_seed={_uuid(spec.seed, 'hash')}",
                  "-d", str(root), str(disk), f"{size * SECTOR // 1024}k")
    except ImagingError as exc:
        raise ImagingError(f"the ext4 of {size * SECTOR // MIB} MiB cannot hold {spec.files_mib} MiB of files:"
                           f" {exc}") from None
    return files, links


def _write_tree(root: Path, spec: DiskSpec, identity: str) -> tuple[dict[str, str], dict[str, str]]:
    """The ext4's files under ``root``: ``files_mib`` MiB of random files in :data:`FOLDERS`, an
    identity, text files (an fstab naming the disk's UUIDs), an empty file, a sparse one, and
    links (one short, kept in its inode; one long, in a block of its own).  Their sha256 and links."""
    digests: dict[str, str] = {}
    swap = f"UUID={_uuid(spec.seed, 'swap')} none swap sw 0 0\n" if spec.swap_mib else ""
    texts = {
        IDENTITY_FILE: identity + "\n",
        "/etc/hostname": f"disk-{spec.seed}\n",
        "/etc/fstab": (f"UUID={_uuid(spec.seed, 'ext4')} / ext4 errors=remount-ro 0 1\n"
                       f"UUID={_fat_serial(spec.seed)} /boot/firmware vfat defaults 0 2\n{swap}"),
        "/home/user/notes.txt": "".join(f"line {n} of the notes of disk {spec.seed}\n" for n in range(40)),
        "/var/lib/db/empty": "",
    }
    for name, text in texts.items():
        local = root / name.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(text)
        digests[name] = hashlib.sha256(text.encode()).hexdigest()
    rng = random.Random(f"imaging-disk {spec.seed} sizes")
    remaining = spec.files_mib * MIB
    number = 0
    while remaining > 0:
        size = min(remaining, rng.randrange(MIB // 4, 12 * MIB) + rng.randrange(4096))
        name = f"/{FOLDERS[number % len(FOLDERS)]}/blob-{number:03d}.bin"
        digests[name] = _write_random(root / name.lstrip("/"), size, f"imaging-disk {spec.seed} {name}")
        remaining -= size
        number += 1
    sparse = root / "var/lib/db/sparse.db"
    source = random.Random(f"imaging-disk {spec.seed} sparse")
    head, tail = source.randbytes(EXT4_BLOCK), source.randbytes(100)
    with open(sparse, "wb") as handle:
        handle.write(head)
        handle.seek(MIB)
        handle.write(tail)
    digests["/var/lib/db/sparse.db"] = hashlib.sha256(head + bytes(MIB - len(head)) + tail).hexdigest()
    links = {"/etc/localtime": "/usr/share/zoneinfo/Etc/UTC",
             "/home/user/media": "../../srv/media/" + "a-folder-name-long-enough-for-a-block-of-its-own/" * 2}
    for name, target in links.items():
        (root / name.lstrip("/")).symlink_to(target)
    return digests, links


def _write_random(path: Path, size: int, seed: str) -> str:
    """Write ``size`` random bytes derived from ``seed`` at ``path``; their sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for done in range(0, size, CHUNK):
            chunk = rng.randbytes(min(CHUNK, size - done))
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()


async def _make_swap(disk: Path, spec: DiskSpec, scratch: Path) -> None:
    """Partition 3's swap area: ``mkswap`` in a sparse file of the partition's size, whose first
    page (the swap header; the rest stays zeros) goes into the disk."""
    start, size = _places(spec)[2]
    if not size:
        return
    area = scratch / "swap"
    with open(os.open(area, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        handle.truncate(size * SECTOR)
    await run(MKSWAP, "-q", "-U", _uuid(spec.seed, "swap"), "-L", _swap_label(spec.seed), str(area))
    with open(area, "rb") as source:
        header = source.read(SWAP_PAGE)
    with open(disk, "r+b") as handle:
        handle.seek(start * SECTOR)
        handle.write(header)


def _uuid(seed: int, what: str) -> str:
    """A version-4-shaped UUID derived from the seed and what it names."""
    digest = hashlib.sha256(f"imaging-disk {seed} {what}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _hex(seed: int, what: str, digits: int) -> str:
    """``digits`` hex digits derived from the seed and what they name (upper case)."""
    return hashlib.sha256(f"imaging-disk {seed} {what}".encode()).hexdigest()[:digits].upper()


def _fat_serial(seed: int) -> str:
    """The FAT's volume id as blkid and fstab write it (ABCD-1234)."""
    serial = _hex(seed, "fat", 8)
    return f"{serial[:4]}-{serial[4:]}"


def _swap_label(seed: int) -> str:
    """The swap area's label."""
    return f"swap-{seed}"


# --- deleted data -----------------------------------------------------------------------------------------------


async def dirty(path: Path, mib: int, seed: int) -> int:
    """Leave ``mib`` MiB of deleted data in the free space of the disk's file systems, capped by their
    free space; the bytes left.  A little goes to each FAT (a file ``mcopy`` writes, ``mdel`` deletes;
    at most an eighth of ``mib`` and half its free space); the rest to the ext4 partitions: a file
    ``debugfs`` writes then removes (deleted inodes and all, as a used system has them) and, for the
    bulk, random bytes written straight into the blocks the ext4's bitmap says are free (what those
    blocks hold once the files that used them are deleted, written at disk speed; spread over every
    free extent).  The data: :data:`POOL_BYTES` of random bytes derived from ``seed``, repeated."""
    budget = mib * MIB
    if budget <= 0:
        return 0
    parts = await partitions(path)
    pool = await asyncio.to_thread(random.Random(f"imaging-disk {seed} deleted").randbytes,
                                   min(budget, POOL_BYTES))
    left = 0
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as scratch:
        for part in parts:
            if part.fs == "vfat":
                left += await _dirty_fat(path, part, min(budget // 8, budget - left), pool, Path(scratch))
        ext4 = [part for part in parts if part.fs in EXT_FS]
        if ext4:
            left += await _dirty_ext4(path, ext4, budget - left, pool, Path(scratch))
    log.info("left %d MiB of deleted data on %s", left // MIB, path)
    return left


async def _dirty_fat(path: Path, part: Part, budget: int, pool: bytes, scratch: Path) -> int:
    """A file of up to ``budget`` bytes (half the FAT's free space at most) written then deleted."""
    target = f"{path}@@{part.start}"
    listing = await run(MDIR, "-i", target, "::", env=mtools_env())
    found = re.search(r"([\d ]+) bytes free", listing)
    free = int(found.group(1).replace(" ", "")) if found else 0
    size = min(budget, free // 2)
    if size < 64 * 1024:
        return 0
    local = scratch / "deleted.bin"
    await asyncio.to_thread(_write_pool, local, size, pool)
    await run(MCOPY, "-i", target, str(local), "::/DELETED.BIN", env=mtools_env())
    await run(MDEL, "-i", target, "::/DELETED.BIN", env=mtools_env())
    local.unlink()
    return size


async def _dirty_ext4(path: Path, parts: list[Part], budget: int, pool: bytes, scratch: Path) -> int:
    """Deleted data in the ext4 partitions' free blocks: a file debugfs writes then removes on the
    first, then the free extents of all of them filled, each the same fraction, up to ``budget``."""
    first = parts[0]
    runs = await free_extents(path, first)
    free = sum(length for _, length in runs)
    real = min(REAL_DELETE_BYTES, budget, free // 2) // EXT4_BLOCK * EXT4_BLOCK
    if real:
        local = scratch / "deleted.bin"
        await asyncio.to_thread(_write_pool, local, real, pool)
        commands = scratch / "commands"
        commands.write_text(f"write {local} deleted.bin\nrm deleted.bin\n")
        await run(DEBUGFS, "-w", "-f", str(commands), _ext2_name(path, first))
        local.unlink()
    # rm freed every block the write took: the first partition's free blocks are those found before
    extents = [*runs, *[extent for part in parts[1:] for extent in await free_extents(path, part)]]
    free = sum(length for _, length in extents)
    want = min(budget, free)
    if want <= 0:
        return real
    return max(real, await asyncio.to_thread(_fill, path, extents, want, free, pool))


def _write_pool(path: Path, size: int, pool: bytes) -> None:
    """A file of ``size`` bytes of ``pool``, repeated."""
    with open(path, "wb") as handle:
        for done in range(0, size, len(pool)):
            handle.write(pool[:min(len(pool), size - done)])


def _fill(path: Path, extents: list[tuple[int, int]], want: int, free: int, pool: bytes) -> int:
    """Write ``want`` bytes of ``pool`` (repeated) into the ``extents`` (offset, length in bytes; ``free``
    bytes in all), the same fraction of each, whole blocks; the bytes written."""
    written = 0
    position = 0
    fd = os.open(path, os.O_WRONLY)
    try:
        for offset, length in extents:
            share = min(length, -(-length * want // free) // EXT4_BLOCK * EXT4_BLOCK, want - written)
            done = 0
            while done < share:
                piece = min(share - done, len(pool) - position, CHUNK)
                os.pwrite(fd, pool[position:position + piece], offset + done)
                done += piece
                position = (position + piece) % len(pool)
            written += share
            if written >= want:
                break
    finally:
        os.close(fd)
    return written


async def free_extents(path: Path, part: Part) -> list[tuple[int, int]]:
    """The free blocks of the ext4 at ``part`` of the disk file ``path`` as (offset, length) in bytes
    from the disk's start, by the file system's own bitmap (``debugfs``'s ``ffb``)."""
    block_size, blocks = _ext4_geometry(path, part.start)
    out = await run(DEBUGFS, "-R", f"ffb {blocks}", _ext2_name(path, part), check=False)
    found = out.split(":", 1)
    numbers = sorted(map(int, found[1].split())) if len(found) == 2 else []
    extents: list[tuple[int, int]] = []
    begin = previous = -2
    for number in [*numbers, -2]:
        if number != previous + 1:
            if begin >= 0:
                extents.append((part.start + begin * block_size, (previous - begin + 1) * block_size))
            begin = number
        previous = number
    return extents


def _ext4_geometry(path: Path, start: int) -> tuple[int, int]:
    """Block size and block count of the ext2/3/4 whose superblock is at ``start`` + 1024 bytes."""
    with open(path, "rb") as handle:
        handle.seek(start + 1024)
        sb = handle.read(1024)
    (count_lo,) = struct.unpack_from("<I", sb, 4)
    (log_size,) = struct.unpack_from("<I", sb, 24)
    (magic,) = struct.unpack_from("<H", sb, 56)
    (incompat,) = struct.unpack_from("<I", sb, 96)
    (count_hi,) = struct.unpack_from("<I", sb, 0x150)
    if magic != 0xEF53:
        raise ImagingError(f"{path}: no ext2/3/4 at byte {start}")
    blocks = count_lo | (count_hi << 32 if incompat & 0x80 else 0)  # INCOMPAT_64BIT
    return 1024 << log_size, blocks


async def dirty_bytes(path: Path) -> int:
    """Bytes of the ext4 partitions' free blocks that hold data (not zeros): deleted data a
    file-system-aware image leaves behind and a raw image carries.  Reads only what the file
    stores (the holes of a sparse file are skipped)."""
    total = 0
    for part in await partitions(path):
        if part.fs in EXT_FS:
            extents = await free_extents(path, part)
            total += await asyncio.to_thread(_nonzero, path, extents)
    return total


def _nonzero(path: Path, extents: list[tuple[int, int]]) -> int:
    """Bytes of the ``extents`` in blocks (:data:`EXT4_BLOCK`) that are not all zeros."""
    zero = bytes(EXT4_BLOCK)
    count = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset, length in extents:
            end = offset + length
            here = offset
            while here < end:
                try:
                    data = os.lseek(fd, here, os.SEEK_DATA)
                except OSError:  # no data from here to the file's end
                    break
                if data >= end:
                    break
                hole = min(os.lseek(fd, data, os.SEEK_HOLE), end)
                here = data - (data - offset) % EXT4_BLOCK
                while here < hole:
                    chunk = os.pread(fd, min(CHUNK, hole - here), here)
                    count += sum(EXT4_BLOCK for at in range(0, len(chunk), EXT4_BLOCK)
                                 if chunk[at:at + EXT4_BLOCK] != zero[:len(chunk) - at])
                    here += len(chunk)
                here = max(here, hole)
    finally:
        os.close(fd)
    return count


# --- inspecting a disk ------------------------------------------------------------------------------------------


async def partitions(path: Path) -> list[Part]:
    """The partitions of the disk file ``path`` with what blkid says they hold; a disk without a
    partition table is one partition numbered 0 covering the whole file."""
    whole = _export(await run(BLKID, "-p", "-o", "export", str(path), check=False))
    size = path.stat().st_size
    if "PTTYPE" not in whole:
        return [Part(0, 0, size, whole.get("TYPE", ""), whole.get("UUID", ""), whole.get("LABEL", ""))]
    table = json.loads(await run(SFDISK, "--json", str(path)))["partitiontable"]
    sector = int(table.get("sectorsize", SECTOR))
    found = []
    for entry in table.get("partitions", []):
        number = int(re.search(r"(\d+)$", entry["node"]).group(1))  # type: ignore[union-attr]
        start, length = int(entry["start"]) * sector, int(entry["size"]) * sector
        probe = _export(await run(BLKID, "-p", "-o", "export", "-O", str(start), "-S", str(length), str(path),
                                  check=False))
        found.append(Part(number, start, length, probe.get("TYPE", ""), probe.get("UUID", ""),
                           probe.get("LABEL", "")))
    return found


def _export(text: str) -> dict[str, str]:
    """``blkid -o export`` lines as a dict."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def normal_table(dump: str) -> str:
    """``sfdisk --dump`` without its ``device:`` line and with each partition's device name replaced by
    its number (``1 : start=…``): a table that compares equal across disks and file names."""
    lines = []
    for line in dump.splitlines():
        if line.startswith("device:"):
            continue
        found = re.match(r"\S.*?(\d+)\s+:\s+(start=.*)", line)
        lines.append(f"{found.group(1)} : {found.group(2)}" if found else line.rstrip())
    return "\n".join(lines).strip() + "\n"


async def inspect(path: Path) -> DiskReport:
    """What the disk file ``path`` holds: its table and, for each partition, its file system, whether
    the file system's checker finds it clean (``e2fsck -fn``; ``fsck.fat -n`` on a copy of the
    partition; swap: a header of this partition's size with blkid's UUID and label), and every
    file's sha256.  A disk without partition table is read as one file system (partition 0)."""
    parts = await partitions(path)
    table = normal_table(await run(SFDISK, "--dump", str(path))) if parts and parts[0].number else ""
    reports = []
    with tempfile.TemporaryDirectory(prefix="imaging-inspect-") as scratch:
        for part in parts:
            folder = Path(scratch) / str(part.number)
            clean, check = await _check(path, part, Path(scratch))
            await _extract(path, part, folder)
            files, links = await asyncio.to_thread(_manifest, folder)
            reports.append(PartitionReport(part.number, part.start, part.size, part.fs, part.uuid, part.label,
                                           clean, files, links, check))
    return DiskReport(table, tuple(reports))


async def extract_files(path: Path, dest: Path) -> dict[int, Path]:
    """Copy every file of the disk's FAT and ext partitions under ``dest/<partition number>/``; the
    folder of each partition that has files."""
    folders = {}
    for part in await partitions(path):
        folder = dest / str(part.number)
        if await _extract(path, part, folder):
            folders[part.number] = folder
    return folders


async def _extract(path: Path, part: Part, folder: Path) -> bool:
    """The files of ``part`` into ``folder`` (made); False when it holds no file system with files."""
    if part.fs in EXT_FS:
        folder.mkdir(parents=True)
        await run(DEBUGFS, "-R", f"rdump / {folder}", _ext2_name(path, part))
        return True
    if part.fs == "vfat":
        folder.mkdir(parents=True)
        await run(MCOPY, "-s", "-n", "-m", "-i", f"{path}@@{part.start}", "::", f"{folder}/", check=False,
                  env=mtools_env())
        return True
    return False


def _manifest(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """sha256 of every regular file under ``folder`` and the target of every link, by path from it."""
    files: dict[str, str] = {}
    links: dict[str, str] = {}
    for item in sorted(_walk(folder)):
        name = "/" + str(item.relative_to(folder))
        if item.is_symlink():
            links[name] = os.readlink(item)
        elif item.is_file():
            files[name] = _sha256(item)
    return files, links


def _walk(folder: Path) -> Iterator[Path]:
    """Every entry under ``folder``, links not followed."""
    if not folder.is_dir():
        return
    for top, dirs, names in os.walk(folder):
        for name in [*dirs, *names]:
            item = Path(top) / name
            if item.is_symlink() or not item.is_dir():
                yield item


def _sha256(path: Path) -> str:
    """The sha256 of a file."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


async def _check(path: Path, part: Part, scratch: Path) -> tuple[bool, str]:
    """Whether ``part``'s file system is clean, and what its checker said."""
    if part.fs in EXT_FS:
        code, out = await _status(E2FSCK, "-fn", _ext2_name(path, part))
        return code == 0, out
    if part.fs == "vfat":
        copy = scratch / f"fat-{part.number}"
        await asyncio.to_thread(_copy_range, path, part.start, part.size, copy)
        code, out = await _status(FSCK_FAT, "-n", str(copy))
        copy.unlink()
        return code == 0, out.replace(str(copy), f"partition {part.number}")
    if part.fs == "swap":
        return _check_swap(path, part)
    return False, "no file system that blkid knows"


def _check_swap(path: Path, part: Part) -> tuple[bool, str]:
    """A swap header valid for this partition (signature, version 1, last page, no bad pages) whose UUID
    and label are blkid's."""
    with open(path, "rb") as handle:
        handle.seek(part.start)
        page = handle.read(SWAP_PAGE)
    signature = page[SWAP_PAGE - 10:]
    version, last_page, bad = struct.unpack_from("<III", page, 1024)
    area_uuid = str(uuid.UUID(bytes=page[1036:1052]))
    label = page[1052:1068].split(b"\0", 1)[0].decode(errors="replace")
    pages = part.size // SWAP_PAGE
    clean = (signature == b"SWAPSPACE2" and version == 1 and last_page == pages - 1 and bad == 0
             and area_uuid == part.uuid and label == part.label)
    return clean, (f"{signature.decode(errors='replace')} version {version}, last page {last_page} of {pages}"
                   f" pages, {bad} bad pages, UUID {area_uuid}, label {label!r}")


def _copy_range(path: Path, start: int, size: int, copy: Path) -> None:
    """Bytes ``start`` to ``start + size`` of ``path`` into a new file ``copy`` (sparse where zeros)."""
    with open(path, "rb") as source, open(copy, "wb") as target:
        source.seek(start)
        for _ in range(0, size, CHUNK):
            chunk = source.read(min(CHUNK, start + size - source.tell()))
            if chunk.count(0) == len(chunk):
                target.seek(len(chunk), os.SEEK_CUR)
            else:
                target.write(chunk)
        target.truncate(size)


def _ext2_name(path: Path, part: Part) -> str:
    """The name the e2fsprogs open ``part`` of ``path`` by: ``FILE?offset=BYTES``."""
    return f"{path}?offset={part.start}"


async def _status(*argv: str) -> tuple[int, str]:
    """Run a checker to its end: its exit status and its output (stderr then stdout)."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    code = proc.returncode if proc.returncode is not None else -1
    return code, (err + out).decode(errors="replace")
