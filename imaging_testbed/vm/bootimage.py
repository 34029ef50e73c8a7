r"""Bootable test images for the testbed's virtual machines, made without root.

A boot image is a partitioned disk (:func:`imaging_testbed.disks.make_disk`
with ``bootable``): a dos label whose MBR holds syslinux's boot code,
partition 1 an active FAT with syslinux installed (``syslinux --install
--offset``, mtools-based, no loop device) holding ``syslinux.cfg``, the
kernel, the disk-OS initramfs (:func:`imaging_testbed.vm.initramfs.build_disk_os`),
GRUB's EFI loader with its ``grub.cfg`` under ``\EFI\BOOT`` (:mod:`.grub`)
and the image's identity line in ``/etc/imaging-image``; partition 2 an ext4
with files (the identity there too), partition 3 a swap area.  The same image
boots by BIOS and by UEFI: SeaBIOS boots it from the VM's disk (MBR code → the
active partition's syslinux), OVMF (or the network GRUB chain-loading it)
starts ``\EFI\BOOT\BOOTX64.EFI``, which starts the same kernel; the OS it
boots says which image it is from the disk's own bytes (the FAT's identity
file, read by the disk OS's init), so an image saved back and loaded
elsewhere keeps its name.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from ..disks import DiskInfo, DiskSpec, make_disk
from ..images import IDENTITY_PREFIX, MIB, TestImage, sha256_file
from . import grub
from .kernel import Kernel

KERNEL_NAME = "vmlinuz"
INITRD_NAME = "initrd.img"
APPEND = "console=ttyS0 loglevel=4 imaging-disk-os"
SYSLINUX_CFG = f"""\
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT disk-os
LABEL disk-os
  KERNEL /{KERNEL_NAME}
  INITRD /{INITRD_NAME}
  APPEND {APPEND}
"""
GRUB_CFG = grub.disk_config(f"/{KERNEL_NAME}", f"/{INITRD_NAME}", APPEND)
# room for the FAT tables, folders, syslinux's ldlinux.sys and ldlinux.c32, GRUB's EFI loader (0.6 MiB)
FAT_SLACK = 2 * MIB
FILES_MIB = 2  # random files in the ext4: a few, the transfers under TCG stay short
SWAP_MIB = 2


def fat_mib(kernel: Kernel, disk_os: Path) -> int:
    """The size in MiB of a boot image's FAT partition: its files and some room."""
    needed = kernel.vmlinuz.stat().st_size + disk_os.stat().st_size + FAT_SLACK
    return -(-needed // MIB)


def boot_spec(kernel: Kernel, disk_os: Path, size_mib: int, loaders: Path, seed: int = 0) -> DiskSpec:
    """The disk of a boot image of ``size_mib`` MiB whose FAT holds ``kernel``, ``disk_os`` and the
    loaders' files in folder ``loaders`` (:func:`write_loaders`).  ValueError when they do not fit."""
    files = {f"/{KERNEL_NAME}": kernel.vmlinuz.resolve(), f"/{INITRD_NAME}": disk_os.resolve(),
             **{name: loaders / name.strip("/").replace("/", "_") for name in LOADER_FILES}}
    return DiskSpec(size_mib, label="dos", fat_mib=fat_mib(kernel, disk_os), swap_mib=SWAP_MIB, files_mib=FILES_MIB,
                    seed=seed, fat_files=files, bootable=True)


def smallest_mib(kernel: Kernel, disk_os: Path) -> int:
    """The size in MiB of the smallest boot image of this kernel and initramfs."""
    size = fat_mib(kernel, disk_os) + SWAP_MIB + 1
    while True:
        try:
            boot_spec(kernel, disk_os, size, Path("/loaders"))
        except ValueError:
            size += 1
        else:
            return size


LOADER_FILES = ("/syslinux.cfg", grub.DISK_LOADER, grub.DISK_CONFIG_PATH)  # on the FAT, beside kernel and initrd


async def write_loaders(folder: Path) -> Path:
    """Write into ``folder`` the boot loaders' files a boot image's FAT holds (:data:`LOADER_FILES`,
    each named by its FAT path with ``/`` as ``_``); ``folder``."""
    texts = {"/syslinux.cfg": SYSLINUX_CFG, grub.DISK_CONFIG_PATH: GRUB_CFG}
    for name in LOADER_FILES:
        local = folder / name.strip("/").replace("/", "_")
        if name == grub.DISK_LOADER:
            await grub.make_disk_loader(local)
        else:
            local.write_text(texts[name])
    return folder


def seed_of(identity: str) -> int:
    """The seed of an image's random contents, from its identity: images differ, one image is made alike."""
    return int.from_bytes(hashlib.sha256(identity.encode()).digest()[:4], "big")


async def make_boot_disk(kernel: Kernel, disk_os: Path, target: Path, size_mib: int, identity: str) -> DiskInfo:
    """Write at ``target`` a raw bootable image of ``size_mib`` MiB (a sparse file) whose OS (``kernel``
    with initramfs ``disk_os``) says it is ``identity`` (an ``imaging-test-image …`` line, see
    :func:`imaging_testbed.images.new_identity`); what it holds.

    The image appears complete or not at all.  Raises ValueError when ``identity`` is not an
    identity line or the files do not fit in ``size_mib`` MiB.
    """
    if not identity.startswith(IDENTITY_PREFIX + " ") or "\n" in identity:
        raise ValueError(f"not an identity line: {identity!r}")
    smallest = smallest_mib(kernel, disk_os)
    if size_mib < smallest:
        raise ValueError(f"a boot image of this kernel and initramfs needs at least {smallest} MiB, not {size_mib}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as scratch:
        loaders = await write_loaders(Path(scratch))
        info = await make_disk(target, boot_spec(kernel, disk_os, size_mib, loaders, seed_of(identity)), identity)
    return info


async def make_boot_image(kernel: Kernel, disk_os: Path, target: Path, size_mib: int, identity: str) -> TestImage:
    """:func:`make_boot_disk`, as a test image (its checksums)."""
    await make_boot_disk(kernel, disk_os, target, size_mib, identity)
    digest = sha256_file(target)
    return TestImage(target, digest, digest, size_mib * MIB, identity)
