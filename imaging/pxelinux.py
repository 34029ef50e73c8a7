"""Next-boot symlinks: what each node's pxelinux loads at its next network boot.

pxelinux first asks the TFTP server for ``pxelinux.cfg/01-<mac>`` (lower case,
``-`` separated), then falls back to ``default``.  To boot a node into the
imaging OS we make ``01-<mac>`` a relative symlink to the imaging-OS config
(``[pxelinux] frisbee_image``, per node ``frisbee_image.<host>``); removing it
makes the node boot its disk again.

A :class:`NextBoot` remembers every link it made, and :meth:`NextBoot.restore_all`
is synchronous so it can run in a plain ``finally`` on Ctrl-C, SIGTERM or a
timeout.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from .errors import ImagingError, NodeFailure, UsageError
from .inventory import Node

log = logging.getLogger(__name__)


def config_name(mac: str) -> str:
    """``01-aa-bb-cc-dd-ee-ff``: the per-MAC file pxelinux asks for."""
    return "01-" + mac.lower().replace(":", "-")


class NextBoot:
    """The per-MAC links of some nodes in one pxelinux config folder."""

    def __init__(self, config_dir: Path, targets: dict[int, str]) -> None:
        """``targets`` maps a node number to the imaging-OS file name (in config_dir)."""
        self.config_dir = config_dir
        self.targets = targets
        self._made: dict[int, Path] = {}

    def link_of(self, node: Node) -> Path:
        """Where the node's per-MAC file lives."""
        return self.config_dir / config_name(node.control.mac)

    def check(self, nodes: Iterable[Node]) -> None:
        """Before touching any node: the folder and every target exist, and no
        per-MAC file is a regular file someone else put there.  UsageError if not."""
        if not self.config_dir.is_dir():
            raise UsageError(f"pxelinux folder {self.config_dir} does not exist; set [pxelinux] config_dir")
        for node in nodes:
            target = self.config_dir / self.targets[node.number]
            if not target.is_file():
                raise UsageError(f"{node.hostname}: imaging-OS pxelinux file {target} does not exist;"
                                 f" set [pxelinux] frisbee_image (or frisbee_image.{node.hostname})")
            link = self.link_of(node)
            if link.exists() and not link.is_symlink():
                raise UsageError(f"{node.hostname}: {link} is a regular file, not a next-boot link;"
                                 " move it away first")

    def boot_imaging_os(self, node: Node) -> None:
        """Point the node's link at the imaging OS (atomically, replacing a stale link)."""
        link = self.link_of(node)
        temporary = link.with_name(f".{link.name}.{os.getpid()}")
        try:
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(self.targets[node.number])
            os.replace(temporary, link)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise ImagingError(f"cannot write {link}: {exc.strerror}; check the permissions"
                               f" of {self.config_dir}") from None
        self._made[node.number] = link
        log.info("%s: next boot: imaging OS (%s -> %s)", node.hostname, link, self.targets[node.number])

    def boot_disk(self, node: Node) -> None:
        """Remove the node's link so it boots its disk (still tracked if that fails)."""
        self._remove(self._made.get(node.number) or self.link_of(node))
        self._made.pop(node.number, None)
        log.info("%s: next boot: local disk", node.hostname)

    def restore_all(self) -> list[Path]:
        """Remove every link this object made and has not removed yet; synchronous.

        Returns the links removed.  Never raises: it runs in ``finally``.
        """
        removed = []
        while self._made:
            _, link = self._made.popitem()
            try:
                self._remove(link)
                removed.append(link)
            except ImagingError as exc:
                log.error("restoring next-boot links: %s", exc)
        return removed

    @staticmethod
    def _remove(link: Path) -> None:
        try:
            if link.is_symlink():
                link.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise NodeFailure(f"cannot remove {link}: {exc.strerror}") from None
