"""The management card (CMC) client: ``GET http://<cmc>/<verb>``, plain-text answers.

``status`` answers ``on`` or ``off``; ``on``, ``off`` and ``reset`` answer ``ok``;
``info`` answers free text.  Anything else (no answer, a timeout, another body,
an HTTP error) is a :class:`CmcError` for that node.  One :class:`CmcClient`
(one aiohttp session, no connection limit) serves a whole command run.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from .errors import NodeFailure
from .probe import any_port_answers

if TYPE_CHECKING:
    import aiohttp

    from .inventory import Node

log = logging.getLogger(__name__)
EXPECTED = {"status": ("on", "off"), "on": ("ok",), "off": ("ok",), "reset": ("ok",), "info": None}
VERBS = tuple(EXPECTED)


class CmcError(NodeFailure):
    """A CMC did not answer, or answered outside the protocol."""


class CmcClient:
    """Talks to the CMCs of many nodes through one HTTP session.

    Use as ``async with CmcClient(timeout=3) as cmc: await cmc.status(node)``.
    """

    def __init__(self, timeout: float, port: int = 80) -> None:
        self.timeout = timeout
        self.port = port
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> CmcClient:
        import aiohttp
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout, connect=self.timeout),
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
        )
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, node: Node, verb: str) -> str:
        """Send one verb to a node's CMC; return the answer (stripped) or raise CmcError."""
        import aiohttp
        if verb not in EXPECTED:
            raise ValueError(f"unknown CMC verb {verb!r}")
        assert self._session is not None, "use CmcClient as an async context manager"
        url = f"http://{node.cmc.ip}:{self.port}/{verb}"
        try:
            async with asyncio.timeout(self.timeout + 0.5), self._session.get(url) as response:
                body = (await response.text(errors="replace")).strip()
                if response.status != 200:
                    raise CmcError(f"CMC answered HTTP {response.status} to {verb}")
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise CmcError(f"unreachable (timeout {self.timeout:g}s)") from None
        except aiohttp.ClientConnectorError as exc:
            reason = "connection refused" if isinstance(exc.os_error, ConnectionRefusedError) else exc.strerror
            raise CmcError(f"unreachable ({reason})") from None
        except aiohttp.ClientError as exc:
            raise CmcError(f"CMC failed: {type(exc).__name__} {exc}".strip()) from None
        expected = EXPECTED[verb]
        log.debug("%s: CMC %s -> %r", node.hostname, verb, body[:200])
        if expected is not None and body not in expected:
            shown = body if len(body) <= 40 else body[:37] + "..."
            raise CmcError(f"unexpected answer {shown!r} to {verb}")
        return body

    async def status(self, node: Node) -> str:
        """``on`` or ``off``."""
        return await self.request(node, "status")


@dataclass(frozen=True)
class ResetSettings:
    """What ensure_reset needs to know beyond the CMC."""

    idle_after_reset: float  # seconds within which the control interface must go silent
    probe_ports: tuple[int, ...] = (22, 23)  # the control interface's services
    poll: float = 0.25  # seconds between two looks


async def _goes_silent(node: Node, settings: ResetSettings) -> bool:
    """True when the control interface stops answering within idle_after_reset."""
    loop = asyncio.get_running_loop()
    until = loop.time() + settings.idle_after_reset
    while loop.time() < until:
        if not await any_port_answers(node.control.ip, settings.probe_ports, settings.poll):
            return True
        await asyncio.sleep(settings.poll)
    return False


async def _wait_status(cmc: CmcClient, node: Node, wanted: str, poll: float) -> None:
    while await cmc.status(node) != wanted:
        await asyncio.sleep(poll)


async def ensure_reset(cmc: CmcClient, node: Node, settings: ResetSettings) -> str:
    """Make the node reboot, whatever state it is in; return what was done.

    ``on`` → reset, ``off`` → on; then the node's control interface must stop
    answering within ``idle_after_reset`` (a CMC can say ``ok`` and not reset,
    as R2lab's fit04 did): if it does not, power-cycle once with ``off``/``on``.
    Finally wait until the CMC says ``on``.  The caller bounds the whole with
    its deadline; CmcError when a step fails.
    """
    if await cmc.status(node) == "off":
        await cmc.request(node, "on")
        await _wait_status(cmc, node, "on", settings.poll)
        return "turned on"
    answering = await any_port_answers(node.control.ip, settings.probe_ports, settings.poll)
    await cmc.request(node, "reset")
    if not answering or await _goes_silent(node, settings):
        await _wait_status(cmc, node, "on", settings.poll)
        return "reset"
    log.warning("%s: still answering %gs after reset: power-cycling", node.hostname,
                settings.idle_after_reset)
    await cmc.request(node, "off")
    await _wait_status(cmc, node, "off", settings.poll)
    if not await _goes_silent(node, settings):
        raise CmcError("reset ignored by the CMC, and the node still answers when off")
    await cmc.request(node, "on")
    await _wait_status(cmc, node, "on", settings.poll)
    return "reset ignored by the CMC, power-cycled"
