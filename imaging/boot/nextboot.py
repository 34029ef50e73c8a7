"""Next-boot symlinks: what each node's network boot loader loads at its next boot.

The loader first asks the TFTP server for a file named after the node's MAC
(pxelinux: ``pxelinux.cfg/01-<mac>``; GRUB: ``grub.cfg-01-<mac>``), then falls
back to the default config, which boots the disk.  To boot a node into the
imaging OS we make that file a relative symlink to the imaging-OS config
(``[pxelinux] frisbee_image`` or ``[grub] imaging_config``, per node
``<key>.<host>``); removing it makes the node boot its disk again.  Each node
has its own :class:`Place`: its backend, folder and imaging-OS config.

A :class:`NextBoot` remembers every link it made, and what each replaced:
:meth:`NextBoot.restore_all` puts back a link that was there before (a node
set to boot another OS, or left in the imaging OS by ``imaging-rescue``),
removes the others, and is synchronous so it can run in a plain ``finally``
on Ctrl-C, SIGTERM or a timeout.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImagingError, NodeFailure, UsageError
from ..inventory import Node
from .base import BootBackend
from .pxelinux import Pxelinux

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Place:
    """Where one node's next boot is decided: its loader, the loader's config folder, and the file of that
    folder that boots the imaging OS."""

    backend: BootBackend
    config_dir: Path
    target: str


class NextBoot:
    """The per-MAC links of some nodes, each in its loader's config folder."""

    def __init__(self, places: Mapping[int, Place]) -> None:
        """``places`` maps a node number to its :class:`Place`."""
        self.places = places
        self._made: dict[int, Path] = {}
        self._replaced: dict[int, str] = {}  # node number -> the target of the link we replaced

    @classmethod
    def single(cls, config_dir: Path, targets: Mapping[int, str], backend: BootBackend | None = None) -> NextBoot:
        """The nodes of ``targets`` (number -> imaging-OS file) all with one loader (pxelinux by default)
        and one folder."""
        loader = backend or Pxelinux()
        return cls({number: Place(loader, config_dir, target) for number, target in targets.items()})

    def link_of(self, node: Node) -> Path:
        """Where the node's per-MAC file lives."""
        place = self.places[node.number]
        return place.config_dir / place.backend.link_name(node.control.mac)

    def check(self, nodes: Iterable[Node], need: str = "boot") -> None:
        """Before touching any node, what ``need`` asks of each node's folder: ``read`` its links (it
        exists and this user may look into it), ``unlink`` them (and may write into it, and no per-MAC file is
        a regular file someone else put there), ``boot`` the imaging OS (and its imaging-OS file exists).
        UsageError if not."""
        for node in nodes:
            place = self.places[node.number]
            folder, section = place.config_dir, place.backend.section
            if not folder.is_dir():
                raise UsageError(f"{place.backend.name} folder {folder} does not exist; set [{section}] config_dir")
            if not os.access(folder, os.X_OK):  # enough to look at a link whose name is known
                raise UsageError(f"cannot look at the next-boot links in the {place.backend.name} folder {folder}"
                                 f" (permission denied); run as a user who may, or set [{section}] config_dir")
            if need == "read":
                continue
            if not os.access(folder, os.W_OK | os.X_OK):
                raise UsageError(f"cannot write the next-boot links into the {place.backend.name} folder {folder}"
                                 f" (permission denied); run as a user who may, or set [{section}] config_dir")
            link = self.link_of(node)
            if link.exists() and not link.is_symlink():
                raise UsageError(f"{node.hostname}: {link} is a regular file, not a next-boot link;"
                                 " move it away first")
            if need == "unlink":
                continue
            target = folder / place.target
            key = place.backend.target_key
            if not target.is_file():
                raise UsageError(f"{node.hostname}: imaging-OS {place.backend.name} file {target} does not exist;"
                                 f" set [{section}] {key} (or {key}.{node.hostname})")

    def boot_imaging_os(self, node: Node) -> None:
        """Point the node's link at the imaging OS (atomically, replacing a stale link)."""
        link = self.link_of(node)
        target = self.places[node.number].target
        try:
            previous = os.readlink(link) if link.is_symlink() else None
            if previous is not None and node.number not in self._made:
                self._replaced[node.number] = previous
            self._point(link, target)
        except OSError as exc:
            raise ImagingError(f"cannot write {link}: {exc.strerror}; check the permissions"
                               f" of {link.parent}") from None
        self._made[node.number] = link
        log.info("%s: next boot: imaging OS (%s -> %s)", node.hostname, link, target)

    def boot_disk(self, node: Node) -> None:
        """Remove the node's link so it boots its disk (still tracked if that fails)."""
        self._remove(self._made.get(node.number) or self.link_of(node))
        self._made.pop(node.number, None)
        self._replaced.pop(node.number, None)
        log.info("%s: next boot: local disk", node.hostname)

    def keep(self, node: Node) -> None:
        """Leave the node's link as it is now, whatever ends the command (``imaging-rescue``: the node stays
        in the imaging OS through its next reboots); :meth:`restore_all` forgets it."""
        self._made.pop(node.number, None)
        self._replaced.pop(node.number, None)

    def boots_imaging_os(self, node: Node) -> bool:
        """Whether the node's link points at its imaging-OS file now (a rescue left it there, or a
        command was killed before it could remove it)."""
        link = self.link_of(node)
        try:
            return link.is_symlink() and os.readlink(link) == self.places[node.number].target
        except OSError:
            return False

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
