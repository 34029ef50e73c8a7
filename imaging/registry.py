"""The backends of each kind (transports, power drivers, boot loaders), one line each: a backend is its
module plus its line here.

A line names the backend (what ``[transport] kind`` and ``--transport`` say), where its class lives
(``module:Class``, imported only when the backend is used) and, for a transport, the image formats
it loads: each file extension with the function that checks an image's content before any node is
touched.  Names, extensions and the command line's choices all come from here; the config keys a
backend reads are declared by its class (``KEYS``) and gathered by :func:`imaging.config.keys`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Backend:
    """One backend of a kind."""

    name: str
    target: str  # "module:Class"
    formats: Mapping[str, str] = field(default_factory=dict)  # a transport's image extensions -> "module:function"


TRANSPORTS: tuple[Backend, ...] = (
    Backend("frisbee", "imaging.transports.frisbee:Frisbee", {".ndz": "imaging.imagecheck:check_ndz"}),
    Backend("udpcast", "imaging.transports.udpcast:Udpcast", {
        ".ptcl.zst": "imaging.disklayout:check_image", ".img.zst": "imaging.imagecheck:check_zstd",
        ".img": "imaging.imagecheck:check_raw"}),
)
TRANSPORT_NAMES = tuple(backend.name for backend in TRANSPORTS)
POWER: tuple[Backend, ...] = (
    Backend("cmc", "imaging.power.cmc:Cmc"),
    Backend("ipmi", "imaging.power.ipmi:Ipmi"),
    Backend("redfish", "imaging.power.redfish:Redfish"),
)
POWER_NAMES = tuple(backend.name for backend in POWER)
BOOT: tuple[Backend, ...] = (
    Backend("pxelinux", "imaging.boot.pxelinux:Pxelinux"),
    Backend("grub", "imaging.boot.grub:Grub"),
)
BOOT_NAMES = tuple(backend.name for backend in BOOT)
BACKENDS = TRANSPORTS + POWER + BOOT  # every backend: their classes declare their config keys (KEYS)


def resolve(target: str) -> Any:
    """The object ``module:name`` names (the module imported now)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _find(backends: tuple[Backend, ...], name: str, key: str) -> Backend:
    for backend in backends:
        if backend.name == name:
            return backend
    raise ConfigError(f"{key} = {name!r}: want {' or '.join(b.name for b in backends)}")


def transport(name: str) -> Backend:
    """The transport backend called ``name``; ConfigError listing the known ones otherwise."""
    return _find(TRANSPORTS, name, "[transport] kind")


def power(name: str) -> Backend:
    """The power driver called ``name``; ConfigError listing the known ones otherwise."""
    return _find(POWER, name, "[nodes] power")


def boot(name: str) -> Backend:
    """The boot backend called ``name``; ConfigError listing the known ones otherwise."""
    return _find(BOOT, name, "[nodes] boot")
