"""The ``pxelinux`` boot backend (BIOS): ``pxelinux.cfg/01-<mac>``, lower case, ``-`` separated.

pxelinux asks for ``01-<mac>`` first (only lower case), then falls back to ``default``.
"""

from __future__ import annotations

from ..config import Key
from .base import BootBackend


def config_name(mac: str) -> str:
    """``01-aa-bb-cc-dd-ee-ff``: the per-MAC file pxelinux asks for."""
    return "01-" + mac.lower().replace(":", "-")


class Pxelinux(BootBackend):
    """Syslinux's network loader."""

    name = "pxelinux"
    KEYS = (
        Key("pxelinux", "config_dir", "path", "/tftpboot/pxelinux.cfg",
            "where pxelinux looks for the per-MAC files 01-<mac>"),
        Key("pxelinux", "frisbee_image", "file name", "pxefrisbee",
            "file in config_dir that boots the imaging OS (frisbee_image.<host> per node)"),
    )
    section = "pxelinux"
    target_key = "frisbee_image"

    def link_name(self, mac: str) -> str:
        """``01-<mac>``."""
        return config_name(mac)
