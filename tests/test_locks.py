"""Cross-process locks: node locks naming their holder, session slots, release on death."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imaging.locks import LockBusy, LockSet


async def test_node_locks_all_or_nothing_and_holder_named(tmp_path: Path) -> None:
    first, second, third = LockSet(), LockSet(), LockSet()
    await first.lock_nodes(tmp_path, ["fit03"])
    # the busy node sorts last: fit01 and fit02 are taken before the refusal, and must be given back
    with pytest.raises(LockBusy, match=r"fit03 is busy: .* by .* \(pid \d+\) since \d\d:\d\d:\d\d; wait"):
        await second.lock_nodes(tmp_path, ["fit03", "fit02", "fit01"])
    await third.lock_nodes(tmp_path, ["fit01", "fit02"])  # the failed attempt left neither locked
    third.release()
    first.release()
    await second.lock_nodes(tmp_path, ["fit01", "fit02", "fit03"])
    second.release()


async def test_wait_lock_waits_for_the_holder(tmp_path: Path) -> None:
    first, second = LockSet(), LockSet()
    await first.lock_nodes(tmp_path, ["fit05"])
    asyncio.get_running_loop().call_later(0.3, first.release)
    start = time.monotonic()
    await second.lock_nodes(tmp_path, ["fit05"], wait=5)
    assert 0.25 < time.monotonic() - start < 2
    second.release()


async def test_killed_holder_frees_its_locks(tmp_path: Path) -> None:
    code = ("import asyncio, pathlib, time; from imaging.locks import LockSet\n"
            "held = LockSet()\n"
            f"asyncio.run(held.lock_nodes(pathlib.Path({str(tmp_path)!r}), ['fit07']))\n"
            "print('locked', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "locked"
    with pytest.raises(LockBusy, match=r"fit07 is busy: -c by"):
        await LockSet().lock_nodes(tmp_path, ["fit07"])
    child.kill()
    child.wait()
    mine = LockSet()
    await mine.lock_nodes(tmp_path, ["fit07"])
    mine.release()


def test_session_slots_are_distinct(tmp_path: Path) -> None:
    a, b, c = LockSet(), LockSet(), LockSet()
    assert a.take_slot(tmp_path, 2) == 1
    assert b.take_slot(tmp_path, 2) == 2
    with pytest.raises(LockBusy, match="all 2 multicast sessions are in use"):
        c.take_slot(tmp_path, 2)
    a.release()
    assert c.take_slot(tmp_path, 2) == 1
    b.release()
    c.release()
