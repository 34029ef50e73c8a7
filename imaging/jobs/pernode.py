"""Running one coroutine per node, concurrently, each under its own deadline.

One node failing never stops the others: every failure becomes that node's
:class:`NodeResult`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from ..errors import ImagingError
from ..events import NodeResult
from ..inventory import Node

log = logging.getLogger(__name__)


async def run_node(node: Node, work: Callable[[Node], Awaitable[str]], timeout: float) -> NodeResult:
    """Run ``work(node)`` within ``timeout`` seconds; any failure becomes the node's result."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        async with asyncio.timeout(timeout):
            detail = await work(node)
        return NodeResult(node, True, detail, loop.time() - start)
    except ImagingError as exc:  # NodeFailure, and any other failure with a message for the user
        reason = exc.message
    except TimeoutError:
        reason = f"timeout after {timeout:g}s"
    except Exception as exc:  # a bug must cost one node, not the command
        log.exception("%s: unexpected error", node.hostname)
        reason = f"unexpected error {type(exc).__name__}: {exc} (see the log)"
    log.info("%s: failed: %s", node.hostname, reason)
    return NodeResult(node, False, reason, loop.time() - start)


async def for_each_node(nodes: Sequence[Node], work: Callable[[Node], Awaitable[str]],
                        timeout: float) -> AsyncIterator[NodeResult]:
    """Run ``work(node)`` for every node at once; yield results as they complete.

    ``work`` returns a short description of what it did, or raises NodeFailure.
    Each node gets ``timeout`` seconds.
    """
    tasks = [asyncio.create_task(run_node(node, work, timeout), name=node.hostname) for node in nodes]
    try:
        for next_done in asyncio.as_completed(tasks):
            yield await next_done
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
