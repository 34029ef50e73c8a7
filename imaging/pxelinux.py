"""Next-boot symlinks: what each node's pxelinux loads at its next network boot.

pxelinux first asks the TFTP server for ``pxelinux.cfg/01-<mac>`` (lower case,
``-`` separated), then falls back to ``default``.  To boot a node into the
imaging OS we make ``01-<mac>`` a relative symlink to the imaging-OS config
(``[pxelinux] frisbee_image``, per node ``frisbee_image.<host>``); removing it
makes the node boot its disk again.

A :class:`NextBoot` remembers every link it made, and what each replaced:
:meth:`NextBoot.restore_all` puts back a link someone else had made (a node
set to boot another OS), removes the others, and is synchronous so it can run
in a plain ``finally`` on Ctrl-C, SIGTERM or a timeout.  A link that already
pointed at the imaging OS (left by a crash) is not worth restoring.
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
        self._replaced: dict[int, str] = {}  # node number -> the target of the link we replaced

    def link_of(self, node: Node) -> Path:
        """Where the node's per-MAC file lives."""
        return self.config_dir / config_name(node.control.mac)

    def check(self, nodes: Iterable[Node]) -> None:
        """Before touching any node: the folder exists and this user may write into it, every
        target exists, and no per-MAC file is a regular file someone else put there.  UsageError
        if not."""
        if not self.config_dir.is_dir():
            raise UsageError(f"pxelinux folder {self.config_dir} does not exist; set [pxelinux] config_dir")
        if not os.access(self.config_dir, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write the next-boot links into the pxelinux folder {self.config_dir}"
                             " (permission denied); run as a user who may, or set [pxelinux] config_dir")
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
        try:
            previous = os.readlink(link) if link.is_symlink() else None
            if previous is not None and previous != self.targets[node.number] and node.number not in self._made:
                self._replaced[node.number] = previous
            self._point(link, self.targets[node.number])
        except OSError as exc:
            raise ImagingError(f"cannot write {link}: {exc.strerror}; check the permissions"
                               f" of {self.config_dir}") from None
        self._made[node.number] = link
        log.info("%s: next boot: imaging OS (%s -> %s)", node.hostname, link, self.targets[node.number])

    def boot_disk(self, node: Node) -> None:
        """Remove the node's link so it boots its disk (still tracked if that fails)."""
        self._remove(self._made.get(node.number) or self.link_of(node))
        self._made.pop(node.number, None)
        self._replaced.pop(node.number, None)
        log.info("%s: next boot: local disk", node.hostname)

    def restore_all(self) -> list[Path]:
        """Undo every link this object made and has not removed yet: put back the
        link it replaced, if any, else remove it; synchronous.

        Returns the links undone.  Never raises: it runs in ``finally``.
        """
        undone = []
        while self._made:
            number, link = self._made.popitem()
            previous = self._replaced.pop(number, None)
            try:
                if previous is None:
                    self._remove(link)
                else:
                    self._point(link, previous)
                    log.info("restored %s -> %s", link, previous)
                undone.append(link)
            except ImagingError as exc:
                log.error("restoring next-boot links: %s", exc)
            except OSError as exc:
                log.error("restoring next-boot links: cannot restore %s -> %s: %s", link, previous, exc.strerror)
        return undone

    @staticmethod
    def _point(link: Path, target: str) -> None:
        """Make ``link`` a symlink to ``target`` in one step (a rename); OSError, and
        nothing left behind, when that fails."""
        temporary = link.with_name(f".{link.name}.{os.getpid()}")
        try:
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(target)
            os.replace(temporary, link)
        except OSError:
            temporary.unlink(missing_ok=True)
            raise

    @staticmethod
    def _remove(link: Path) -> None:
        try:
            if link.is_symlink():
                link.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise NodeFailure(f"cannot remove {link}: {exc.strerror}") from None
