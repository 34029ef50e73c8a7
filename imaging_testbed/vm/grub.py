r"""GRUB for the VMs that boot by UEFI (``imaging-testbed up --vm --firmware uefi``).

Two EFI programs, made by ``grub-mkimage`` from Debian's ``grub-efi-amd64-bin``
modules (no root, no installed GRUB):

* the **network image** (``grubx64.efi`` in the TFTP root, :mod:`..pxe`), which dnsmasq
  hands to a client that says it is an x86-64 EFI one (DHCP option 93, 7);
  its prefix is ``/grub`` on the TFTP server it came from, where it looks up
  ``grub.cfg-01-<mac>`` first (the product's per-node boot link, read by the
  ``grub`` boot backend), then ``grub.cfg`` (boot the local disk);
* the **disk's loader** (``\EFI\BOOT\BOOTX64.EFI`` on a boot image's FAT, the
  path firmware boots on a disk it has no entry for), its prefix the folder
  it sits in, whose ``grub.cfg`` (:data:`DISK_CONFIG`) starts the disk OS.

The network GRUB "boots the disk" by chain-loading the disk's loader: GRUB's
``exit`` would drop OVMF into its setup menu.  GRUB needs more memory than
syslinux: a UEFI machine gets :data:`UEFI_MEMORY_MIB`.
"""

from __future__ import annotations

from pathlib import Path

from ..procs import run
from ..programs import GRUB_MKIMAGE
from ..pxe import GRUB_DIR

MODULES_DIR = Path("/usr/lib/grub/x86_64-efi")  # Debian's grub-efi-amd64-bin
OVMF = Path("/usr/share/ovmf/OVMF.fd")  # Debian's ovmf: code and variables in one file, for -bios
UEFI_MEMORY_MIB = 384  # GRUB's network image and a Debian kernel under OVMF; 256 MiB is too little
NET_PREFIX = f"/{GRUB_DIR}"  # on the TFTP server the image came from
DISK_LOADER = "/EFI/BOOT/BOOTX64.EFI"
DISK_CONFIG_PATH = "/EFI/BOOT/grub.cfg"
# what either image needs: read a config, start a Linux kernel, find and chain-load the disk's loader
COMMON_MODULES = ("normal", "configfile", "echo", "test", "linux", "chain", "search", "search_fs_file",
                  "part_msdos", "part_gpt", "fat")
NET_MODULES = ("efinet", "net", "tftp")


def disk_config(kernel: str, initrd: str, append: str) -> str:
    """The ``grub.cfg`` beside the disk's loader: start ``kernel`` with ``initrd`` and ``append``
    (paths on the FAT GRUB was loaded from)."""
    return (f"# the disk OS, as syslinux.cfg starts it on a BIOS machine\nset timeout=0\n"
            f"linux {kernel} {append}\ninitrd {initrd}\nboot\n")


async def make_image(target: Path, prefix: str, modules: tuple[str, ...]) -> Path:
    """Write at ``target`` a GRUB EFI program of ``modules`` whose config folder is ``prefix``; ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    await run(GRUB_MKIMAGE, "-O", "x86_64-efi", "-d", str(MODULES_DIR), "-p", prefix, "-o", str(partial),
              *modules)
    partial.replace(target)
    return target


async def make_net_image(target: Path) -> Path:
    """The network image at ``target`` (in a TFTP root, named :data:`..pxe.GRUB_NET_IMAGE`)."""
    return await make_image(target, NET_PREFIX, (*COMMON_MODULES, *NET_MODULES))


async def make_disk_loader(target: Path) -> Path:
    """The disk's loader at ``target`` (a host file copied to :data:`DISK_LOADER` on a boot image's FAT)."""
    return await make_image(target, str(Path(DISK_LOADER).parent), COMMON_MODULES)


def missing() -> list[str]:
    """What a UEFI VM needs and this machine lacks: the firmware, GRUB's modules."""
    return [str(path) for path in (OVMF, MODULES_DIR / "efinet.mod") if not path.exists()]
