"""Per-node concurrency and retries: isolation of failures, deadlines, backoff."""

from __future__ import annotations

import asyncio

import pytest

from imaging.errors import NodeFailure
from imaging.inventory import Interface, Node
from imaging.jobs.pernode import for_each_node
from imaging.retry import DeadlineExceeded, describe, retry_until


def node(number: int) -> Node:
    return Node(number, Interface(f"reboot{number:02d}", f"127.0.1.{number}", f"02:00:00:01:00:{number:02x}"),
                Interface(f"fit{number:02d}", f"127.0.3.{number}", f"02:00:00:03:00:{number:02x}"))


async def test_failures_are_isolated_and_deadlines_per_node() -> None:
    async def work(n: Node) -> str:
        if n.number == 2:
            raise NodeFailure("broken")
        if n.number == 3:
            await asyncio.sleep(60)
        if n.number == 4:
            raise RuntimeError("bug")
        return "fine"

    loop = asyncio.get_running_loop()
    start = loop.time()
    results = {r.node.number: r async for r in for_each_node([node(i) for i in range(1, 5)], work, 0.5)}
    assert loop.time() - start < 1.0
    assert results[1].ok and results[1].detail == "fine"
    assert (results[2].ok, results[2].detail) == (False, "broken")
    assert (results[3].ok, results[3].detail) == (False, "timeout after 0.5s")
    assert not results[4].ok and "RuntimeError: bug" in results[4].detail


async def test_results_stream_in_completion_order() -> None:
    async def work(n: Node) -> str:
        await asyncio.sleep(0.05 * (4 - n.number))
        return str(n.number)

    order = [r.detail async for r in for_each_node([node(i) for i in (1, 2, 3)], work, 2)]
    assert order == ["3", "2", "1"]


async def test_retry_until_succeeds_after_failures() -> None:
    calls = []

    async def attempt() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError()
        return "up"

    loop = asyncio.get_running_loop()
    assert await retry_until(attempt, deadline=loop.time() + 5, backoff=0.01) == "up"
    assert len(calls) == 3


async def test_retry_until_stops_at_the_deadline_even_inside_an_attempt() -> None:
    async def hangs() -> None:
        await asyncio.sleep(60)

    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(DeadlineExceeded):
        await retry_until(hangs, deadline=loop.time() + 0.3, backoff=0.05)
    assert loop.time() - start < 0.6


def test_describe() -> None:
    assert describe(ConnectionRefusedError()) == "connection refused"
    assert describe(TimeoutError()) == "timed out"
    assert describe(None) == "no answer"
    assert describe(OSError("no route\nmore")) == "no route"
