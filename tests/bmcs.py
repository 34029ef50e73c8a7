"""What the tests of the BMC power drivers share: a node, free ports, and the node's power hardware.

A BMC hands its power actions to the node's card (:mod:`imaging_testbed.bmc`, :mod:`imaging_testbed.redfish`).
Outside a testbed no node exists, so :class:`Card` stands in for its power hardware: a small HTTP server
speaking the card's protocol that keeps a power state and records the verbs.  It is the one stand-in of these
tests; the BMCs and the clients are the real programs.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from imaging.inventory import Interface, Node
from imaging.power.base import Power, PowerOptions

NODE = Node(1, Interface("reboot01", "127.0.0.1", "02:00:00:00:00:01"),
            Interface("fit01", "127.0.0.1", "02:00:00:00:01:01"))
PASSWORD = "s3cret-Pw"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def credentials_file(folder: Path, text: str, mode: int = 0o600) -> Path:
    """A credentials file holding ``text``, of ``mode``."""
    path = folder / "bmc.conf"
    path.write_text(text)
    path.chmod(mode)
    return path


@dataclass
class Card:
    """The node's power hardware behind the BMC: a power state and the verbs it was sent."""

    power: str = "off"
    verbs: list[str] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        """``GET /<verb>``, as the testbed's cards answer it."""
        verb = request.match_info["verb"]
        if verb != "status":
            self.verbs.append(verb)
        if verb in ("on", "off"):
            self.power = verb
        return web.Response(text=self.power if verb == "status" else "ok")


@pytest.fixture
async def card() -> AsyncIterator[Card]:
    """The card, served on loopback."""
    state = Card(port=free_port())
    app = web.Application()
    app.router.add_get("/{verb}", state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", state.port).start()
    yield state
    await runner.cleanup()


async def every_verb_reaches_the_card(options: PowerOptions, card: Card, info: str, label: str) -> None:
    """Through a driver: status, on, reset, off and info each do what they say to the node's card, and the
    driver is named ``label`` (``info`` is a word its info answer holds)."""
    async with Power(options) as power:
        assert await power.status(NODE) == "off"
        assert await power.request(NODE, "on") == "ok"
        assert card.power == "on" and await power.status(NODE) == "on"
        assert await power.request(NODE, "reset") == "ok"
        assert await power.request(NODE, "off") == "ok"
        assert await power.status(NODE) == "off"
        assert info in await power.request(NODE, "info")
        assert power.label(NODE) == label
    assert card.verbs == ["on", "reset", "off"]
