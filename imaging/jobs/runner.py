"""Running a job's coroutine so that Ctrl-C, SIGTERM and the deadline all end it the same way.

The coroutine is cancelled; :class:`Interrupted` tells the caller why.  What
must be undone (next-boot links, sender processes, locks) is undone by the
caller's synchronous ``finally``, which runs whatever happened to the loop.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..errors import ImagingError

T = TypeVar("T")


class Interrupted(ImagingError):
    """The job was stopped by a signal; ``exit_code`` is 130 for Ctrl-C, 1 otherwise."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_job(job: Coroutine[Any, Any, T]) -> T:
    """Run ``job`` on a fresh loop; SIGINT and SIGTERM cancel it and raise Interrupted."""
    received: list[int] = []

    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, lambda n=number: (received.append(n), task.cancel()))
        try:
            return await job
        finally:
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(number)

    try:
        return asyncio.run(main())
    except (asyncio.CancelledError, KeyboardInterrupt):
        if received and received[0] == signal.SIGTERM:
            raise Interrupted("stopped by SIGTERM", 1) from None
        raise Interrupted("interrupted", 130) from None
