"""Locks held across processes on one server, with ``flock``: released by the
kernel when the holder dies, so a killed command never leaves a node locked.

* node locks: one command at a time acts on a node (``node-<host>.lock``);
  a refusal names the holder (user, pid, command, since when);
* session slots: concurrent loads and saves take distinct numbers
  1 … ``pattern_size``, hence distinct multicast groups and ports.

Locks are taken without blocking (``LOCK_NB``); waiting is an asyncio sleep
between attempts, never a blocked thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import getpass
import json
import os
import shlex
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ImagingError


class LockBusy(ImagingError):
    """A lock is held by another process."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as written in its file."""

    user: str
    pid: int
    command: str
    since: float

    def describe(self) -> str:
        """``imaging-load by alice (pid 4242) since 10:02:17``."""
        when = time.strftime("%H:%M:%S", time.localtime(self.since))
        return f"{self.command} by {self.user} (pid {self.pid}) since {when}"


def _me() -> Holder:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    command = " ".join([os.path.basename(sys.argv[0]), *map(shlex.quote, sys.argv[1:])])[:200]
    return Holder(user, os.getpid(), command, time.time())


def _folder(lock_dir: Path) -> Path:
    try:
        lock_dir.mkdir(parents=True, exist_ok=True, mode=0o1777)
    except OSError as exc:
        raise ImagingError(f"cannot create the lock folder {lock_dir} ({exc.strerror});"
                           " set [locks] lock_dir to a writable folder") from None
    return lock_dir


def _try_lock(path: Path, holder: Holder) -> int | None:
    """The open, locked descriptor of ``path``, or None when another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise ImagingError(f"cannot create the lock file {path} ({exc.strerror});"
                           " set [locks] lock_dir to a folder every user can write") from None
    with contextlib.suppress(OSError):  # any user may take a node's lock later (the folder is 1777)
        os.fchmod(fd, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(holder.__dict__).encode())
    return fd


def read_holder(path: Path) -> Holder | None:
    """Who holds the lock at ``path`` (None if unknown)."""
    try:
        return Holder(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


class LockSet:
    """Locks held by this process; released together (also synchronously, in ``finally``)."""

    def __init__(self) -> None:
        self._held: dict[Path, int] = {}

    def release(self) -> None:
        """Release every lock held; never raises."""
        while self._held:
            _, fd = self._held.popitem()
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.close(fd)

    def try_all(self, paths: Iterable[Path], holder: Holder) -> Path | None:
        """Take every lock or none; return the first busy path, or None when all were taken."""
        taken: list[Path] = []
        for path in paths:
            fd = _try_lock(path, holder)
            if fd is None:
                for done in taken:
                    with contextlib.suppress(OSError):
                        os.close(self._held.pop(done))
                return path
            self._held[path] = fd
            taken.append(path)
        return None

    async def lock_nodes(self, lock_dir: Path, hostnames: Iterable[str], wait: float = 0.0) -> None:
        """Lock the nodes, all or none, waiting up to ``wait`` seconds; LockBusy names the holder."""
        folder = _folder(lock_dir)
        paths = [folder / f"node-{name}.lock" for name in sorted(hostnames)]
        holder = _me()
        loop = asyncio.get_running_loop()
        until = loop.time() + wait
        while True:
            busy = self.try_all(paths, holder)
            if busy is None:
                return
            if loop.time() >= until:
                node = busy.name.removeprefix("node-").removesuffix(".lock")
                other = read_holder(busy)
                who = other.describe() if other else "another command"
                raise LockBusy(f"{node} is busy: {who}; wait for it, or pass --wait-lock SECONDS")
            await asyncio.sleep(0.2)

    def take_slot(self, lock_dir: Path, size: int) -> int:
        """The lowest free session number in 1 … size, held until release; LockBusy if none."""
        folder = _folder(lock_dir)
        holder = _me()
        for number in range(1, size + 1):
            if self.try_all([folder / f"session-{number}.lock"], holder) is None:
                return number
        raise LockBusy(f"all {size} multicast sessions are in use; wait, or raise [transport] pattern_size")
