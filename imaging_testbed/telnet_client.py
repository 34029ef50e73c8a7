"""A minimal telnet client for tests and benchmarks (telnetlib3), run inside the server namespace, apart
from the product's own (:mod:`imaging.telnet`).

``python -m imaging_testbed.telnet_client HOST COMMAND [TIMEOUT]`` runs COMMAND in the node's
shell, prints its output and exits with its status; 124 when the node does
not answer within TIMEOUT seconds (default 10), 111 when the connection is refused.
"""

from __future__ import annotations

import asyncio
import re
import sys
from typing import Any

import telnetlib3

MARKER = re.compile(r"__STATUS=(\d+)__")


async def run(host: str, command: str, timeout: float) -> int:
    """Run ``command`` on ``host``; its exit status."""
    connection: tuple[Any, Any] = await asyncio.wait_for(telnetlib3.open_connection(  # text streams (utf8)
        host, 23, connect_minwait=0, connect_maxwait=0.5, client_factory=telnetlib3.TelnetClient),
        timeout)
    reader, writer = connection
    writer.write(command + "; echo __STATUS=$?__\r\n")
    output = ""
    async with asyncio.timeout(timeout):
        while not (found := MARKER.search(output)):
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError("connection closed before the status marker")
            output += chunk
    writer.write("exit\r\n")
    writer.close()
    # drop the echoed command line (it holds the marker with a literal $?)
    lines = [line for line in output[:found.start()].splitlines() if "__STATUS=$?__" not in line]
    sys.stdout.write("\n".join(lines).strip("# \r\n") + "\n")
    return int(found.group(1))


def main() -> int:
    """Entry point."""
    host, command = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    try:
        return asyncio.run(run(host, command, timeout))
    except TimeoutError:
        print("telnet: no answer", file=sys.stderr)
        return 124
    except ConnectionRefusedError:
        print("telnet: connection refused", file=sys.stderr)
        return 111


if __name__ == "__main__":
    sys.exit(main())
