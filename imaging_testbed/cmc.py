"""The emulated management cards: one aiohttp server per node, on the node's
CMC address, port 80, all in the controller's event loop.

Protocol (plain-text bodies): ``GET /status`` → ``on`` | ``off``;
``GET /on``, ``/off``, ``/reset`` → ``ok``; ``GET /info`` → free text.
The power state machine itself is the node's (:mod:`imaging_testbed.node`).
A card with the ``cmc=garbage`` fault answers bodies that are not the
protocol and does nothing; ``cmc=slow:MS`` answers late; ``cmc=blackhole`` is a DROP rule
(:mod:`imaging_testbed.network`), so the card never even sees the packets.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from .node import PoweredNode

log = logging.getLogger(__name__)

CMC_PORT = 80
SHUTDOWN_TIMEOUT = 0.5


def garbage() -> str:
    """A body no CMC client should accept."""
    return f"<html><body>ERR 0x{secrets.token_hex(2)}: {secrets.token_urlsafe(9)}</body></html>\n"


class CmcServers:
    """The CMCs of every node, served on their own addresses."""

    def __init__(self, nodes: list[PoweredNode], port: int = CMC_PORT) -> None:
        self.by_ip = {node.info.cmc_ip: node for node in nodes}
        self.port = port
        app = web.Application()
        verbs: dict[str, Callable[[PoweredNode], Awaitable[str]]] = {
            "status": self._status, "on": self._on, "off": self._off,
            "reset": self._reset, "info": self._info,
        }
        for verb, action in verbs.items():
            app.router.add_get(f"/{verb}", self._handler(verb, action))
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)

    async def start(self) -> None:
        """Listen on every CMC address."""
        await self._runner.setup()
        for ip in self.by_ip:
            await web.TCPSite(self._runner, ip, self.port, backlog=64).start()

    async def stop(self) -> None:
        """Close every listener and connection."""
        await self._runner.cleanup()

    def _handler(self, verb: str, action: Callable[[PoweredNode], Awaitable[str]]
                 ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            sockname = request.transport.get_extra_info("sockname") if request.transport else None
            node = self.by_ip.get(sockname[0]) if sockname else None
            if node is None:
                return web.Response(status=404, text="no such card\n")
            if node.faults.cmc_delay_ms:
                await asyncio.sleep(node.faults.cmc_delay_ms / 1000)
            if node.faults.cmc == "garbage":
                log.info("%s: /%s answered with garbage (fault)", node.info.cmc_name, verb)
                return web.Response(text=garbage())
            body = await action(node)
            log.info("%s: /%s -> %s", node.info.cmc_name, verb, body)
            return web.Response(text=body + "\n")
        return handle

    async def _status(self, node: PoweredNode) -> str:
        return "on" if node.powered else "off"

    async def _on(self, node: PoweredNode) -> str:
        await node.power_on()
        return "ok"

    async def _off(self, node: PoweredNode) -> str:
        await node.power_off()
        return "ok"

    async def _reset(self, node: PoweredNode) -> str:
        await node.reset()
        return "ok"

    async def _info(self, node: PoweredNode) -> str:
        status = node.status()
        return (f"{node.card} {node.info.cmc_name} of {node.info.name} (imaging testbed);"
                f" power {status.power}; stage {status.stage}; faults {','.join(status.faults) or 'none'}")
