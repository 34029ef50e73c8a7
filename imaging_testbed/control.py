"""The controller's control channel: HTTP on the unix socket ``DIR/run/control.sock``.

* ``GET /status`` → ``{"nodes": [NodeStatus…]}``
* ``POST /fault`` with ``{"node": "fit03", "spec": "cmc=blackhole"}`` →
  ``{"node": …, "faults": […]}`` (400 with ``{"error": …}`` when invalid)
* ``POST /leases`` with ``{"action": "add", "slice": …, "from": ISO|+10m…, "until": …,
  "nodes": …}``, ``{"action": "clear"}``, ``{"action": "list"}`` or
  ``{"action": "api", "mode": "ok|down|blackhole"}`` → ``{"mode", "url", "leases": […]}``
* ``POST /shutdown`` → ``{}``; the controller then stops its nodes and exits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from imaging.errors import ImagingError

from .node import NodeStatus

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlServer:
    """Serves the control channel for a controller."""

    def __init__(self, socket: Path, status: Callable[[], list[NodeStatus]],
                 set_fault: Callable[[str, str], Awaitable[list[str]]], stop: asyncio.Event,
                 leases: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None) -> None:
        self.socket = socket
        self._leases = leases
        self._status = status
        self._set_fault = set_fault
        self._stop = stop
        app = web.Application()
        app.router.add_get("/status", self._get_status)
        app.router.add_post("/fault", self._post_fault)
        app.router.add_post("/leases", self._post_leases)
        app.router.add_post("/shutdown", self._post_shutdown)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)

    async def start(self) -> None:
        """Listen on the socket."""
        await self._runner.setup()
        self.socket.unlink(missing_ok=True)
        await web.UnixSite(self._runner, str(self.socket)).start()

    async def stop(self) -> None:
        """Close the socket."""
        await self._runner.cleanup()
        self.socket.unlink(missing_ok=True)

    async def _get_status(self, request: web.Request) -> web.Response:
        return web.json_response({"nodes": [asdict(s) for s in self._status()]})

    async def _post_fault(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            faults = await self._set_fault(str(body["node"]), str(body["spec"]))
        except (ImagingError, KeyError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"node": body["node"], "faults": faults})

    async def _post_leases(self, request: web.Request) -> web.Response:
        if self._leases is None:
            return web.json_response({"error": "this controller has no leases API"}, status=400)
        try:
            body = await request.json()
            return web.json_response(await self._leases(dict(body)))
        except (ImagingError, KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)

    async def _post_shutdown(self, request: web.Request) -> web.Response:
        self._stop.set()
        return web.json_response({})


async def call(socket: Path, method: str, path: str, payload: dict[str, Any] | None = None,
               timeout: float = 10.0) -> dict[str, Any]:
    """One request on the control channel; its JSON answer.

    Raises ImagingError when the controller does not answer or refuses.
    """
    if not socket.exists():
        raise ImagingError(f"the testbed controller is not running (no {socket}); restart the testbed"
                           " with imaging-testbed down, then up")
    connector = aiohttp.UnixConnector(path=str(socket))
    try:
        async with (aiohttp.ClientSession(connector=connector,
                                          timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                    session.request(method, f"http://testbed{path}", json=payload) as response):
            answer: dict[str, Any] = await response.json()
            if response.status != 200:
                raise ImagingError(answer.get("error", f"controller answered {response.status}"))
            return answer
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ImagingError(f"the testbed controller does not answer on {socket} ({exc or 'timeout'});"
                           " restart the testbed with imaging-testbed down, then up") from None


def statuses(answer: dict[str, Any]) -> list[NodeStatus]:
    """The NodeStatus records of a ``/status`` answer."""
    return [NodeStatus(**item) for item in answer["nodes"]]
