"""The ``grub`` boot backend (UEFI): GRUB's network image reads ``grub.cfg-01-<mac>`` in its prefix.

A GRUB network image (``grub-mkimage -O x86_64-efi`` with ``net``, ``efinet``, ``tftp``) looks, in its
prefix folder, for ``grub.cfg-01-<mac>`` (lower case, ``-`` separated), then for configs named after its
IP address, then for ``grub.cfg``; the site's ``grub.cfg`` boots the disk (chain-loading the disk's
``\\EFI\\BOOT\\BOOTX64.EFI``: GRUB's ``exit`` would drop the firmware into its setup menu).
"""

from __future__ import annotations

from ..config import Key
from .base import BootBackend
from .pxelinux import config_name


class Grub(BootBackend):
    """GRUB's network image."""

    name = "grub"
    KEYS = (
        Key("grub", "config_dir", "path", "/srv/tftp/grub",
            "the prefix folder of GRUB's network image, where it looks for grub.cfg-01-<mac>"),
        Key("grub", "imaging_config", "file name", "imaging-os.cfg",
            "file in config_dir that boots the imaging OS (imaging_config.<host> per node)"),
    )
    section = "grub"
    target_key = "imaging_config"

    def link_name(self, mac: str) -> str:
        """``grub.cfg-01-<mac>``."""
        return "grub.cfg-" + config_name(mac)
