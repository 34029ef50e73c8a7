"""The ``pxelinux`` boot backend (BIOS): ``pxelinux.cfg/01-<mac>``, lower case, ``-`` separated.

pxelinux asks for ``01-<mac>`` first (only lower case), then falls back to ``default``.
"""

from __future__ import annotations

from .base import BootBackend


def config_name(mac: str) -> str:
    """``01-aa-bb-cc-dd-ee-ff``: the per-MAC file pxelinux asks for."""
    return "01-" + mac.lower().replace(":", "-")


class Pxelinux(BootBackend):
    """Syslinux's network loader."""

    name = "pxelinux"
    section = "pxelinux"
    target_key = "frisbee_image"

    def link_name(self, mac: str) -> str:
        """``01-<mac>``."""
        return config_name(mac)
