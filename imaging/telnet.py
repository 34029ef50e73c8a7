"""Run one shell command on a node's imaging OS over telnet.

The command is sent wrapped so its exit status comes back on a marker line
(``echo __IMAGING_STATUS=$?__``); output is read chunk by chunk and split on
``\\r`` and ``\\n`` (progress meters rewrite their line with ``\\r``), each line
handed to the caller, until the marker arrives.  Only then is ``exit`` sent.
The marker's regex wants digits, so the shell's echo of the command line
(which holds a literal ``$?``) never matches it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import NodeFailure
from .retry import DeadlineExceeded, describe, retry_until

log = logging.getLogger(__name__)
MARKER = "__IMAGING_STATUS"
MARKER_RE = re.compile(MARKER + r"=(\d+)__")
LINE_SPLIT = re.compile(r"[\r\n]")


@dataclass(frozen=True)
class TelnetSettings:
    """How to reach the imaging OS."""

    port: int = 23
    connect_timeout: float = 3.0
    backoff: float = 1.0


async def _open(host: str, settings: TelnetSettings) -> tuple[Any, Any]:
    import telnetlib3
    return await telnetlib3.open_connection(
        host, settings.port, client_factory=telnetlib3.TelnetClient, connect_minwait=0,
        connect_maxwait=0.5, connect_timeout=settings.connect_timeout, encoding="utf8",
        encoding_errors="replace")


async def run(host: str, command: str, settings: TelnetSettings,
              on_line: Callable[[str], None] | None = None) -> int:
    """Run ``command`` in the node's shell; return its exit status.

    Raises OSError/TimeoutError when the connection fails, EOFError when the
    session ends before the status came back.  The caller bounds the wait.
    """
    reader, writer = await _open(host, settings)
    try:
        writer.write(f"{command}; echo {MARKER}=$?__\n")
        pending = ""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                raise EOFError("the telnet session ended before the command's status came back")
            pending += chunk
            *lines, pending = LINE_SPLIT.split(pending)
            for line in lines:
                found = MARKER_RE.search(line)
                if found:
                    writer.write("exit\n")
                    return int(found.group(1))
                if line.strip() and on_line is not None:
                    on_line(line)
    finally:
        writer.close()


async def wait_until_up(host: str, settings: TelnetSettings, deadline: float) -> None:
    """Retry until the imaging OS runs a trivial command, or raise NodeFailure at the deadline."""
    async def attempt() -> None:
        status = await run(host, "true", settings)
        if status != 0:
            raise EOFError(f"'true' exited {status}")

    try:
        await retry_until(attempt, deadline=deadline, backoff=settings.backoff, what=f"telnet {host}")
    except DeadlineExceeded as exc:
        raise NodeFailure(f"telnet not up ({describe(exc.last_error)})") from None
