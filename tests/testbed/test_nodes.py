"""End-to-end: CMCs with curl, booting the imaging OS (telnet) and the disk (ssh).

Node 1 is used for the CMC power tests, node 2 for the imaging OS, node 3
for the installed OS; each test leaves its node booted to ssh.
"""

from __future__ import annotations

import os
from pathlib import Path

from imaging_testbed import loopdev

from .conftest import Testbed


def test_cmc_power_transitions(testbed: Testbed) -> None:
    assert testbed.cmc(1, "status").stdout == "on\n"
    assert testbed.cmc(1, "off").stdout.strip() == "ok"
    assert testbed.cmc(1, "status").stdout.strip() == "off"
    assert testbed.status()["fit01"].stage == "off"
    assert not testbed.port_open(1, 22)
    # reset of an off node does nothing, like the hardware
    assert testbed.cmc(1, "reset").stdout.strip() == "ok"
    assert testbed.cmc(1, "status").stdout.strip() == "off"
    assert testbed.status()["fit01"].stage == "off"
    assert testbed.cmc(1, "on").stdout.strip() == "ok"
    assert testbed.cmc(1, "status").stdout.strip() == "on"
    first = testbed.wait_stage(1, "ssh")
    # on of an on node does nothing: no reboot
    assert testbed.cmc(1, "on").stdout.strip() == "ok"
    assert testbed.status()["fit01"] == first
    assert "fit01" in testbed.cmc(1, "info").stdout
    assert testbed.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                       f"http://{testbed.node(1).cmc_ip}/nonsense").stdout == "404"


def test_reset_kills_and_reboots(testbed: Testbed) -> None:
    console = testbed.layout.console_log(testbed.node(1))
    boots = console.read_text().count("firmware starts")
    assert testbed.ssh(1, "sleep 60 >/dev/null 2>&1 & echo started").stdout.strip() == "started"
    assert testbed.cmc(1, "reset").stdout.strip() == "ok"
    # no port probe here: with a 0.3 s boot delay the node may already serve ssh again
    assert testbed.status()["fit01"].stage in ("waiting", "dhcp", "tftp", "ssh")
    testbed.wait_stage(1, "ssh")
    assert console.read_text().count("firmware starts") == boots + 1, "one new boot"
    assert "sleep 60" not in testbed.ssh(1, "ps -eo args").stdout, "the reset killed what the node ran"


def test_imaging_os_serves_telnet_with_the_disk_file(testbed: Testbed) -> None:
    status = testbed.boot(2, imaging_os=True)
    assert status.boot == "telnet" and status.power == "on"
    assert not testbed.port_open(2, 22)
    disk = testbed.disk(2)
    [loop] = loopdev.attached_to(disk)  # the disk is a loop device of the disk file
    device = testbed.telnet(2, "[ -b /dev/sda ] && stat -c 'device=%Hr:%Lr' /dev/sda && blockdev --getsize64 /dev/sda")
    assert device.returncode == 0, device
    assert f"device={Path(f'/sys/block/{loop}/dev').read_text().strip()}" in device.stdout
    assert str(disk.stat().st_size) in device.stdout
    payload = os.urandom(8).hex()
    wrote = testbed.telnet(2, f"printf {payload} | dd of=/dev/sda bs=512 seek=4096 conv=notrunc,fsync"
                              " && which udp-receiver nc zstd")
    assert wrote.returncode == 0, wrote
    assert "/udp-receiver" in wrote.stdout and "/zstd" in wrote.stdout
    with open(disk, "rb") as handle:
        handle.seek(4096 * 512)
        assert handle.read(16).decode() == payload
    assert testbed.telnet(2, "false").returncode == 1
    # the product restores the symlink at once; the node keeps its imaging OS until reset
    testbed.set_next_boot(2, imaging_os=False)
    assert testbed.telnet(2, "hostname").stdout.strip().endswith("fit02")
    testbed.boot(2, imaging_os=False)
    assert testbed.telnet(2, "true", timeout=2).returncode != 0


def test_local_boot_serves_ssh_with_the_disk_identity(testbed: Testbed) -> None:
    testbed.boot(3, imaging_os=False)
    answer = testbed.ssh(3, "cat /etc/imaging-image")
    assert answer.returncode == 0, answer
    assert answer.stdout.startswith("imaging-test-image factory-fit03 ")
    assert not testbed.port_open(3, 23)
    assert testbed.ssh(3, "hostname").stdout.strip() == "fit03"


def test_node_sees_a_private_etc(testbed: Testbed) -> None:
    answer = testbed.ssh(3, "echo scribble > /etc/hosts && cat /etc/hosts && grep ' /etc ' /proc/mounts")
    assert answer.returncode == 0 and answer.stdout.startswith("scribble") and "overlay" in answer.stdout
    with open("/etc/hosts") as hosts:
        assert "scribble" not in hosts.read()


def test_a_loaded_image_boots_with_its_identity(testbed: Testbed) -> None:
    """Write an image into the disk over telnet and nc (as a load would), then boot it."""
    testbed.boot(2, imaging_os=True)
    sender = testbed.serve_once(testbed.dir / "images" / "default.img.zst", 10500)
    got = testbed.telnet(2, f"nc -d {testbed.layout.server_ip} 10500 | zstd -dc > /dev/sda; echo rc=$?")
    sender.wait(timeout=10)
    assert "rc=0" in got.stdout, got
    testbed.boot(2, imaging_os=False)
    identity = testbed.ssh(2, "cat /etc/imaging-image").stdout.strip()
    assert identity.startswith("imaging-test-image default ")


def test_empty_disk_never_comes_up(testbed: Testbed) -> None:
    testbed.boot(4, imaging_os=True)
    assert testbed.telnet(4, "dd if=/dev/zero of=/dev/sda bs=1M count=2 conv=notrunc").returncode == 0
    testbed.set_next_boot(4, imaging_os=False)
    assert testbed.cmc(4, "reset").stdout.strip() == "ok"
    status = testbed.wait_stage(4, "no-os")
    assert status.boot == "none" and status.power == "on"
    assert not testbed.port_open(4, 22) and not testbed.port_open(4, 23)
    # put a factory image back for the other tests
    testbed.boot(4, imaging_os=True)
    sender = testbed.serve_once(testbed.dir / "images" / "default.img.zst", 10501)
    assert "rc=0" in testbed.telnet(4, f"nc -d {testbed.layout.server_ip} 10501 | zstd -dc > /dev/sda;"
                                       " echo rc=$?").stdout
    sender.wait(timeout=10)
    testbed.boot(4, imaging_os=False)


def test_a_disk_that_is_not_a_regular_file_is_refused(testbed: Testbed) -> None:
    disk = testbed.disk(4)
    aside = disk.with_suffix(".aside")
    disk.rename(aside)
    try:
        disk.symlink_to("/dev/zero")
        assert testbed.cmc(4, "reset").stdout.strip() == "ok"
        status = testbed.wait_stage(4, "disk-refused")
        assert status.boot == "none"
    finally:
        disk.unlink()
        aside.rename(disk)
    testbed.boot(4, imaging_os=False)
