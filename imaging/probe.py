"""Does a TCP port answer?  Used to see a node's control interface go down."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def port_answers(host: str, port: int, timeout: float) -> bool:
    """True when a TCP connection to host:port is accepted within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        pass
    return True


async def any_port_answers(host: str, ports: Iterable[int], timeout: float) -> bool:
    """True when one of the ports accepts a connection."""
    results = await asyncio.gather(*(port_answers(host, port, timeout) for port in ports))
    return any(results)
