"""What ``imaging-testbed up --vm`` puts in place before any qemu starts.

From the Debian kernel package (unpacked beside it, never installed, and
shared by every testbed of the machine): the imaging OS
(kernel + initramfs) in the TFTP tree, the repository's ``default`` image
(a partitioned bootable disk image whose OS answers ssh and names
itself in ``/etc/imaging-image``), a bootable "factory" image on each machine's disk,
and the accelerator.  Builds are cached under ``DIR/cache/vm`` and redone
only when an input changes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from imaging.errors import UsageError

from .. import frisbee, programs, pxe
from ..files import DEFAULT_IMAGE
from ..images import TestImage, new_identity
from ..layout import Layout
from . import accel, bootimage, grub, initramfs, kernel

IPXE_ROM = Path("/usr/lib/ipxe/qemu/efi-virtio.rom")  # what qemu's virtio-net boots from
MAX_VMS = 16
DISK_MIB = 48
IMAGE_MIB = 32  # a partitioned boot image: FAT (kernel, initramfs) 12 MiB, ext4 17, swap 2
HARD_DRIVE = "/dev/vda"  # a virtio-blk disk


@dataclass(frozen=True)
class VmBuild:
    """What the VMs run, and how."""

    kernel: kernel.Kernel
    imaging_os: Path  # its initramfs
    default_image: TestImage
    accel: str  # tcg | kvm
    accel_reason: str


def missing_requirements(firmware: str = "bios") -> str | None:
    """Why VMs booting by ``firmware`` (bios or uefi) cannot run here (a missing program or file), or None."""
    missing = programs.missing(vm=True)
    missing += [str(path) for path in (IPXE_ROM, pxe.PXELINUX, pxe.LDLINUX) if not path.exists()]
    if firmware == "uefi":
        missing += grub.missing()
    return f"missing: {', '.join(missing)}" if missing else None


def check_requirements(firmware: str = "bios") -> None:
    """UsageError naming the fix when VMs booting by ``firmware`` cannot run here."""
    if importlib.util.find_spec("qemu.qmp") is None:
        raise UsageError("the VM tier drives qemu with the qemu.qmp package: pip install 'imaging[testbed]'")
    why = missing_requirements(firmware)
    if why:
        raise UsageError(f"the VM tier needs qemu, iPXE, pxelinux, GRUB's EFI modules, OVMF for --firmware uefi and"
                         f" the node programs ({why}); install them with: make vm-packages")


async def provision(layout: Layout, image_mib: int, disk_mib: dict[str, int], requested_accel: str,
                    package: Path | None = None, firmware: str = "bios") -> VmBuild:
    """Build (or reuse) the kernel tree, the two initramfs files and the images;
    fill the TFTP tree (pxelinux for BIOS machines, GRUB's network image for UEFI ones),
    write each machine's disk (``disk_mib`` by node name) and choose the accelerator.
    The testbed's ssh keys must exist."""
    check_requirements(firmware)
    cache = layout.vm_cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    deb = package or kernel.find_package()
    if not deb.is_file():
        raise UsageError(f"--kernel-package {deb}: no such file; fetch one with make vm-packages")
    # the unpacked tree (400 MB, needed only to build) is shared by the testbeds, beside its package
    tree = await kernel.unpack(deb, deb.parent if os.access(deb.parent, os.W_OK) else cache)
    imaging_os = await initramfs.build_imaging_os(tree, cache, frisbee.locate())
    disk_os = await initramfs.build_disk_os(tree, cache, [layout.host_key, layout.rsa_host_key],
                                            layout.client_key.with_name(layout.client_key.name + ".pub"))
    smallest = bootimage.smallest_mib(tree, disk_os)
    if image_mib < smallest:
        raise UsageError(f"--image-size {image_mib}: a bootable image of this kernel needs at least {smallest} MiB")
    pxe.prepare_tftp(layout, tree.vmlinuz, imaging_os)
    await grub.make_net_image(layout.tftp_dir / pxe.GRUB_NET_IMAGE)
    target = layout.images_dir / f"{DEFAULT_IMAGE}.img"
    target.unlink(missing_ok=True)
    default = await bootimage.make_boot_image(tree, disk_os, target, image_mib, new_identity(DEFAULT_IMAGE))
    slots = asyncio.Semaphore(4)

    async def factory(name: str, mib: int) -> None:
        disk = layout.disk_path(layout.node_by_name(name))
        disk.unlink(missing_ok=True)
        if mib >= image_mib:  # a machine as delivered: its own bootable OS
            async with slots:
                await bootimage.make_boot_image(tree, disk_os, disk, image_mib, new_identity(f"factory-{name}"))
        else:  # too small for any OS: a blank disk
            disk.touch()
        os.truncate(disk, mib << 20)

    await asyncio.gather(*(factory(name, mib) for name, mib in disk_mib.items()))
    chosen, reason = await accel.choose(requested_accel, tree.vmlinuz, imaging_os, cache)
    return VmBuild(tree, imaging_os, default, chosen, reason)
