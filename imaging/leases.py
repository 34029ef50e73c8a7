"""May this user act on these nodes now?  The reservation (leases) check.

Backends (``[leases] backend``):

* ``none``: an open testbed, everything allowed;
* ``file``: an admin-managed file (JSON list, or TOML ``[[lease]]`` tables) of
  ``{slice, from, until[, nodes]}`` in UTC, ``nodes`` a node spec for per-node
  leases; read again at every command;
* ``r2labapi``: R2lab's REST API, ``GET <url>/leases?after=<ISO>`` answering
  ``[{slice_name, t_from, t_until, …}]``.

Privileged logins (``[leases] privileged``, default ``root``) are always
allowed.  A login acts as the slice ``[leases] slices`` maps it to
(``alice:inria_alice, bob:upmc_bob``), else as the slice of its own name; the
login is the account of the process's user id (:func:`current_login`), not
``$USER``, which anyone may set.  When the leases cannot be read (API down,
timeout, missing or bad file, a lease that ends before it starts, an unknown
field) the answer is no: the check fails closed, and never hangs past
``[leases] timeout``.  An unknown backend name is refused when the config is
read (:data:`BACKENDS` are the names the config accepts).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import tomllib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .config import split_pairs
from .errors import ConfigError, ImagingError, SelectorError
from .selector import format_ranges, select

MAX_FILE_BYTES = 16 << 20  # a leases file is small; more is not one (/dev/zero)
FIELDS = ("slice", "from", "until", "nodes")  # of a lease in a leases file


class LeaseError(ImagingError):
    """The leases cannot be read, or the user has none now (exit 1, nothing changed)."""


@dataclass(frozen=True)
class Lease:
    """One reservation: a slice owns the testbed (or some nodes) between two instants (UTC)."""

    slice: str
    start: datetime
    end: datetime
    nodes: frozenset[int] | None = None  # None: the whole testbed

    def active(self, now: datetime) -> bool:
        """True when ``now`` is within the lease."""
        return self.start <= now < self.end

    def covers(self, numbers: Iterable[int]) -> bool:
        """True when the lease includes every one of the nodes."""
        return self.nodes is None or set(numbers) <= self.nodes


@dataclass(frozen=True)
class LeaseSettings:
    """The ``[leases]`` section, typed."""

    backend: str = "none"
    url: str = ""
    file: Path | None = None
    privileged: frozenset[str] = frozenset({"root"})
    slices: tuple[tuple[str, str], ...] = ()
    timeout: float = 5.0

    def slice_of(self, login: str) -> str:
        """The slice a login acts as."""
        return dict(self.slices).get(login, login)


@dataclass(frozen=True)
class Verdict:
    """The answer: allowed, and until when (None: no end, e.g. open testbed or privileged)."""

    allowed: bool
    reason: str
    until: datetime | None = None


def current_login() -> str:
    """The login of this process's real user id (``$USER`` and ``$LOGNAME`` are the
    user's to set, so they never decide who is privileged); the number when the
    account has no name."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def parse_slices(text: str) -> tuple[tuple[str, str], ...]:
    """``alice:inria_alice, bob:upmc_bob`` → pairs; ConfigError if malformed."""
    try:
        return split_pairs(text)
    except ValueError as exc:
        raise ConfigError(f"[leases] slices: {exc}") from None


def parse_time(value: Any, where: str) -> datetime:
    """An ISO 8601 instant (naive means UTC) or a TOML datetime, as an aware UTC datetime."""
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset that moves it out of the years 1-9999
        raise LeaseError(f"{where}: {value!r} is not an ISO 8601 time") from None


def make_lease(slice_: str, start: Any, end: Any, where: str, nodes: frozenset[int] | None = None) -> Lease:
    """A lease from the text of its instants; LeaseError naming it (``where``) when they
    are not times or it does not end after it starts."""
    lease = Lease(slice_, parse_time(start, where), parse_time(end, where), nodes)
    if lease.start >= lease.end:
        raise LeaseError(f"{where}: it does not end after it starts (from {lease.start:%Y-%m-%d %H:%M:%S},"
                         f" until {lease.end:%Y-%m-%d %H:%M:%S} UTC); ask the testbed's admin to fix it")
    return lease


def _lease_nodes(nodes: Any, where: str) -> frozenset[int] | None:
    """A lease's ``nodes`` spec, as numbers (None when absent: the whole testbed)."""
    if nodes is None:
        return None
    if isinstance(nodes, bool) or not isinstance(nodes, str | int) or not str(nodes).strip():
        raise LeaseError(f"{where}: nodes = {nodes!r} is not a node spec such as \"1-5\"")
    try:
        return frozenset(select(str(nodes).split()))
    except (SelectorError, ValueError) as exc:  # ValueError: e.g. a number of 5000 digits
        raise LeaseError(f"{where}: nodes = {str(nodes)[:40]!r} is not a node spec"
                         f" ({str(exc)[:200]})") from None


def _read_entries(path: Path) -> Any:
    """What the file holds: a JSON list, or the TOML ``[[lease]]`` tables."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise LeaseError(f"cannot read the leases file {path} ({exc.strerror or exc});"
                         " ask the testbed's admin") from None
    if len(data) > MAX_FILE_BYTES:
        raise LeaseError(f"the leases file {path} is larger than {MAX_FILE_BYTES >> 20} MiB; ask the testbed's admin")
    try:
        text = data.decode("utf-8-sig")
        if path.suffix != ".toml":
            return json.loads(text)
        document = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        raise LeaseError(f"the leases file {path} is not valid: {str(exc).splitlines()[0]}") from None
    unknown = sorted(set(document) - {"lease"})
    if unknown:
        raise LeaseError(f"the leases file {path} holds {unknown[0]!r}: want only [[lease]] tables")
    return document.get("lease", [])


def _from_file(path: Path) -> list[Lease]:
    entries = _read_entries(path)
    if not isinstance(entries, list):
        raise LeaseError(f"the leases file {path} must hold a list of leases")
    leases = []
    for index, entry in enumerate(entries, 1):
        where = f"leases file {path}, lease {index}"
        if not isinstance(entry, dict):
            raise LeaseError(f"{where}: want a table of slice, from, until (and optional nodes)")
        if isinstance(entry.get("slice"), str) and entry["slice"]:
            where += f" ({entry['slice'][:40]!r})"
        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:  # a misspelt "nodes" would make a per-node lease one of the whole testbed
            raise LeaseError(f"{where}: unknown field {unknown[0]!r}; want {', '.join(FIELDS)}")
        if "from" not in entry or "until" not in entry or not isinstance(entry.get("slice"), str) \
                or not entry["slice"]:
            raise LeaseError(f"{where}: want slice, from, until (and optional nodes)")
        leases.append(make_lease(entry["slice"], entry["from"], entry["until"], where,
                                 _lease_nodes(entry.get("nodes"), where)))
    return leases


async def _from_api(settings: LeaseSettings, now: datetime) -> list[Lease]:
    import aiohttp
    url = settings.url.rstrip("/") + "/leases"
    after = (now - timedelta(days=1)).isoformat()
    problem = None
    try:
        async with asyncio.timeout(settings.timeout + 0.5), aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=settings.timeout, connect=settings.timeout)) as session, \
                session.get(url, params={"after": after}) as response:
            if response.status != 200:
                problem = f"HTTP {response.status}"
            else:
                entries = await response.json(content_type=None)
    except (TimeoutError, aiohttp.ServerTimeoutError):
        problem = f"timeout {settings.timeout:g}s"
    except aiohttp.ClientConnectorError as exc:
        problem = "connection refused" if isinstance(exc.os_error, ConnectionRefusedError) else str(exc.strerror)
    except (aiohttp.ClientError, ValueError, RecursionError) as exc:
        problem = f"{type(exc).__name__}: {str(exc)[:200]}"
    if problem is not None:
        raise LeaseError(f"cannot verify the leases at {url} ({problem}); try again later,"
                         " or ask the testbed's admin")
    if not isinstance(entries, list):
        raise LeaseError(f"the leases API at {url} did not answer a list")
    leases = []
    for index, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or "t_from" not in entry or "t_until" not in entry:
            raise LeaseError(f"the leases API at {url} answered a lease without t_from/t_until")
        name = str(entry.get("slice_name") or "(unknown)")
        leases.append(make_lease(name, entry["t_from"], entry["t_until"],
                                 f"the leases API at {url}, lease {index} ({name[:40]})"))
    return leases


async def _none(settings: LeaseSettings, now: datetime) -> list[Lease]:
    return []


async def _file(settings: LeaseSettings, now: datetime) -> list[Lease]:
    if settings.file is None:
        raise ConfigError("[leases] backend = file needs [leases] file")
    return _from_file(settings.file)


async def _r2labapi(settings: LeaseSettings, now: datetime) -> list[Lease]:
    if not settings.url:
        raise ConfigError("[leases] backend = r2labapi needs [leases] url")
    return await _from_api(settings, now)


# backend name -> how to read its leases; the config's [leases] backend accepts these names only
BACKENDS: dict[str, Callable[[LeaseSettings, datetime], Awaitable[list[Lease]]]] = {
    "none": _none, "file": _file, "r2labapi": _r2labapi,
}


def _reader(settings: LeaseSettings) -> Callable[[LeaseSettings, datetime], Awaitable[list[Lease]]]:
    """How the settings' backend reads its leases; ConfigError when it is unknown."""
    read = BACKENDS.get(settings.backend)
    if read is None:
        raise ConfigError(f"[leases] backend = {settings.backend!r} is not one of {', '.join(BACKENDS)}")
    return read


async def fetch(settings: LeaseSettings, now: datetime) -> list[Lease]:
    """Every lease the backend knows of, sorted by start; LeaseError when they cannot be read,
    ConfigError when the backend is unknown or misses its file or URL."""
    return sorted(await _reader(settings)(settings, now), key=lambda lease: lease.start)


def _clock(moment: datetime, now: datetime) -> str:
    """``14:00 UTC``, with the date when it is not today."""
    return moment.strftime("%H:%M UTC" if moment.date() == now.date() else "%Y-%m-%d %H:%M UTC")


def judge(leases: Sequence[Lease], settings: LeaseSettings, login: str, nodes: Sequence[int],
          now: datetime) -> Verdict:
    """The verdict for ``login`` acting on ``nodes`` at ``now``, given the leases."""
    if settings.backend == "none":
        return Verdict(True, "open testbed")
    if login in settings.privileged:
        return Verdict(True, f"{login} is privileged")
    mine = settings.slice_of(login)
    current = [lease for lease in leases if lease.active(now)]
    covering = [lease for lease in current if lease.slice == mine and lease.covers(nodes)]
    if covering:
        return Verdict(True, f"lease of {mine}", max(lease.end for lease in covering))
    others = [lease for lease in current if lease.slice != mine and (lease.nodes is None or lease.nodes & set(nodes))]
    partial = [lease for lease in current if lease.slice == mine]
    if others:
        holder = others[0]
        reason = f"the testbed is booked by {holder.slice} until {_clock(holder.end, now)}"
    elif partial:
        outside = sorted(set(nodes) - set().union(*(lease.nodes or set() for lease in partial)))
        reason = f"your lease ({mine}) does not include node(s) {format_ranges(outside)}"
    else:
        reason = f"{mine} has no lease now"
    upcoming = [lease for lease in leases if lease.slice == mine and lease.start > now]
    reason += (f"; your next lease starts {_clock(upcoming[0].start, now)}" if upcoming
               else "; book one in the leases system")
    return Verdict(False, f"no lease: {reason}")


async def authorize(settings: LeaseSettings, login: str, nodes: Sequence[int],
                    now: datetime | None = None) -> Verdict:
    """Fetch the leases (unless the backend is none or the login privileged) and judge.

    Fails closed: an unknown backend is a ConfigError even for a privileged login,
    leases that cannot be read a LeaseError."""
    now = now or datetime.now(UTC)
    _reader(settings)  # an unknown backend refuses everyone, the privileged too
    if settings.backend == "none" or login in settings.privileged:
        return judge([], settings, login, nodes, now)
    return judge(await fetch(settings, now), settings, login, nodes, now)
