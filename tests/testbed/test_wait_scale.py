"""``imaging-wait`` on 16 emulated nodes already up is not serial: the time it reports for each node does
not grow with the node's position in the list (a client that logged in one node after the other would give
the k-th node k times the first one's time).  Real dropbear on every node, the product's real command."""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import pytest

from tests.testbed.conftest import Testbed, started_testbed
from tests.testbed.product import product

NODES = 16


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """16 nodes, all booted to ssh."""
    with started_testbed(tmp_path_factory.mktemp("waitbed"), NODES) as testbed:
        testbed.wait_all("ssh", timeout=60)
        yield testbed


def seconds_by_position(bed: Testbed, spec: str) -> list[float]:
    """The seconds ``imaging-wait --json`` reports for each node, in the nodes' order; every node up."""
    run = product(bed, "wait", "--json", "-t", "20", spec)
    assert run.code == 0, run.out + run.err
    results = {r["node"]: r for r in run.json_lines()}
    assert all(r["ok"] and r["detail"] == "ssh up" for r in results.values()), results
    return [results[name]["seconds"] for name in sorted(results)]


def test_wait_on_16_nodes_is_not_serial(bed: Testbed) -> None:
    alone = seconds_by_position(bed, "1")[0]
    for _ in range(2):  # twice: a fluke must not pass it
        times = seconds_by_position(bed, f"1-{NODES}")
        assert len(times) == NODES
        first, last = times[: NODES // 2], times[NODES // 2:]
        # serial: max/min about 16 and the second half about 3 times the first; at once: both about 1
        assert max(times) < 3 * min(times), (alone, times)
        assert statistics.mean(last) < 1.5 * statistics.mean(first), (alone, times)
