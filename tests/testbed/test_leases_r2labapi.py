"""The r2labapi leases backend over real HTTP, against the emulated testbed's
leases API (R2lab's ``GET /leases`` subset): allowed with a current lease,
refused without one (naming the holder and times), refused when the API is down
or black-holed (within the timeout, never a hang), privileged logins allowed."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging_testbed import lifecycle
from tests.testbed.conftest import Testbed, started_testbed
from tests.testbed.product import product

ME = getpass.getuser()


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """Two nodes; the config below switches the product to the r2labapi backend."""
    with started_testbed(tmp_path_factory.mktemp("leasebed"), 2) as testbed:
        yield testbed


@pytest.fixture
def leased(bed: Testbed) -> Iterator[Path]:
    """A config: backend r2labapi at the testbed's API, nobody privileged, 2 s timeout."""
    conf = bed.dir / "r2labapi.conf"
    conf.write_text("[leases]\nbackend = r2labapi\nprivileged = nobody-at-all\ntimeout = 2\n")
    yield conf
    asyncio.run(lifecycle.lease(bed.dir, "clear"))
    asyncio.run(lifecycle.lease(bed.dir, "api", {"mode": "ok"}))


def add(bed: Testbed, slice_: str, start: str, end: str) -> None:
    asyncio.run(lifecycle.lease(bed.dir, "add", {"slice": slice_, "from": start, "until": end}))


def test_current_lease_allows(bed: Testbed, leased: Path) -> None:
    add(bed, ME, "-10m", "+1h")
    assert product(bed, "main", "leases", "--config", str(leased), "--check").code == 0
    run = product(bed, "off", "--config", str(leased), "2")
    assert run.code == 0 and run.out == "fit02: ok\n"
    assert product(bed, "on", "--config", str(leased), "2").code == 0


def test_refusal_names_holder_and_times(bed: Testbed, leased: Path) -> None:
    add(bed, "someone-else", "-10m", "+1h")
    add(bed, ME, "+2h", "+3h")
    run = product(bed, "reset", "--config", str(leased), "1")
    assert run.code == 1
    assert run.err.startswith("imaging-reset: error: no lease: the testbed is booked by someone-else until ")
    assert "; your next lease starts " in run.err and run.err.count("\n") == 1
    listing = product(bed, "main", "leases", "--config", str(leased))
    assert "* someone-else" in listing.out and f"  {ME}" in listing.out
    assert product(bed, "status", "--config", str(leased), "1").code == 0  # reading needs no lease


@pytest.mark.parametrize(("mode", "words", "within"), [("down", "connection refused", 1.5),
                                                       ("blackhole", "timeout 2s", 2 + 1.5)])
def test_unreachable_api_fails_closed(bed: Testbed, leased: Path, mode: str, words: str, within: float) -> None:
    add(bed, ME, "-10m", "+1h")
    asyncio.run(lifecycle.lease(bed.dir, "api", {"mode": mode}))
    run = product(bed, "off", "--config", str(leased), "1")
    assert run.code == 1
    assert run.err.startswith("imaging-off: error: cannot verify the leases at http://") and words in run.err
    assert run.seconds < within + 1  # plus the interpreter's start
    assert product(bed, "status", "--config", str(leased), "1").out == "fit01: on\n"  # nothing changed


def test_privileged_login_needs_no_lease(bed: Testbed, leased: Path) -> None:
    asyncio.run(lifecycle.lease(bed.dir, "api", {"mode": "down"}))
    privileged = bed.dir / "privileged.conf"
    privileged.write_text(f"[leases]\nbackend = r2labapi\nprivileged = {ME}\n")
    assert product(bed, "reset", "--config", str(privileged), "2").code == 0
