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
(``alice:inria_alice, bob:upmc_bob``), else as the slice of its own name.
When the leases cannot be read (API down, timeout, bad file) the answer is no:
the check fails closed, and never hangs past ``[leases] timeout``.
"""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .errors import ConfigError, ImagingError, SelectorError
from .selector import format_ranges, select


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


def parse_slices(text: str) -> tuple[tuple[str, str], ...]:
    """``alice:inria_alice, bob:upmc_bob`` → pairs; ConfigError if malformed."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        login, sep, name = item.partition(":")
        if not sep or not login.strip() or not name.strip():
            raise ConfigError(f"[leases] slices: {item!r} must be login:slice")
        pairs.append((login.strip(), name.strip()))
    return tuple(pairs)


def parse_time(value: Any, where: str) -> datetime:
    """An ISO 8601 instant (naive means UTC) or a TOML datetime, as an aware UTC datetime."""
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        raise LeaseError(f"{where}: {value!r} is not an ISO 8601 time") from None
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).astimezone(UTC)


def _from_file(path: Path) -> list[Lease]:
    try:
        text = path.read_text(encoding="utf-8")
        entries = tomllib.loads(text).get("lease", []) if path.suffix == ".toml" else json.loads(text)
    except OSError as exc:
        raise LeaseError(f"cannot read the leases file {path} ({exc.strerror}); ask the testbed's admin") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise LeaseError(f"the leases file {path} is not valid: {str(exc).splitlines()[0]}") from None
    if not isinstance(entries, list):
        raise LeaseError(f"the leases file {path} must hold a list of leases")
    leases = []
    for index, entry in enumerate(entries):
        where = f"leases file {path}, lease {index}"
        try:
            nodes = entry.get("nodes")
            numbers = frozenset(select(str(nodes).split())) if nodes else None
            leases.append(Lease(str(entry["slice"]), parse_time(entry["from"], where),
                                parse_time(entry["until"], where), numbers))
        except (KeyError, TypeError, AttributeError):
            raise LeaseError(f"{where}: want slice, from, until (and optional nodes)") from None
        except SelectorError as exc:
            raise LeaseError(f"{where}: {exc.message}") from None
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
    except (aiohttp.ClientError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        raise LeaseError(f"cannot verify the leases at {url} ({problem}); try again later,"
                         " or ask the testbed's admin")
    if not isinstance(entries, list):
        raise LeaseError(f"the leases API at {url} did not answer a list")
    leases = []
    for entry in entries:
        try:
            leases.append(Lease(str(entry.get("slice_name") or "(unknown)"),
                                parse_time(entry["t_from"], url), parse_time(entry["t_until"], url)))
        except (KeyError, TypeError, AttributeError):
            raise LeaseError(f"the leases API at {url} answered a lease without t_from/t_until") from None
    return leases


async def fetch(settings: LeaseSettings, now: datetime) -> list[Lease]:
    """Every lease the backend knows of, sorted by start; LeaseError when they cannot be read."""
    if settings.backend == "none":
        return []
    if settings.backend == "file":
        if settings.file is None:
            raise ConfigError("[leases] backend = file needs [leases] file")
        leases = _from_file(settings.file)
    elif settings.backend == "r2labapi":
        if not settings.url:
            raise ConfigError("[leases] backend = r2labapi needs [leases] url")
        leases = await _from_api(settings, now)
    else:
        raise ConfigError(f"[leases] backend = {settings.backend!r}: want none, file or r2labapi")
    return sorted(leases, key=lambda lease: lease.start)


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
    """Fetch the leases (unless the backend is none or the login privileged) and judge."""
    now = now or datetime.now(UTC)
    if settings.backend == "none" or login in settings.privileged:
        return judge([], settings, login, nodes, now)
    return judge(await fetch(settings, now), settings, login, nodes, now)
