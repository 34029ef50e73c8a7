"""Running a job's coroutine so that Ctrl-C, SIGTERM and the deadline all end it the same way.

The coroutine is cancelled; :class:`Interrupted` tells the caller why.  What
must be undone (next-boot links, sender processes, locks, partial files) is
undone by a synchronous cleanup that runs whatever happened to the loop, with
the signals held back until it is done.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..errors import ImagingError

T = TypeVar("T")


class Interrupted(ImagingError):
    """The job was stopped by a signal; ``exit_code`` is 130 for Ctrl-C, 1 otherwise."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


SIGNALS = {signal.SIGINT, signal.SIGTERM}


def run_job(job: Coroutine[Any, Any, T], cleanup: Callable[[], None], timeout: float) -> T:
    """Run ``job`` on a fresh loop within ``timeout`` seconds (TimeoutError past it);
    SIGINT and SIGTERM cancel it and raise Interrupted.  ``cleanup`` runs after the
    loop is gone, whatever happened, with both signals blocked so that a second
    Ctrl-C or a SIGTERM cannot cut it short (they are delivered once it is done)."""
    received: list[int] = []

    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        def stop(number: int) -> None:
            received.append(number)
            if len(received) == 1:  # once: a second Ctrl-C must not cut short what the first one unwinds
                task.cancel()

        for number in SIGNALS:
            loop.add_signal_handler(number, stop, number)
        try:
            async with asyncio.timeout(timeout):
                return await job
        finally:
            # from here to the end of cleanup, a signal waits: the loop's shutdown and the
            # cleanup run undisturbed (closing the loop removes its handlers)
            signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)

    try:
        return asyncio.run(main())
    except (asyncio.CancelledError, KeyboardInterrupt):
        if received and received[0] == signal.SIGTERM:
            raise Interrupted("stopped by SIGTERM", 1) from None
        raise Interrupted("interrupted", 130) from None
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            cleanup()
        finally:
            # a signal that came while blocked asked for what is being done (the job is over): drop it
            # instead of raising KeyboardInterrupt at a random place of the summary
            previous = {number: signal.signal(number, signal.SIG_IGN) for number in SIGNALS}
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
            for number, handler in previous.items():
                signal.signal(number, handler)
