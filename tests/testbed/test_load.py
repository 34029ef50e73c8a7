"""imaging-load end to end on the emulated testbed, with real udp-sender and
udp-receiver: bytes on the disks, the final boot, failures of single nodes,
interruptions at every phase, and concurrent loads."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging_testbed.images import TestImage, make_image, sha256_file
from tests.testbed.conftest import Testbed, started_testbed
from tests.testbed.product import BIN, product

NODES = 8


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A testbed of 8 nodes with 80 MiB disks, for this module."""
    with started_testbed(tmp_path_factory.mktemp("loadbed"), NODES, disk_mib=80) as testbed:
        yield testbed


@pytest.fixture(scope="module")
def image64(bed: Testbed) -> TestImage:
    """A 64 MiB image (random content, so it does not compress), zstd-compressed."""
    return asyncio.run(make_image("load64", bed.dir / "images", size_mib=64, compressed=True, random_fill=True))


@pytest.fixture(scope="module")
def image16(bed: Testbed) -> TestImage:
    """A 16 MiB raw image."""
    return asyncio.run(make_image("load16", bed.dir / "images", size_mib=16, random_fill=True))


@pytest.fixture(autouse=True)
def healthy(bed: Testbed) -> Iterator[None]:
    """Every test starts and ends with healthy nodes."""
    yield
    for number in range(1, NODES + 1):
        bed.fault(number, "clear")


def links(bed: Testbed) -> list[str]:
    """The per-MAC next-boot links left in the pxelinux folder."""
    return sorted(p.name for p in (bed.dir / "tftp" / "pxelinux.cfg").glob("01-*"))


def senders(bed: Testbed) -> list[str]:
    """udp-sender processes serving this testbed's images."""
    found = subprocess.run(["pgrep", "-af", "udp-sender"], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if str(bed.dir) in line]


def disk_holds(bed: Testbed, number: int, image: TestImage) -> bool:
    """The node's disk starts with the image's (decompressed) bytes."""
    return sha256_file(bed.disk(number), limit=image.raw_size) == image.raw_sha256


def test_load_eight_nodes_end_to_end(bed: Testbed, image64: TestImage) -> None:
    run = product(bed, "load", "-i", "load64", "-a", "-t", "90")
    assert run.code == 0, run.out + run.err
    assert "8 ok, 0 failed" in run.out
    for number in range(1, NODES + 1):
        assert disk_holds(bed, number, image64), f"fit0{number}'s disk"
    assert links(bed) == []
    assert senders(bed) == []
    assert product(bed, "wait", "-a", "-t", "30").code == 0
    for number in (1, 5, 8):
        assert bed.ssh(number, "cat /etc/imaging-image").stdout.strip() == image64.identity
    logs = sorted((bed.dir / "transport-logs").glob("*/fit03.log"))
    assert "Transfer complete" in logs[-1].read_text()


def test_one_node_failing_three_ways_does_not_stop_the_others(bed: Testbed, image16: TestImage) -> None:
    bed.fault(2, "cmc=blackhole")
    bed.fault(3, "boot=never")
    bed.fault(4, "receiver=die:4194304")
    run = product(bed, "load", "-i", "load16", "--json", "-t", "40", "1-5")
    assert run.code == 1
    summary = {r["node"]: r for r in run.json_lines()[-1]["summary"]}
    assert summary["fit01"]["ok"] and summary["fit05"]["ok"]
    assert disk_holds(bed, 1, image16) and disk_holds(bed, 5, image16)
    reasons = {name: summary[name]["detail"] for name in ("fit02", "fit03", "fit04")}
    assert reasons["fit02"] == bed.unreachable(2)
    assert reasons["fit03"].startswith("imaging OS not up within boot_timeout 10s (telnet not up")
    assert reasons["fit04"].startswith("receiver killed by signal 9 (log ")
    assert run.json_lines()[-1]["retry"] == "imaging-load -i load16.img -t 40 2-4"
    assert run.seconds < 40 + 2 + 1
    assert links(bed) == [] and senders(bed) == []


def test_disk_too_small_is_refused_before_writing(bed: Testbed, image16: TestImage) -> None:
    bed.fault(6, "disk=small:8")
    run = product(bed, "load", "-i", "load16", "-t", "30", "6-7")
    assert run.code == 1
    assert "fit06  FAILED" in run.out
    assert "disk too small: fit06 has 8.0 MiB, the image needs 16.0 MiB" in run.out
    assert disk_holds(bed, 7, image16), run.out


def boots(bed: Testbed, number: int) -> int:
    """How many times the node's firmware started, from its console."""
    return bed.layout.console_log(bed.node(number)).read_text().count("firmware starts")


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "no-reset"])
def test_failed_nodes_boot_their_disk_and_missing_programs_are_named(bed: Testbed, image16: TestImage,
                                                                     tmp_path: Path, reset: bool) -> None:
    """Item 2: a receiver the imaging OS does not have is named at once (not a failure half-way);
    item 6: a node that failed in the imaging OS is reset to boot its disk, unless -n, and says so."""
    extra = tmp_path / "no-receiver.conf"
    extra.write_text("[udpcast]\nreceiver = no-such-receiver\n")
    before = {number: boots(bed, number) for number in (6, 7)}
    run = product(bed, "load", "--config", str(extra), "-i", "load16", "--json", "-t", "30",
                  *([] if reset else ["-n"]), "6-7")
    assert run.code == 1, run.out + run.err
    summary = {r["node"]: r["detail"] for r in run.json_lines()[-1]["summary"]}
    after = "reset to boot its disk" if reset else "left in the imaging OS (-n)"
    for host in ("fit06", "fit07"):
        assert summary[host] == f"the imaging OS of {host} has no no-such-receiver: install it there, or set its" \
                                f" path in [udpcast]; {after}", summary
    assert run.seconds < 15
    assert links(bed) == [] and senders(bed) == []
    deadline = time.monotonic() + 5
    while reset and any(boots(bed, n) < before[n] + 2 for n in (6, 7)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {n: boots(bed, n) - before[n] for n in (6, 7)} == {6: 2 if reset else 1, 7: 2 if reset else 1}
    assert run.json_lines()[-1]["retry"] == f"imaging-load --config {extra} -i load16.img -t 30" \
                                            f"{'' if reset else ' -n'} 6-7"


def follow(bed: Testbed, *args: str) -> subprocess.Popen[str]:
    """Start imaging-load with --json, its events readable line by line."""
    return bed.popen(str(BIN / "imaging-load"), "--json", *args)


def wait_for_phase(process: subprocess.Popen[str], phase: str, timeout: float = 30) -> None:
    """Read events until one reaches ``phase``."""
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("{") and json.loads(line).get("phase") == phase:
            return
        assert time.monotonic() < deadline, f"no {phase} event"
    raise AssertionError(f"the load ended before {phase}")


@pytest.mark.parametrize(("number", "times"), [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGINT, 3)],
                         ids=["SIGINT", "SIGTERM", "SIGINT-thrice"])
@pytest.mark.parametrize("phase", ["resetting", "booting", "receiving"])
def test_interruption_restores_links_and_stops_senders(bed: Testbed, image64: TestImage, phase: str,
                                                       number: signal.Signals, times: int) -> None:
    """Item 1 of the hostile-user list too: Ctrl-C pressed again while the first one is being handled
    neither cuts the cleanup short nor prints asyncio's complaints (unknown child, closed loop)."""
    if phase == "booting":
        bed.fault(7, "boot=slow:5")
    process = follow(bed, "-i", "load64", "-b", "20", "-t", "60", "7-8")
    wait_for_phase(process, phase)
    time.sleep(0.3)
    for _ in range(times):
        process.send_signal(number)
        time.sleep(0.05)
    out, err = process.communicate(timeout=15)
    assert process.returncode == (130 if number == signal.SIGINT else 1), err
    assert not any(word in err for word in ("Traceback", "Unknown child", "is closed", "Exception")), err
    assert json.loads(out.splitlines()[-1])["ok"] is False
    assert links(bed) == []
    assert senders(bed) == []


def test_concurrent_loads(bed: Testbed, image16: TestImage) -> None:
    first = follow(bed, "-i", "load16", "-b", "50", "-t", "60", "1-2")
    second = follow(bed, "-i", "load16", "-b", "50", "-t", "60", "3-4")
    wait_for_phase(first, "resetting")
    overlapping = product(bed, "load", "-i", "load16", "-t", "30", "2-3")
    assert overlapping.code == 1
    assert "is busy: imaging-load" in overlapping.err and "(pid " in overlapping.err
    reset = product(bed, "reset", "1")
    assert reset.code == 1 and reset.err.startswith("imaging-reset: error: fit01 is busy: imaging-load")
    assert product(bed, "status", "1").code == 0  # reading needs no lock
    for process in (first, second):
        process.communicate(timeout=60)
        assert process.returncode == 0
    for number in (1, 2, 3, 4):
        assert disk_holds(bed, number, image16)
    capped = f"--max-bitrate {50 * 2**20} "  # only these two loads ran at 50 Mibps
    used = [line for log in (bed.dir / "transport-logs").glob("*/sender-*.log")
            for line in log.read_text().splitlines()[:1] if capped in line]
    assert len(used) == 2
    groups = {line.split("--mcast-data-address ")[1].split()[0] for line in used}
    ports = {line.split("--portbase ")[1].split()[0] for line in used}
    assert len(groups) == 2 and len(ports) == 2
