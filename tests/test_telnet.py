"""The telnet client against a real busybox telnetd on loopback."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from imaging import telnet
from imaging.errors import NodeFailure

BUSYBOX = shutil.which("busybox")
pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox (Debian busybox-static) is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def telnetd() -> Iterator[telnet.TelnetSettings]:
    """busybox telnetd with a shell, on a loopback port."""
    port = free_port()
    server = subprocess.Popen([BUSYBOX, "telnetd", "-F", "-b", f"127.0.0.1:{port}", "-l", "/bin/sh"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield telnet.TelnetSettings(port=port, connect_timeout=1, backoff=0.1)
    server.terminate()
    server.wait(5)


async def test_exit_status_comes_back(telnetd: telnet.TelnetSettings) -> None:
    assert await telnet.run("127.0.0.1", "true", telnetd) == 0
    assert await telnet.run("127.0.0.1", "sh -c 'exit 7'", telnetd) == 7
    assert await telnet.run("127.0.0.1", "ls /no/such/file", telnetd) == 2


async def test_lines_split_on_carriage_returns(telnetd: telnet.TelnetSettings) -> None:
    lines: list[str] = []
    status = await telnet.run("127.0.0.1", r"printf 'bytes= 1 \rbytes= 2 \rdone\n'", telnetd, lines.append)
    assert status == 0
    tail = [line.strip().removeprefix("# ") for line in lines[-3:]]  # the shell's prompt may come first
    assert tail == ["bytes= 1", "bytes= 2", "done"]


async def test_many_sessions_at_once(telnetd: telnet.TelnetSettings) -> None:
    # busybox telnetd listens with a backlog of 1: SYNs beyond it are retransmitted after 1 s
    patient = telnet.TelnetSettings(port=telnetd.port, connect_timeout=5)
    statuses = await asyncio.gather(*(telnet.run("127.0.0.1", f"sh -c 'exit {n}'", patient) for n in range(8)))
    assert statuses == list(range(8))


async def test_wait_until_up(telnetd: telnet.TelnetSettings) -> None:
    loop = asyncio.get_running_loop()
    await telnet.wait_until_up("127.0.0.1", telnetd, loop.time() + 5)
    closed = telnet.TelnetSettings(port=free_port(), connect_timeout=1, backoff=0.1)
    start = loop.time()
    with pytest.raises(NodeFailure, match=r"telnet not up \(.*refused"):
        await telnet.wait_until_up("127.0.0.1", closed, loop.time() + 1)
    assert loop.time() - start < 1.5


async def test_output_holds_neither_banner_nor_echo(telnetd: telnet.TelnetSettings) -> None:
    """Item 5: the banner and the shell's echo of the command never reach the caller (they used to
    leak into failure reasons)."""
    lines: list[str] = []
    assert await telnet.run("127.0.0.1", "echo one; echo two >&2; sh -c 'exit 3'", telnetd, lines.append) == 3
    assert [line.strip().removeprefix("# ") for line in lines] == ["one", "two"]


async def test_unreachable_is_a_node_failure_after_some_attempts() -> None:
    """Item 5: a telnet connection that cannot be made (refused, or timed out on a lossy link) is
    tried again, then reported as a node failure, never as an unexpected error."""
    refused = telnet.TelnetSettings(port=free_port(), connect_timeout=0.5, backoff=0.05)
    with pytest.raises(NodeFailure, match=r"cannot open a telnet session to 127\.0\.0\.1 \(connection refused, 3 att"):
        await telnet.run("127.0.0.1", "true", refused)
    # a listener that never accepts and whose backlog is full: SYNs go unanswered, as on a lossy link
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        lossy = telnet.TelnetSettings(port=port, connect_timeout=0.3, backoff=0.05)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(NodeFailure, match=r"cannot open a telnet session to 127.0.0.1 \(.*3 attempts\)"):
            await telnet.run("127.0.0.1", "true", lossy)
        assert 0.9 - 0.1 < loop.time() - start < 3
        for filler in fillers:
            filler.close()


async def test_a_session_that_breaks_is_a_node_failure(telnetd: telnet.TelnetSettings) -> None:
    """Item 5: the shell going away before the status came back is a node failure naming it."""
    with pytest.raises(NodeFailure, match=r"the telnet session to 127\.0\.0\.1 broke"):
        await telnet.run("127.0.0.1", "kill -9 $$", telnetd)
