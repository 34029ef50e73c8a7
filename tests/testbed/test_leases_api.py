"""The testbed's leases API (R2lab's ``GET /leases``) over real HTTP, with curl
in the server namespace, and its ok/down/blackhole modes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from imaging_testbed import lifecycle
from imaging_testbed.leases import LEASES_PORT, parse_time

from .conftest import Testbed, started_testbed


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    with started_testbed(tmp_path_factory.mktemp("leases"), 1, cmc_only=True) as bed:
        yield bed


def lease(bed: Testbed, action: str, **params: str) -> dict[str, Any]:
    return asyncio.run(lifecycle.lease(bed.dir, action, params))


def get(bed: Testbed, timeout: float = 3.0, **query: str) -> Any:
    url = f"http://{bed.layout.server_ip}:{LEASES_PORT}/leases"
    if query:
        url += "?" + urlencode(query)
    result = bed.run("curl", "-sS", "-f", "-m", str(timeout), url, timeout=timeout + 5)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_parse_time() -> None:
    now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert parse_time("now", now) == now
    assert parse_time("+2h30m", now) == now + timedelta(hours=2, minutes=30)
    assert parse_time("-1h", now) == now - timedelta(hours=1)
    assert parse_time("2026-11-25T10:00:00", now) == now
    assert parse_time("2026-11-25T11:00:00+01:00", now) == now


def test_config_points_at_api(bed: Testbed) -> None:
    text = bed.config.read_text()
    assert "backend = none" in text
    assert f"url = http://{bed.layout.server_ip}:{LEASES_PORT}" in text


def test_leases_filtered_and_sorted(bed: Testbed) -> None:
    lease(bed, "clear")
    lease(bed, "add", slice="inria_b", **{"from": "2030-11-25T12:00:00", "until": "2030-11-25T13:00:00"})
    lease(bed, "add", slice="inria_a", **{"from": "2030-11-25T10:00:00+00:00",
                                          "until": "2030-11-25T11:00:00+00:00"})
    answer = lease(bed, "add", slice="inria_b", nodes="1-3", **{"from": "-1h", "until": "+1h"})
    assert len(answer["leases"]) == 3
    everything = get(bed)
    assert [x["id"] for x in everything] == [3, 2, 1]  # by t_from
    first = everything[1]
    assert first == {"id": 2, "resource_id": 1, "slice_id": 2, "slice_name": "inria_a",
                     "t_from": "2030-11-25T10:00:00+00:00", "t_until": "2030-11-25T11:00:00+00:00"}
    ids = {x["id"] for x in everything if x["slice_name"] == "inria_b"}
    assert ids == {1, 3} and all(x["slice_id"] == 1 for x in everything if x["slice_name"] == "inria_b")
    # after: those ending after it; before: those starting before it
    assert [x["id"] for x in get(bed, after="2030-11-25T11:00:00+00:00", before="2030-11-26T00:00:00+00:00")
            ] == [1]
    assert [x["id"] for x in get(bed, after="2030-11-25T10:30:00+00:00", before="2030-11-25T12:00:00+00:00")
            ] == [2]
    now = datetime.now(UTC)
    assert [x["id"] for x in get(bed, after=now.isoformat(), before="2030-01-01T00:00:00+00:00")] == [3]
    assert [x["id"] for x in get(bed, before="2030-11-25T10:00:00+00:00")] == [3]


def test_api_modes(bed: Testbed) -> None:
    url = f"http://{bed.layout.server_ip}:{LEASES_PORT}/leases"
    assert lease(bed, "api", mode="down")["mode"] == "down"
    started = time.monotonic()
    refused = bed.run("curl", "-sS", "-m", "5", url)
    assert refused.returncode == 7, refused.stderr  # couldn't connect
    assert time.monotonic() - started < 2
    lease(bed, "api", mode="blackhole")
    started = time.monotonic()
    dropped = bed.run("curl", "-sS", "-m", "2", url)
    assert dropped.returncode == 28, dropped.stderr  # timeout
    assert time.monotonic() - started >= 1.9
    lease(bed, "api", mode="ok")
    assert isinstance(get(bed), list)
    lease(bed, "api", mode="down")
    lease(bed, "api", mode="ok")
    assert isinstance(get(bed), list)


def test_clear(bed: Testbed) -> None:
    lease(bed, "add", slice="s", **{"from": "now", "until": "+10m"})
    assert get(bed)
    assert lease(bed, "clear")["leases"] == []
    assert get(bed) == []
    assert json.loads(Path(bed.layout.leases_path).read_text())["leases"] == []


def test_bad_requests(bed: Testbed) -> None:
    from imaging.errors import ImagingError
    with pytest.raises(ImagingError):
        lease(bed, "add", slice="s", **{"from": "+1h", "until": "now"})
    with pytest.raises(ImagingError):
        lease(bed, "api", mode="sideways")
    url = f"http://{bed.layout.server_ip}:{LEASES_PORT}/leases?after=yesterday"
    raw_plus = bed.run("curl", "-sS", "-f", f"{url.split('?')[0]}?after=2000-01-01T00:00:00+00:00")
    assert raw_plus.returncode == 0 and json.loads(raw_plus.stdout) == [], raw_plus.stderr  # '+' unencoded
    assert "400" in bed.run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url).stdout
