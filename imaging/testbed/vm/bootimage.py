"""Bootable test images for the testbed's virtual machines, made without root.

A boot image is a FAT "superfloppy" (no partition table: ``mkfs.vfat -C``)
whose boot sector is syslinux's (``syslinux --install``, mtools-based, no
loop device), holding ``syslinux.cfg``, the kernel, the disk-OS initramfs
(:func:`imaging.testbed.vm.initramfs.build_disk_os`) and the image's identity
line in ``/etc/imaging-image`` (where :func:`imaging.testbed.images.read_identity`
and the disk OS's init read it), then zeros up to the disk's size.  SeaBIOS
boots it from the VM's disk; the OS it boots says which image it is from the
disk's own bytes, so an image saved back and loaded elsewhere keeps its name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..images import IDENTITY_FILE, IDENTITY_PREFIX, MIB, MTOOLS_ENV, TestImage, sha256_file
from ..procs import run
from ..programs import MCOPY, MKFS_VFAT, SYSLINUX
from .kernel import Kernel, tool

KERNEL_NAME = "vmlinuz"
INITRD_NAME = "initrd.img"
SYSLINUX_CFG = f"""\
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT disk-os
LABEL disk-os
  KERNEL /{KERNEL_NAME}
  INITRD /{INITRD_NAME}
  APPEND console=ttyS0 loglevel=4 imaging-disk-os
"""
FAT_SLACK = MIB  # room for the FAT tables, folders and syslinux's ldlinux.sys and ldlinux.c32


def fat_kib(kernel: Kernel, disk_os: Path) -> int:
    """The size in KiB of the FAT file system of a boot image: its files and
    some room, in whole MiB."""
    needed = kernel.vmlinuz.stat().st_size + disk_os.stat().st_size + FAT_SLACK
    return -(-needed // MIB) * 1024


async def make_boot_image(kernel: Kernel, disk_os: Path, target: Path, size_mib: int, identity: str) -> TestImage:
    """Write at ``target`` a raw bootable image of ``size_mib`` MiB whose OS
    (``kernel`` with initramfs ``disk_os``) says it is ``identity`` (an
    ``imaging-test-image …`` line, see :func:`imaging.testbed.images.new_identity`).

    The image is made beside ``target`` and renamed over it.  Raises
    ValueError when ``identity`` is not an identity line or the files do not
    fit in ``size_mib`` MiB.
    """
    if not identity.startswith(IDENTITY_PREFIX + " ") or "\n" in identity:
        raise ValueError(f"not an identity line: {identity!r}")
    fat = fat_kib(kernel, disk_os)
    if fat * 1024 > size_mib * MIB:
        raise ValueError(f"a boot image of this kernel and initramfs needs at least {fat // 1024} MiB, "
                         f"not {size_mib}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as scratch:
        files = Path(scratch) / "files"  # the FAT's contents; mcopy follows the symlinks
        (files / Path(IDENTITY_FILE).parent.relative_to("/")).mkdir(parents=True)
        (files / IDENTITY_FILE.lstrip("/")).write_text(identity + "\n")
        (files / "syslinux.cfg").write_text(SYSLINUX_CFG)
        (files / KERNEL_NAME).symlink_to(kernel.vmlinuz.resolve())
        (files / INITRD_NAME).symlink_to(disk_os.resolve())
        raw = Path(scratch) / "disk.img"
        await run(tool(MKFS_VFAT), "-C", "-n", "IMAGING", str(raw), str(fat))
        await run(tool(SYSLINUX), "--install", str(raw))
        await run(tool(MCOPY), "-s", "-i", str(raw), *sorted(str(f) for f in files.iterdir()), "::/",
                  env=MTOOLS_ENV)
        os.truncate(raw, size_mib * MIB)
        raw.replace(target)
    digest = sha256_file(target)
    return TestImage(target, digest, digest, size_mib * MIB, identity)
