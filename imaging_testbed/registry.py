"""What each running testbed records outside its folder: one JSON file per
testbed, ``/run/imaging-testbed/<name>.json`` (``$IMAGING_TESTBED_REGISTRY``
names another folder).

A record holds what ``down`` needs when the testbed's folder is gone: the
testbed's name (``imtb3``, the prefix of its namespaces), its folder, its
size, every namespace it made and the daemons it started (PID and start
time).  Every process a testbed runs lives in one of its namespaces, so
killing what they hold and deleting them leaves nothing behind.  ``/run``
is a tmpfs: records vanish at reboot, with the namespaces they describe.
:func:`running` says which recorded testbeds are alive.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from imaging.errors import ImagingError

from .procs import Tracked, netns_exists
from .state import STATE_FILE

DEFAULT_ROOT = Path("/run/imaging-testbed")
ENVIRONMENT = "IMAGING_TESTBED_REGISTRY"


@dataclass(frozen=True)
class Entry:
    """One running testbed, as recorded outside its folder."""

    name: str  # imtbN: its namespaces are imtbN-srv and imtbN-<node>
    index: int
    directory: str
    count: int
    kind: str  # emulated, vm or cmc-only
    namespaces: list[str] = field(default_factory=list)
    daemons: list[Tracked] = field(default_factory=list)

    def with_daemon(self, daemon: Tracked) -> Entry:
        """A copy that also records ``daemon``."""
        return replace(self, daemons=[*(d for d in self.daemons if d.name != daemon.name), daemon])

    def present(self) -> bool:
        """Whether its server namespace (its first) still exists."""
        return bool(self.namespaces) and netns_exists(self.namespaces[0])


def root(environ: dict[str, str] | None = None) -> Path:
    """The registry folder: ``$IMAGING_TESTBED_REGISTRY``, else ``/run/imaging-testbed``."""
    value = (os.environ if environ is None else environ).get(ENVIRONMENT, "")
    return Path(value) if value else DEFAULT_ROOT


def path_of(name: str, folder: Path | None = None) -> Path:
    """The file recording testbed ``name``."""
    return (folder or root()) / f"{name}.json"


def record(entry: Entry, folder: Path | None = None) -> Path:
    """Write ``entry`` (atomically, replacing an older record of that name); its file.
    ImagingError when the registry cannot be written."""
    target = path_of(entry.name, folder)
    try:
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(asdict(entry), indent=1) + "\n")
        tmp.replace(target)
    except OSError as exc:
        raise ImagingError(f"cannot record the testbed in {target.parent} ({exc.strerror});"
                           f" set ${ENVIRONMENT} to a writable folder") from None
    return target


def load(path: Path) -> Entry | None:
    """The entry recorded in ``path``; None when it is gone or unreadable."""
    try:
        data = json.loads(path.read_text())
        daemons = [Tracked(**item) for item in data.pop("daemons", [])]
        return Entry(**data, daemons=daemons)
    except (OSError, ValueError, TypeError):
        return None


def entries(folder: Path | None = None) -> list[Entry]:
    """Every recorded testbed, by index."""
    base = folder or root()
    found = [entry for path in sorted(base.glob("*.json")) if (entry := load(path)) is not None]
    return sorted(found, key=lambda entry: entry.index)


def find(name: str, folder: Path | None = None) -> Entry | None:
    """The record of testbed ``name``, or None."""
    return load(path_of(name, folder))


def by_directory(directory: Path, folder: Path | None = None) -> Entry | None:
    """The record of the testbed that runs (or ran) in ``directory``, or None."""
    return next((entry for entry in entries(folder) if Path(entry.directory) == directory), None)


def forget(path: Path) -> None:
    """Remove a record (its testbed is down)."""
    path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Running:
    """A recorded testbed, as ``imaging-testbed list`` shows it."""

    name: str
    directory: str
    count: int
    kind: str  # emulated, vm or cmc-only
    state: str  # up; no-controller (its namespaces remain); gone (its namespaces too)
    folder: bool  # whether its folder still holds it

    @property
    def alive(self) -> bool:
        """Whether its controller runs."""
        return self.state == "up"


def running() -> list[Running]:
    """Every testbed the registry records, by index, with whether it is alive."""
    found = []
    for entry in entries():
        controller = [d for d in entry.daemons if d.name == "controller"]
        alive = bool(controller) and controller[0].alive()
        folder = (Path(entry.directory) / STATE_FILE).is_file()
        found.append(Running(entry.name, entry.directory, entry.count, entry.kind,
                             "up" if alive else "no-controller" if entry.present() else "gone", folder))
    return found
