"""Run one shell command on a node's imaging OS over telnet.

The command is sent wrapped so its exit status comes back on a marker line
(``echo __IMAGING_STATUS=$?__``); output is read chunk by chunk and split on
``\\r`` and ``\\n`` (progress meters rewrite their line with ``\\r``), each line
handed to the caller, until the marker arrives.  Only then is ``exit`` sent.
The marker's regex wants digits, so the shell's echo of the command line
(which holds a literal ``$?``) never matches it.  A line still being written
(frisbee prints one ``.`` per chunk, a newline after 67) can be followed too,
as it grows (``on_partial``).
"""

from __future__ import annotations

import asyncio
import logging
import random
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
CONNECT_ATTEMPTS = 3  # connections tried by run() before the node is given up
BANNER_LINES = 8  # lines before the command's echo taken as banner and prompt; past that, as output


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
              on_line: Callable[[str], None] | None = None,
              on_partial: Callable[[str], None] | None = None) -> int:
    """Run ``command`` in the node's shell; return its exit status.

    Only the command's output reaches ``on_line``: the banner and prompt before the shell's echo of
    the command, and the echo itself, do not.  ``on_partial`` is given the output's last line while it
    has no end yet, each time it grows (the whole line then reaches ``on_line`` once it ends).  The
    connection is tried ``CONNECT_ATTEMPTS`` times (a lost SYN on a lossy link is not a failed node),
    each within ``connect_timeout``; NodeFailure when it cannot be made, or when the session breaks
    before the status came back.  The caller bounds the whole.
    """
    last: BaseException | None = None
    for attempt in range(CONNECT_ATTEMPTS):
        if attempt:
            await asyncio.sleep(settings.backoff * random.uniform(0.5, 1.5))
        try:
            reader, writer = await _open(host, settings)
            break
        except (OSError, TimeoutError) as exc:
            last = exc
            log.debug("%s: telnet connection attempt %d failed: %s", host, attempt + 1, describe(exc))
    else:
        raise NodeFailure(f"cannot open a telnet session to {host} ({describe(last)},"
                          f" {CONNECT_ATTEMPTS} attempts)")
    try:
        return await _session(reader, writer, host, command, on_line, on_partial)
    except (OSError, EOFError) as exc:
        raise NodeFailure(f"the telnet session to {host} broke ({describe(exc)})") from None


async def _attempt(host: str, command: str, settings: TelnetSettings) -> int:
    """One connection and one command; OSError, TimeoutError or EOFError as they come (for retries)."""
    reader, writer = await _open(host, settings)
    return await _session(reader, writer, host, command, None)


async def _session(reader: Any, writer: Any, host: str, command: str,
                   on_line: Callable[[str], None] | None,
                   on_partial: Callable[[str], None] | None = None) -> int:
    """Send the wrapped command on an open session, feed its output to ``on_line``, return its status."""
    echo = f"echo {MARKER}=$?__"
    before: list[str] | None = []  # what came before the shell echoed the command: banner, prompt
    try:
        writer.write(f"{command}; {echo}\n")
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
                    if before and on_line is not None:  # a shell that does not echo: all was output
                        for earlier in before:
                            on_line(earlier)
                    return int(found.group(1))
                if before is not None:
                    if echo in line:  # the command's echo: the banner and prompt are behind, output follows
                        log.debug("%s: before the command: %r", host, before)
                        before = None
                    elif line.strip():
                        before.append(line)
                    if before is not None and len(before) > BANNER_LINES:  # no echo seen: all is output
                        if on_line is not None:
                            for earlier in before:
                                on_line(earlier)
                        before = None
                elif line.strip() and on_line is not None:
                    on_line(line)
            if pending and before is None and on_partial is not None:
                on_partial(pending)
    finally:
        writer.close()


async def wait_until_up(host: str, settings: TelnetSettings, deadline: float) -> None:
    """Retry until the imaging OS runs a trivial command, or raise NodeFailure at the deadline."""
    async def attempt() -> None:
        status = await _attempt(host, "true", settings)
        if status != 0:
            raise EOFError(f"'true' exited {status}")

    try:
        await retry_until(attempt, deadline=deadline, backoff=settings.backoff, what=f"telnet {host}")
    except DeadlineExceeded as exc:
        raise NodeFailure(f"telnet not up ({describe(exc.last_error)})") from None
