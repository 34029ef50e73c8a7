r"""The TFTP tree dnsmasq serves: Debian's pxelinux and the two boot configs, for pxelinux and for GRUB.

* ``pxelinux.cfg/default`` and ``grub/grub.cfg`` boot the local disk (GRUB's by
  chain-loading the disk's ``\EFI\BOOT\BOOTX64.EFI``);
* ``pxelinux.cfg/imaging-os`` and ``grub/imaging-os.cfg`` boot the imaging OS: a
  kernel and an initrd under ``imaging-os/`` (for the emulated nodes, marker files
  the firmware fetches and recognises).

A BIOS client (DHCP option 93 absent or 0) is handed ``pxelinux.0``, an x86-64
UEFI one (7 or 9) GRUB's network image, ``grubx64.efi``
(:mod:`imaging_testbed.vm.grub`, VM tier).

The product flips the per-node relative symlink ``pxelinux.cfg/01-<mac>`` →
``imaging-os`` (GRUB: ``grub/grub.cfg-01-<mac>`` → ``imaging-os.cfg``);
:func:`set_next_boot` does the same for tests.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .layout import Layout, NodeInfo

PXELINUX = Path("/usr/lib/PXELINUX/pxelinux.0")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
IMAGING_OS = "imaging-os"
KERNEL_MAGIC = "IMAGING-OS-KERNEL (emulated)"

DEFAULT_CONFIG = """\
# boot the local disk
DEFAULT local
LABEL local
  LOCALBOOT 0
"""

IMAGING_OS_CONFIG = f"""\
# boot the imaging OS: busybox telnetd, udp-receiver, nc, zstd
DEFAULT imaging
LABEL imaging
  KERNEL {IMAGING_OS}/vmlinuz
  INITRD {IMAGING_OS}/initrd.img
  APPEND console=ttyS0 loglevel=4 imaging-os
"""


BOOT = ("pxelinux", "grub")  # the nodes' network boot loaders
FIRMWARE = {"bios": "pxelinux", "uefi": "grub"}  # imaging-testbed up --firmware: the boot loader it implies
GRUB_DIR = "grub"  # in the TFTP root: the prefix of GRUB's network image
GRUB_IMAGING_OS = "imaging-os.cfg"
GRUB_NET_IMAGE = "grubx64.efi"  # in the TFTP root, for UEFI clients (imaging_testbed.vm.grub)
GRUB_DEFAULT_CONFIG = """\
# boot the local disk: its EFI system partition's boot loader
set default=0
set timeout=0
menuentry "local disk" {
  search --no-floppy --file --set=root /EFI/BOOT/BOOTX64.EFI
  chainloader /EFI/BOOT/BOOTX64.EFI
}
"""
GRUB_IMAGING_OS_CONFIG = f"""\
# boot the imaging OS: busybox telnetd, udp-receiver, nc, zstd
set default=0
set timeout=0
menuentry "imaging OS" {{
  linux /{IMAGING_OS}/vmlinuz console=ttyS0 loglevel=4 imaging-os
  initrd /{IMAGING_OS}/initrd.img
}}
"""


def grub_dir(layout: Layout) -> Path:
    """GRUB's config folder in the TFTP tree."""
    return layout.tftp_dir / GRUB_DIR


def prepare_tftp(layout: Layout, kernel: Path | None = None, initrd: Path | None = None) -> None:
    """Fill the TFTP root: pxelinux, its configs, the imaging OS's kernel and
    initrd: the real ones given (VM tier), else marker files the emulated
    firmware recognises."""
    layout.pxe_dir.mkdir(parents=True, exist_ok=True)
    for source in (PXELINUX, LDLINUX):
        if source.exists():  # the emulated nodes do not run them; VMs do
            shutil.copyfile(source, layout.tftp_dir / source.name)
    (layout.pxe_dir / "default").write_text(DEFAULT_CONFIG)
    (layout.pxe_dir / IMAGING_OS).write_text(IMAGING_OS_CONFIG)
    grub_dir(layout).mkdir(exist_ok=True)
    (grub_dir(layout) / "grub.cfg").write_text(GRUB_DEFAULT_CONFIG)
    (grub_dir(layout) / GRUB_IMAGING_OS).write_text(GRUB_IMAGING_OS_CONFIG)
    kernel_dir = layout.tftp_dir / IMAGING_OS
    kernel_dir.mkdir(exist_ok=True)
    if kernel is not None and initrd is not None:
        shutil.copyfile(kernel, kernel_dir / "vmlinuz")
        shutil.copyfile(initrd, kernel_dir / "initrd.img")
    else:
        (kernel_dir / "vmlinuz").write_text(KERNEL_MAGIC + "\n")
        (kernel_dir / "initrd.img").write_text("imaging-os initrd (emulated): telnetd udp-receiver nc zstd\n")


def set_next_boot(layout: Layout, node: NodeInfo, imaging_os: bool, boot: str = "pxelinux") -> None:
    """Make ``node`` boot the imaging OS (a relative symlink ``01-<mac>`` →
    ``imaging-os``, for GRUB ``grub.cfg-01-<mac>`` → ``imaging-os.cfg``) or its
    local disk (no symlink)."""
    grub = boot == "grub"
    link = grub_dir(layout) / f"grub.cfg-{node.pxe_name}" if grub else layout.pxe_dir / node.pxe_name
    link.unlink(missing_ok=True)
    if imaging_os:
        link.symlink_to(GRUB_IMAGING_OS if grub else IMAGING_OS)
