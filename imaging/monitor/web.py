"""The monitor's HTTP service (aiohttp): ``/api/nodes`` (JSON), ``/api/events`` (server-sent events of the
changes), ``/metrics`` (Prometheus) and ``/``, the page (``page.html``, served from the package: no build
step, nothing fetched from elsewhere)."""

from __future__ import annotations

import asyncio
import json
from importlib.resources import files

from aiohttp import web

from .metrics import CONTENT_TYPE, registry_of, render
from .state import Monitor

KEEPALIVE = 15.0  # seconds between two comments on an idle event stream (proxies close silent ones)


def make_app(monitor: Monitor) -> web.Application:
    """The application serving ``monitor``."""
    app = web.Application()
    registry = registry_of(monitor)
    page = files(__package__).joinpath("page.html").read_bytes()

    async def nodes(request: web.Request) -> web.Response:
        return web.json_response(monitor.snapshot())

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=render(registry), headers={"Content-Type": CONTENT_TYPE})

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        with monitor.subscribe() as queue:
            await response.write(f"event: snapshot\ndata: {json.dumps(monitor.snapshot())}\n\n".encode())
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await response.write(f"event: node\ndata: {message}\n\n".encode())

    app.router.add_get("/", index)
    app.router.add_get("/api/nodes", nodes)
    app.router.add_get("/api/events", events)
    app.router.add_get("/metrics", metrics)
    return app
