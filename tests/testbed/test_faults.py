"""End-to-end: every fault knob, set live, seen with real clients; each test clears its faults."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from imaging_testbed import images

from .conftest import Testbed

CURL_TIMEOUT = 28  # curl's exit code for "operation timed out"
CURL_REFUSED = 7


@pytest.fixture
def healthy(testbed: Testbed) -> Iterator[Testbed]:
    """The session testbed; every node's faults are cleared and booted to ssh afterwards."""
    yield testbed
    for number in range(1, testbed.layout.count + 1):
        testbed.fault(number, "clear")
        if testbed.status()[testbed.node(number).name].stage != "ssh":
            testbed.boot(number, imaging_os=False)


def test_cmc_blackhole_drops_packets(healthy: Testbed) -> None:
    assert healthy.fault(1, "cmc=blackhole") == ["cmc=blackhole"]
    assert healthy.cmc(1, "status", timeout=1).returncode == CURL_TIMEOUT
    assert healthy.cmc(2, "status").stdout.strip() == "on"
    healthy.fault(1, "cmc=ok")
    assert healthy.cmc(1, "status").stdout.strip() == "on"


def test_cmc_garbage_answers_no_protocol(healthy: Testbed) -> None:
    healthy.fault(1, "cmc=garbage")
    answer = healthy.cmc(1, "status")
    assert answer.returncode == 0 and answer.stdout.strip() not in ("on", "off", "ok", "")
    assert healthy.cmc(1, "off").stdout.strip() != "ok"
    assert healthy.status()["fit01"].power == "on"


def test_reset_ignored_keeps_the_node_running(healthy: Testbed) -> None:
    healthy.wait_stage(1, "ssh")
    healthy.fault(1, "reset=ignore")
    before = healthy.status()["fit01"]
    assert healthy.ssh(1, "sleep 77 >/dev/null 2>&1 &").returncode == 0
    assert healthy.cmc(1, "reset").stdout.strip() == "ok"
    assert healthy.status()["fit01"] == before
    assert "sleep 77" in healthy.ssh(1, "ps -eo args").stdout


def test_boot_never(healthy: Testbed) -> None:
    healthy.fault(1, "boot=never")
    assert healthy.cmc(1, "reset").stdout.strip() == "ok"
    status = healthy.wait_stage(1, "hung")
    assert status.power == "on" and status.boot == "none"
    assert not healthy.port_open(1, 22) and not healthy.port_open(1, 23)


def test_boot_slow(healthy: Testbed) -> None:
    healthy.fault(1, "boot=slow:1.5")
    assert healthy.cmc(1, "reset").stdout.strip() == "ok"
    status = healthy.wait_stage(1, "ssh")
    assert status.boot_seconds is not None and status.boot_seconds >= 1.5


def test_telnet_hang(healthy: Testbed) -> None:
    healthy.fault(2, "telnet=hang")
    healthy.boot(2, imaging_os=True)
    assert healthy.port_open(2, 23)  # the connection is accepted…
    assert healthy.telnet(2, "true", timeout=2).returncode == 124  # …and never answered


def test_ssh_never(healthy: Testbed) -> None:
    healthy.fault(3, "ssh=never")
    healthy.set_next_boot(3, imaging_os=False)
    assert healthy.cmc(3, "reset").stdout.strip() == "ok"
    status = healthy.wait_stage(3, "no-ssh")
    assert status.power == "on" and status.boot == "none"
    assert not healthy.port_open(3, 22)


def test_loss_on_the_link(healthy: Testbed) -> None:
    healthy.fault(3, "loss=100%")
    assert healthy.run("busybox", "ping", "-c", "2", "-W", "1", healthy.node(3).control_ip).returncode != 0
    healthy.fault(3, "loss=0%")
    assert healthy.run("busybox", "ping", "-c", "1", "-W", "1", healthy.node(3).control_ip).returncode == 0


def test_receiver_dies_after_k_bytes(healthy: Testbed) -> None:
    image = asyncio.run(images.make_image("die", healthy.dir / "tmp-images", 8, random_fill=True))
    healthy.fault(2, "receiver=die:1000000")
    healthy.boot(2, imaging_os=True)
    receiver = healthy.telnet_popen(2, "udp-receiver --nokbd --portbase 10010 --file /dev/sda", 20)
    sender = healthy.popen("udp-sender", "--file", str(image.path), "--nokbd", "--min-receivers", "1",
                           "--max-wait", "5", "--rexmit-hello-interval", "100", "--retries-until-drop", "8",
                           "--portbase", "10010", "--interface", "br0")
    out, _ = receiver.communicate(timeout=30)
    sender.kill()
    sender.wait()
    assert receiver.returncode == 137, out
    assert "killed by fault receiver=die" in out


def test_small_disk(healthy: Testbed) -> None:
    disk = healthy.disk(4)
    size = disk.stat().st_size
    try:
        healthy.fault(4, "disk=small:4")
        healthy.boot(4, imaging_os=True)
        assert disk.stat().st_size == 4 << 20
        # past the file system (the first MiB), so that the node still boots afterwards
        full = healthy.telnet(4, "dd if=/dev/zero of=/dev/sda bs=1M seek=3 count=2 conv=notrunc")
        assert full.returncode != 0 and "No space left on device" in full.stdout
        assert healthy.telnet(4, "dd if=/dev/zero of=/dev/sda bs=1M seek=2 count=2 conv=notrunc"
                                 ).returncode == 0
    finally:
        with open(disk, "r+b") as handle:
            handle.truncate(size)
