"""The ``cmc`` power driver: R2lab's management cards, ``GET http://<cmc>:<port>/<verb>``, plain-text answers.

The card speaks the interface's own words (``status`` → ``on``/``off``, ``on``/``off``/``reset`` → ``ok``,
``info`` → text).  No answer, a timeout or an HTTP error is a :class:`~.base.PowerError` for that node.  One
aiohttp session (no connection limit) serves a whole command run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..config import Key
from .base import PowerDriver, PowerError

if TYPE_CHECKING:
    import aiohttp

    from ..inventory import Node

log = logging.getLogger(__name__)


class Cmc(PowerDriver):
    """Talks to the cards of many nodes through one HTTP session."""

    name = "cmc"
    KEYS = (
        Key("nodes", "cmc_port", "int", "80", "TCP port of the CMCs' HTTP service", low=1, high=65535),
    )
    label = "CMC"
    _session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """One HTTP session for the command run."""
        import aiohttp
        timeout = self.options.timeout
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout, connect=timeout),
                                              connector=aiohttp.TCPConnector(limit=0, force_close=True))

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, node: Node, verb: str) -> str:
        """``GET /<verb>`` on the node's card; the body, stripped."""
        import aiohttp
        assert self._session is not None, "open the driver first"
        timeout = self.options.timeout
        url = f"http://{node.cmc.ip}:{self.options.config.get_int('nodes', 'cmc_port', host=node.hostname)}/{verb}"
        try:
            async with asyncio.timeout(timeout + 0.5), self._session.get(url) as response:
                body = (await response.text(errors="replace")).strip()
                if response.status != 200:
                    raise PowerError(f"CMC answered HTTP {response.status} to {verb}")
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise PowerError(f"unreachable (timeout {timeout:g}s)") from None
        except aiohttp.ClientConnectorError as exc:
            reason = "connection refused" if isinstance(exc.os_error, ConnectionRefusedError) else exc.strerror
            raise PowerError(f"unreachable ({reason})") from None
        except aiohttp.ClientError as exc:
            raise PowerError(f"CMC failed: {type(exc).__name__} {exc}".strip()) from None
        log.debug("%s: CMC %s -> %r", node.hostname, verb, body[:200])
        return body
