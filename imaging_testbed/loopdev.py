"""A node's disk file on a loop device, with partition devices, as a disk is on hardware.

The controller attaches the file with the kernel's loop ioctls (no ``losetup``):
``LOOP_CTL_GET_FREE`` on ``/dev/loop-control`` names a free device,
``LOOP_CONFIGURE`` (Linux >= 5.8; ``LOOP_SET_FD`` then ``LOOP_SET_STATUS64``
where it is refused) gives it the file, partition scanning, AUTOCLEAR and a
size limit (the disk's size: a write past it fails with ``ENOSPC``), then
``BLKRRPART`` asks the kernel to read the partition table.  A kernel built
without partition-table parsers finds no partition; :func:`add_partitions`
then reads the table with ``sfdisk --json`` and adds each partition with
``BLKPG_ADD_PARTITION``, as ``partx --add`` does.

What the node writes sits in the device's page cache until it is written to
the file; :meth:`LoopDevice.limit_dirty` caps that at :data:`DIRTY_CAP` bytes
(the device's writeback ``strict_limit`` and ``max_bytes``, Linux >= 6.2; else
its ``max_ratio``), so that a power-off flushes little, as fast as a reset
answers, even after gigabytes were written.  The previous values are put
back when the device is let go of (the kernel keeps them with the device).

A :class:`LoopDevice` holds one descriptor on the device.  Closing it after
everything else that had the device open is gone is the last close: the
kernel writes what is cached to the file and AUTOCLEAR detaches the device
(its partitions go with it).  A killed controller closes its descriptors
too, so no device stays attached to a file of a dead testbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from imaging.errors import ImagingError

from .procs import run
from .programs import SFDISK

LOOP_CONTROL = Path("/dev/loop-control")
SYS_BLOCK = Path("/sys/block")

# <linux/loop.h>, <linux/fs.h>, <linux/blkpg.h>
LOOP_SET_FD = 0x4C00
LOOP_CLR_FD = 0x4C01
LOOP_SET_STATUS64 = 0x4C04
LOOP_GET_STATUS64 = 0x4C05
LOOP_CONFIGURE = 0x4C0A
LOOP_CTL_GET_FREE = 0x4C82
BLKRRPART = 0x125F
BLKGETSIZE64 = 0x80081272
BLKPG = 0x1269
BLKPG_ADD_PARTITION = 1
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_PARTSCAN = 8

DIRTY_CAP = 64 << 20  # bytes of the node's writes the device's page cache may hold before writing them
DIRTY_RATIO = 1  # percent of the machine's dirty limit, where the kernel has no max_bytes
KERNEL_PACING = {"strict_limit": "0", "max_ratio": "100", "max_ratio_fine": "1000000"}  # a new device's
ATTACH_TRIES = 8  # a free device may be taken by another process between GET_FREE and CONFIGURE
SECTOR = 512  # the unit of sfdisk's starts and sizes when it names none
DOS_EXTENDED = {"5", "f", "85"}  # a DOS extended partition: the kernel exposes its first 2 sectors only


class LoopUnavailable(ImagingError):
    """This machine gives no loop device for the disk file (no loop-control, ioctl refused, ...)."""


class _LoopInfo64(ctypes.Structure):
    """``struct loop_info64``."""

    _fields_ = [("lo_device", ctypes.c_uint64), ("lo_inode", ctypes.c_uint64), ("lo_rdevice", ctypes.c_uint64),
                ("lo_offset", ctypes.c_uint64), ("lo_sizelimit", ctypes.c_uint64), ("lo_number", ctypes.c_uint32),
                ("lo_encrypt_type", ctypes.c_uint32), ("lo_encrypt_key_size", ctypes.c_uint32),
                ("lo_flags", ctypes.c_uint32), ("lo_file_name", ctypes.c_char * 64),
                ("lo_crypt_name", ctypes.c_char * 64), ("lo_encrypt_key", ctypes.c_uint8 * 32),
                ("lo_init", ctypes.c_uint64 * 2)]


class _LoopConfig(ctypes.Structure):
    """``struct loop_config``."""

    _fields_ = [("fd", ctypes.c_uint32), ("block_size", ctypes.c_uint32), ("info", _LoopInfo64),
                ("reserved", ctypes.c_uint64 * 8)]


class _BlkpgPartition(ctypes.Structure):
    """``struct blkpg_partition`` (start and length in bytes)."""

    _fields_ = [("start", ctypes.c_longlong), ("length", ctypes.c_longlong), ("pno", ctypes.c_int),
                ("devname", ctypes.c_char * 64), ("volname", ctypes.c_char * 64)]


class _BlkpgArg(ctypes.Structure):
    """``struct blkpg_ioctl_arg``."""

    _fields_ = [("op", ctypes.c_int), ("flags", ctypes.c_int), ("datalen", ctypes.c_int), ("data", ctypes.c_void_p)]


@dataclass(frozen=True)
class Partition:
    """A partition device of a loop device, as sysfs shows it."""

    number: int
    name: str  # loop3p1
    major: int
    minor: int


@dataclass(frozen=True)
class TablePartition:
    """A partition as the table on the disk describes it (bytes)."""

    number: int
    start: int
    length: int


class LoopDevice:
    """A loop device attached to a disk file, held open by this object until :meth:`close`."""

    def __init__(self, number: int, fd: int, backing: Path) -> None:
        self.number = number
        self.backing = backing.resolve()
        self._fd: int | None = fd
        self._saved_bdi: dict[str, str] = {}  # writeback settings changed, with their values before

    @property
    def name(self) -> str:
        """The kernel's name of the device, ``loopN``."""
        return f"loop{self.number}"

    @property
    def path(self) -> Path:
        """``/dev/loopN``."""
        return Path("/dev") / self.name

    @property
    def sys_dir(self) -> Path:
        """``/sys/block/loopN``."""
        return SYS_BLOCK / self.name

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._fd is None

    def fileno(self) -> int:
        """The descriptor held on the device; ValueError once closed."""
        if self._fd is None:
            raise ValueError(f"{self.name} is closed")
        return self._fd

    def size(self) -> int:
        """The device's size in bytes (``BLKGETSIZE64``)."""
        out = fcntl.ioctl(self.fileno(), BLKGETSIZE64, bytes(8))
        return int.from_bytes(out, sys.byteorder)

    def status(self) -> tuple[int, int, int, int]:
        """``(st_dev, st_ino, size limit, flags)`` of the attachment (``LOOP_GET_STATUS64``)."""
        info = _LoopInfo64.from_buffer_copy(fcntl.ioctl(self.fileno(), LOOP_GET_STATUS64, bytes(_LoopInfo64())))
        return int(info.lo_device), int(info.lo_inode), int(info.lo_sizelimit), int(info.lo_flags)

    def partitions(self) -> list[Partition]:
        """The device's partitions (sysfs), by number."""
        found = []
        for entry in self.sys_dir.glob(f"{self.name}p*"):
            try:
                number = int((entry / "partition").read_text())
                major, minor = ((entry / "dev").read_text().strip().split(":"))
            except (OSError, ValueError):  # going away
                continue
            found.append(Partition(number, entry.name, int(major), int(minor)))
        return sorted(found, key=lambda p: p.number)

    def reread(self) -> None:
        """Ask the kernel to read the partition table again (``BLKRRPART``); OSError if refused."""
        fcntl.ioctl(self.fileno(), BLKRRPART)

    def add_partition(self, number: int, start: int, length: int) -> None:
        """Add partition ``number`` at ``start`` for ``length`` bytes (``BLKPG_ADD_PARTITION``); OSError if refused."""
        part = _BlkpgPartition(start=start, length=length, pno=number)
        arg = _BlkpgArg(op=BLKPG_ADD_PARTITION, flags=0, datalen=ctypes.sizeof(part),
                        data=ctypes.addressof(part))
        fcntl.ioctl(self.fileno(), BLKPG, bytes(arg))

    def detached(self) -> bool:
        """Whether the device no longer holds the file (sysfs: no backing file, or another one)."""
        return self.name not in attached_to(self.backing)

    def limit_dirty(self, cap: int = DIRTY_CAP) -> bool:
        """Cap the device's dirty page cache at ``cap`` bytes (``strict_limit`` and ``max_bytes`` of its
        writeback, else ``max_ratio``); whether the kernel took a cap.  Undone by :meth:`close`; a cap
        left by a controller that was killed is undone to the kernel's defaults."""
        bdi = self.sys_dir / "bdi"
        # max_bytes is kept as a ratio of the machine's dirty limit: the ratio is what to put back
        ratio = "max_ratio_fine" if (bdi / "max_ratio_fine").exists() else "max_ratio"
        try:
            saved = {name: (bdi / name).read_text().strip() for name in (ratio, "strict_limit")
                     if (bdi / name).exists()}
        except OSError:
            return False
        if _capped(saved):
            saved = {name: KERNEL_PACING[name] for name in saved}
        self._saved_bdi = saved
        try:
            if "strict_limit" in saved and (bdi / "max_bytes").exists():
                (bdi / "strict_limit").write_text("1")
                (bdi / "max_bytes").write_text(str(cap))
            else:
                (bdi / "max_ratio").write_text(str(DIRTY_RATIO))
        except OSError:
            return False
        return True

    def close(self) -> None:
        """Let go of the device: its writeback settings back as they were, then, at the last close, the
        kernel flushes it to the file and detaches it."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        for name, value in self._saved_bdi.items():
            with contextlib.suppress(OSError):  # else the setting stays with the device: it only paces writeback
                (self.sys_dir / "bdi" / name).write_text(value)
        self._saved_bdi.clear()
        os.close(fd)


def _capped(pacing: dict[str, str]) -> bool:
    """Whether writeback settings read from a free device are a cap of :meth:`LoopDevice.limit_dirty`
    (``strict_limit``, which nothing else sets on a loop device; else the ratio it sets)."""
    if "strict_limit" in pacing:
        return pacing["strict_limit"] == "1"
    return pacing.get("max_ratio") == str(DIRTY_RATIO)


def reset_pacing(name: str) -> None:
    """Put the writeback settings of loop device ``name`` (``loopN``) back to the kernel's defaults, e.g.
    after its controller was killed while capping it; nothing for settings the kernel does not have."""
    bdi = SYS_BLOCK / name / "bdi"
    for setting in ("max_ratio", "strict_limit"):
        if (bdi / setting).exists():
            (bdi / setting).write_text(KERNEL_PACING[setting])


def attach(disk: Path, size_limit: int, *, control: Path = LOOP_CONTROL, configure: bool = True) -> LoopDevice:
    """Attach ``disk`` to a free loop device, with partition scanning, AUTOCLEAR and a size limit of
    ``size_limit`` bytes; the device, held open.

    ``configure=False`` skips ``LOOP_CONFIGURE`` (as a kernel older than 5.8 refuses it).  Raises
    LoopUnavailable, naming the step, when the machine gives no loop device or the device is not
    attached to ``disk`` afterwards.
    """
    try:
        ctl = os.open(control, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise LoopUnavailable(f"cannot open {control}: {exc.strerror}") from None
    try:
        backing = os.open(disk, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        os.close(ctl)
        raise LoopUnavailable(f"cannot open {disk}: {exc.strerror}") from None
    try:
        expected = os.fstat(backing)
        for _ in range(ATTACH_TRIES):
            loop = _attach_free(ctl, backing, disk, size_limit, configure)
            if loop is None:
                continue
            st_dev, st_ino, limit, flags = loop.status()
            wanted = LO_FLAGS_AUTOCLEAR | LO_FLAGS_PARTSCAN
            if (st_dev, st_ino) != (expected.st_dev, expected.st_ino) or limit != size_limit \
                    or flags & wanted != wanted:
                loop.close()
                raise LoopUnavailable(f"{loop.path} is not attached to {disk} as asked")
            return loop
        raise LoopUnavailable(f"no free loop device after {ATTACH_TRIES} tries (others took them first)")
    except OSError as exc:
        raise LoopUnavailable(f"loop device refused: {exc.strerror or exc}") from None
    finally:
        os.close(backing)
        os.close(ctl)


def _attach_free(ctl: int, backing: int, disk: Path, size_limit: int, configure: bool) -> LoopDevice | None:
    """Attach ``backing`` to the device LOOP_CTL_GET_FREE names; None when another process took it first."""
    number = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
    fd = os.open(f"/dev/loop{number}", os.O_RDWR | os.O_CLOEXEC)
    try:
        _configure(fd, backing, disk, size_limit, configure)
    except OSError as exc:
        os.close(fd)
        if exc.errno == errno.EBUSY:
            return None
        raise
    return LoopDevice(number, fd, disk)


def _configure(fd: int, backing: int, disk: Path, size_limit: int, configure: bool) -> None:
    """Give device ``fd`` the file ``backing``: LOOP_CONFIGURE, else LOOP_SET_FD + LOOP_SET_STATUS64."""
    info = _LoopInfo64(lo_sizelimit=size_limit, lo_flags=LO_FLAGS_AUTOCLEAR | LO_FLAGS_PARTSCAN,
                       lo_file_name=os.fsencode(disk)[:63])
    if configure:
        try:
            fcntl.ioctl(fd, LOOP_CONFIGURE, bytes(_LoopConfig(fd=backing, block_size=0, info=info)))
            return
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTTY):
                raise
    fcntl.ioctl(fd, LOOP_SET_FD, backing)
    try:
        fcntl.ioctl(fd, LOOP_SET_STATUS64, bytes(info))
    except OSError:
        fcntl.ioctl(fd, LOOP_CLR_FD)
        raise


def table_partitions(sfdisk_json: str, device: str, size: int) -> list[TablePartition]:
    """The partitions ``sfdisk --json DEVICE`` describes, in bytes, as the kernel would expose them on
    a device of ``size`` bytes: a DOS extended partition by its first two sectors, partitions past the
    end left out and those that cross it cut at the end.  ValueError when the text is not sfdisk's JSON."""
    if not sfdisk_json.strip():
        return []
    table = json.loads(sfdisk_json)["partitiontable"]
    sector = int(table.get("sectorsize", SECTOR))
    found = []
    for entry in table.get("partitions", []):
        suffix = str(entry["node"]).removeprefix(device).removeprefix("p")
        if not suffix.isdigit():
            raise ValueError(f"partition {entry['node']!r} is not one of {device}")
        start, length = int(entry["start"]) * sector, int(entry["size"]) * sector
        if table.get("label") == "dos" and str(entry.get("type", "")).lower() in DOS_EXTENDED:
            length = min(length, 2 * SECTOR)
        if length <= 0 or start <= 0 or start >= size:
            continue
        found.append(TablePartition(int(suffix), start, min(length, size - start)))
    return found


async def add_partitions(loop: LoopDevice) -> list[Partition]:
    """Give ``loop`` its partition devices: the kernel's scan (``BLKRRPART``), else, when the kernel
    found none, each partition ``sfdisk`` reads added by ``BLKPG``; the partitions it has then.

    Raises ImagingError when the kernel refuses the scan or a partition, or sfdisk's answer is unreadable.
    """
    try:
        await asyncio.to_thread(loop.reread)
    except OSError as exc:
        raise ImagingError(f"{loop.path}: the kernel refuses to read its partition table: {exc.strerror}"
                           ) from None
    if loop.partitions():
        return loop.partitions()
    answer = await run(SFDISK, "--json", str(loop.path), check=False)  # no table: no output, status 1
    try:
        wanted = table_partitions(answer, str(loop.path), loop.size())
    except (ValueError, KeyError, TypeError) as exc:
        raise ImagingError(f"{loop.path}: cannot read sfdisk's table: {exc}") from None
    for part in wanted:
        try:
            loop.add_partition(part.number, part.start, part.length)
        except OSError as exc:
            raise ImagingError(f"{loop.path}: the kernel refuses partition {part.number}: {exc.strerror}") from None
    return loop.partitions()


def attached_to(path: Path) -> list[str]:
    """The loop devices (``loopN``) whose backing file is ``path``, as sysfs shows them."""
    target = str(path.resolve())
    found = []
    for entry in sorted(SYS_BLOCK.glob("loop*")):
        try:
            backing = (entry / "loop" / "backing_file").read_text().strip()
        except OSError:  # not attached, or detached meanwhile
            continue
        backing = backing.removesuffix(" (deleted)")
        # the kernel names the file from the machine's root: in a chroot, the chroot's folder comes first
        if backing == target or backing.endswith(target):
            found.append(entry.name)
    return found
