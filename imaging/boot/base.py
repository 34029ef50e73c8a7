"""The boot interface: where a network boot loader looks for a node's own config.

A loader fetched by a node's firmware asks the server's TFTP tree for a file named after the node's MAC
in its config folder, and falls back to a default config (the server's, which boots the local disk) when
that file is not there.  A backend says what that file is called and which config keys name its folder
and the imaging OS's config; :class:`~.nextboot.NextBoot` makes the per-node file a relative symlink to
the imaging OS's config, and removes it to send the node back to its disk.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ..config import Key


class BootBackend(ABC):
    """One network boot loader's way of finding a node's own config."""

    name: ClassVar[str]  # its name in imaging.registry.BOOT and [nodes] boot
    section: ClassVar[str]  # the config section of its folder (config_dir) and of the imaging OS's config
    target_key: ClassVar[str]  # the key of that section naming the imaging OS's config in config_dir
    KEYS: ClassVar[tuple[Key, ...]] = ()  # its config keys (config_dir and target_key among them)

    def __eq__(self, other: object) -> bool:
        """Backends hold no state: two of one kind are the same."""
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    @abstractmethod
    def link_name(self, mac: str) -> str:
        """The file the loader asks for first, for the node of MAC address ``mac``."""
