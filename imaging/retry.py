"""Retrying a network attempt with jittered backoff until a deadline.

Every attempt is bounded twice: by the library's own timeout (passed by the
caller to the attempt) and by the deadline itself, so a black-holed peer never
holds a command past it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)
RETRIABLE: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError, EOFError)


class DeadlineExceeded(Exception):
    """The deadline passed before an attempt succeeded; carries the last error."""

    def __init__(self, last_error: BaseException | None) -> None:
        super().__init__(str(last_error) if last_error else "no attempt finished")
        self.last_error = last_error


def describe(error: BaseException | None) -> str:
    """A short human reason for a network error."""
    if error is None:
        return "no answer"
    if isinstance(error, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


async def retry_until(attempt: Callable[[], Awaitable[T]], *, deadline: float, backoff: float,
                      retry_on: tuple[type[BaseException], ...] = RETRIABLE, what: str = "") -> T:
    """Run ``attempt()`` until it returns, or raise DeadlineExceeded.

    ``deadline`` is in the running loop's clock (``loop.time()``).  Between
    failures the delay grows from ``backoff`` (doubling, at most 8×) with ±50 %
    jitter, so that many nodes retrying do not move in lockstep.
    """
    loop = asyncio.get_running_loop()
    last: BaseException | None = None
    tries = 0
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise DeadlineExceeded(last)
        try:
            async with asyncio.timeout_at(deadline):
                return await attempt()
        except retry_on as exc:
            last = exc
            tries += 1
            log.debug("%s: attempt %d failed: %s", what, tries, describe(exc))
        delay = min(backoff * 2 ** min(tries - 1, 3), backoff * 8) * random.uniform(0.5, 1.5)
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise DeadlineExceeded(last)
        await asyncio.sleep(min(delay, remaining))
