"""The server side of a multicast session: one sender process, logged, always reaped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
from pathlib import Path

from ..errors import ImagingError

log = logging.getLogger(__name__)


class SenderProcess:
    """A running sender (``udp-sender`` or ``frisbeed``), its output in a log file.

    :meth:`stop` is the orderly way out; :meth:`kill_now` is synchronous, for a
    ``finally`` that runs after the event loop is gone.
    """

    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the program in a session of its own (a Ctrl-C is ours to handle)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("sender: %s (log %s)", shlex.join(self.argv), self.log_path)
        with open(self.log_path, "ab") as output:
            output.write(f"$ {shlex.join(self.argv)}\n".encode())
            output.flush()
            try:
                self.process = await asyncio.create_subprocess_exec(
                    *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output,
                    start_new_session=True)
            except OSError as exc:
                raise ImagingError(f"cannot start {self.argv[0]}: {exc.strerror}; install it or set"
                                   " its path in the config") from None

    @property
    def pid(self) -> int | None:
        """The process id, once started."""
        return self.process.pid if self.process else None

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.process is not None and self.process.returncode is None

    async def stop(self, grace: float = 2.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; reap it; return its exit status."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await self.process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        log.info("sender %d exited %s", self.process.pid, self.process.returncode)
        return self.process.returncode

    def kill_now(self) -> None:
        """Synchronously kill and reap the process if it still runs; never raises."""
        if self.process is None or self.process.returncode is not None:
            return
        pid = self.process.pid
        with contextlib.suppress(ProcessLookupError, ChildProcessError, OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        log.info("sender %d killed", pid)
