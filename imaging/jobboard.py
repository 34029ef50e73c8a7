"""The loads and saves running now, published for whoever watches (``imaging-monitor``).

A running load or save keeps one small JSON file, ``<lock_dir>/jobs/<pid>.json``: the command, who runs
it, since when, and each node's phase and percent, rewritten (atomically) at most every
:data:`MIN_INTERVAL` seconds and at each phase change, and removed at its end.  Nothing waits on a
reader and nothing fails the job: a folder that cannot be written only stops the publishing (said once in
the log).  A reader skips the files of processes that are gone (a job killed by SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .events import Event

log = logging.getLogger(__name__)
FOLDER = "jobs"  # under [locks] lock_dir
MIN_INTERVAL = 0.5  # seconds between two writes of a job's file when only its percents moved


@dataclass
class JobBoard:
    """One running job's file."""

    path: Path
    command: str
    user: str
    nodes: dict[str, dict[str, Any]]  # hostname -> {"phase", "percent"}
    since: float = field(default_factory=time.time)
    _written: float = 0.0
    _broken: bool = False

    @classmethod
    def start(cls, lock_dir: Path, command: str, user: str, hostnames: list[str]) -> JobBoard:
        """The board of this process's job on ``hostnames``, written at once."""
        board = cls(lock_dir / FOLDER / f"{os.getpid()}.json", command, user,
                    {name: {"phase": "waiting", "percent": None} for name in hostnames})
        board.write()
        return board

    def event(self, event: Event) -> None:
        """Record a node's event; write the file when its phase changed or the last write is old enough."""
        node = self.nodes.get(event.node)
        if node is None:
            return
        changed = node["phase"] != event.phase
        node["phase"] = event.phase
        if event.percent is not None or changed:
            node["percent"] = event.percent
        if changed or time.monotonic() - self._written >= MIN_INTERVAL:
            self.write()

    def as_json(self) -> dict[str, Any]:
        """What the file holds."""
        return {"pid": os.getpid(), "command": self.command, "user": self.user, "since": self.since,
                "nodes": self.nodes}

    def write(self) -> None:
        """Replace the file (a reader sees the old one or the new one, whole); never raises."""
        if self._broken:
            return
        partial = self.path.with_name(f".{self.path.name}.partial")
        try:
            folder = self.path.parent
            if not folder.is_dir():  # shared by every user's jobs (sticky: each removes only its own)
                folder.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(OSError):
                    folder.chmod(0o1777)
            partial.write_text(json.dumps(self.as_json()))
            partial.replace(self.path)
        except OSError as exc:
            self._broken = True
            log.warning("cannot publish the job in %s (%s): the monitor will not show it", self.path.parent,
                        exc.strerror or exc)
        self._written = time.monotonic()

    def close(self) -> None:
        """The job is over: remove its file."""
        for path in (self.path, self.path.with_name(f".{self.path.name}.partial")):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def read_jobs(lock_dir: Path) -> dict[str, dict[str, Any]]:
    """The running jobs by node: hostname -> ``command``, ``user``, ``since``, ``phase``, ``percent``."""
    jobs: dict[str, dict[str, Any]] = {}
    try:
        files = sorted((lock_dir / FOLDER).glob("*.json"))
    except OSError:
        return jobs
    for path in files:
        try:
            board = json.loads(path.read_text())
            if not _alive(int(board["pid"])):
                continue
            for host, node in board["nodes"].items():
                jobs[host] = {"command": board["command"], "user": board["user"], "since": board["since"],
                              "phase": node["phase"], "percent": node["percent"]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # being replaced, or not ours: skipped, as a job that is over
    return jobs
