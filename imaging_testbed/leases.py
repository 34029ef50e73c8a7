"""The testbed's leases API: the subset of R2lab's REST API the product's
``r2labapi`` leases backend uses, served by the controller.

* ``GET http://<server_ip>:8088/leases[?after=ISO][&before=ISO]`` → a JSON
  list of ``{"id", "resource_id": 1, "slice_id", "slice_name", "t_from",
  "t_until"}`` (UTC ISO strings with ``+00:00``), sorted by ``t_from``,
  keeping the leases ending after ``after`` and starting before ``before``.

The leases live in the controller's memory and in ``DIR/leases.json`` (so a
controller restart keeps them, with the API's mode: ``ok``, ``down`` — the
port closed — or ``blackhole`` — its packets dropped by nftables).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from imaging.errors import UsageError

from .layout import Layout
from .procs import run
from .programs import IP, NFT

LEASES_PORT = 8088
MODES = ("ok", "down", "blackhole")
NFT_TABLE = "imaging_leases"

log = logging.getLogger(__name__)

_RELATIVE = re.compile(r"([+-])((?:\d+[dhms])+)")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An aware UTC datetime from ISO 8601 (naive = UTC) or ``now``, ``+10m``,
    ``-1h``, ``+2h30m``, ``+1d`` (relative to ``now``); UsageError otherwise."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    text = text.strip()
    if text == "now":
        return now
    match = _RELATIVE.fullmatch(text)
    if match:
        seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([dhms])", match.group(2)))
        return now + timedelta(seconds=seconds if match.group(1) == "+" else -seconds)
    try:
        moment = datetime.fromisoformat(text.replace(" ", "+") if "T" in text else text)
    except ValueError:
        raise UsageError(f"{text!r} is not a time: want ISO 8601 (UTC if naive), now, +10m, -1h, +2h30m"
                         ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with ``+00:00``."""
    return moment.astimezone(UTC).isoformat()


@dataclass
class Lease:
    """One lease on the whole testbed (R2lab's resource 1)."""

    id: int
    slice_id: int
    slice_name: str
    t_from: str
    t_until: str
    nodes: str = ""  # informative only (R2lab leases cover the whole testbed)

    def api(self) -> dict[str, Any]:
        """The lease as the R2lab API shows it."""
        return {"id": self.id, "resource_id": 1, "slice_id": self.slice_id, "slice_name": self.slice_name,
                "t_from": self.t_from, "t_until": self.t_until}


class LeasesService:
    """The leases, their persistence and the API server (in the server namespace)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.path = layout.leases_path
        self.leases: list[Lease] = []
        self.mode = "ok"
        self._load()
        app = web.Application()
        app.router.add_get("/leases", self._get_leases)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        self._site: web.TCPSite | None = None

    # --- persistence -------------------------------------------------------
    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            self.leases = [Lease(**item) for item in data.get("leases", [])]
            self.mode = data.get("mode", "ok") if data.get("mode") in MODES else "ok"
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring %s: %s", self.path, exc)

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"mode": self.mode, "leases": [asdict(lease) for lease in self.leases]},
                                  indent=1) + "\n")
        tmp.replace(self.path)

    # --- the book ----------------------------------------------------------
    def add(self, slice_name: str, t_from: str, t_until: str, nodes: str = "") -> Lease:
        """Book a lease; UsageError when the times are bad."""
        start, end = parse_time(t_from), parse_time(t_until)
        if end <= start:
            raise UsageError(f"a lease must end after it starts ({iso(start)} → {iso(end)})")
        if not slice_name:
            raise UsageError("a lease needs a slice name")
        slice_ids = {lease.slice_name: lease.slice_id for lease in self.leases}
        slice_id = slice_ids.get(slice_name, max(slice_ids.values(), default=0) + 1)
        lease = Lease(max((lease.id for lease in self.leases), default=0) + 1, slice_id, slice_name,
                      iso(start), iso(end), nodes)
        self.leases.append(lease)
        self._save()
        log.info("lease %d added: %s %s → %s", lease.id, slice_name, lease.t_from, lease.t_until)
        return lease

    def clear(self) -> None:
        """Forget every lease."""
        self.leases = []
        self._save()

    def select(self, after: datetime | None = None, before: datetime | None = None) -> list[Lease]:
        """The leases ending after ``after`` and starting before ``before``, by start."""
        chosen = [lease for lease in self.leases
                  if (after is None or parse_time(lease.t_until) > after)
                  and (before is None or parse_time(lease.t_from) < before)]
        return sorted(chosen, key=lambda lease: (parse_time(lease.t_from), lease.id))

    # --- the API server ----------------------------------------------------
    async def _get_leases(self, request: web.Request) -> web.Response:
        bounds: dict[str, datetime | None] = {}
        for key in ("after", "before"):
            value = request.query.get(key)
            try:
                bounds[key] = None if value is None else parse_time(value.replace(" ", "+"))
            except UsageError as exc:
                return web.json_response({"error": str(exc)}, status=400)
        return web.json_response([lease.api() for lease in self.select(bounds["after"], bounds["before"])])

    async def start(self) -> None:
        """Set up the server and put the saved mode in force."""
        await self._runner.setup()
        await self.set_mode(self.mode)

    async def stop(self) -> None:
        """Stop serving (the nftables table goes with the namespace)."""
        await self._runner.cleanup()
        self._site = None

    async def set_mode(self, mode: str) -> None:
        """``ok``: serve; ``down``: port closed; ``blackhole``: serve, but its packets dropped."""
        if mode not in MODES:
            raise UsageError(f"leases API mode {mode!r}: want {', '.join(MODES)}")
        if mode == "down" and self._site is not None:
            await self._site.stop()
            self._site = None
        elif mode != "down" and self._site is None:
            self._site = web.TCPSite(self._runner, self.layout.server_ip, LEASES_PORT, reuse_address=True)
            await self._site.start()
        await run(IP, "netns", "exec", self.layout.server_ns, NFT, "-f", "-",
                  input=blackhole_rules(self.layout, mode == "blackhole"))
        self.mode = mode
        self._save()
        log.info("leases API now %s", mode)

    async def command(self, body: dict[str, Any]) -> dict[str, Any]:
        """One control-channel command: ``add``, ``clear``, ``list`` or ``api``; the answer."""
        action = body.get("action")
        if action == "add":
            self.add(str(body.get("slice", "")), str(body.get("from", "")), str(body.get("until", "")),
                     str(body.get("nodes") or ""))
        elif action == "clear":
            self.clear()
        elif action == "api":
            await self.set_mode(str(body.get("mode", "")))
        elif action != "list":
            raise UsageError(f"unknown leases action {action!r}")
        return {"mode": self.mode, "url": url(self.layout),
                "leases": [asdict(lease) for lease in self.select()]}


def url(layout: Layout) -> str:
    """The leases API's base URL."""
    return f"http://{layout.server_ip}:{LEASES_PORT}"


def blackhole_rules(layout: Layout, blackhole: bool) -> str:
    """The nftables script (re)making ``inet imaging_leases``: a DROP of the API's packets when ``blackhole``."""
    rule = f" ip daddr {layout.server_ip} tcp dport {LEASES_PORT} drop;" if blackhole else ""
    return (f"table inet {NFT_TABLE} {{}}\ndelete table inet {NFT_TABLE}\n"
            f"table inet {NFT_TABLE} {{\n  chain input {{ type filter hook input priority 0;{rule} }}\n}}\n")
