"""The power commands and imaging-wait against the emulated testbed: real HTTP
CMCs, real busybox telnetd, real dropbear; every fault knob's verdict."""

from __future__ import annotations

import sys

import pytest

from tests.testbed.conftest import NODES, Testbed
from tests.testbed.product import product


@pytest.fixture
def bed(restored: Testbed) -> Testbed:
    """The session testbed, its nodes put back to health and ssh afterwards."""
    return restored


def test_status_on_off_info(bed: Testbed) -> None:
    run = product(bed, "status", "-a")
    assert run.code == 0
    assert run.lines() == {f"fit0{n}": "on" for n in range(1, NODES + 1)}
    assert product(bed, "off", "2").lines() == {"fit02": "ok"}
    assert product(bed, "status", "2", "--json").json_lines()[0] | {"seconds": 0} == {
        "node": "fit02", "ok": True, "detail": "off", "seconds": 0}
    assert not bed.port_open(2, 22)
    assert product(bed, "on", "2").code == 0
    bed.wait_stage(2, "ssh")
    info = product(bed, "info", "1")
    assert info.code == 0 and info.lines()["fit01"]


def test_reset_boots_what_the_symlink_says(bed: Testbed) -> None:
    bed.set_next_boot(1, True)
    run = product(bed, "reset", "1")
    assert run.code == 0 and run.lines() == {"fit01": "reset"}
    up = product(bed, "wait", "--telnet", "-t", "15", "1")
    assert up.code == 0 and up.lines()["fit01"].startswith("telnet up")
    assert not bed.port_open(1, 22)
    bed.set_next_boot(1, False)
    assert product(bed, "reset", "1").code == 0
    up = product(bed, "wait", "-t", "15", "1")
    assert up.code == 0 and up.lines()["fit01"].startswith("ssh up")
    assert not bed.port_open(1, 23)


def test_reset_of_an_off_node_turns_it_on(bed: Testbed) -> None:
    assert product(bed, "off", "3").code == 0
    run = product(bed, "reset", "3")
    assert run.lines() == {"fit03": "turned on"}
    assert product(bed, "wait", "-t", "15", "3").code == 0


def test_reset_ignored_by_the_cmc_is_power_cycled(bed: Testbed) -> None:
    bed.fault(4, "reset=ignore")
    run = product(bed, "reset", "4")
    assert run.code == 0
    assert run.lines() == {"fit04": f"reset ignored by the {bed.controller}, power-cycled"}
    assert product(bed, "wait", "-t", "15", "4").code == 0
    plain = product(bed, "reset", "--plain", "4")
    assert plain.lines() == {"fit04": "ok"}


def test_cmc_faults_fail_that_node_only_within_the_deadline(bed: Testbed) -> None:
    bed.fault(2, "cmc=blackhole")
    bed.fault(3, "cmc=garbage")
    run = product(bed, "status", "-a")
    assert run.code == 1
    lines = run.lines()
    assert lines["fit01"] == "on" and lines["fit04"] == "on"
    assert lines["fit02"] == bed.unreachable(2)  # the testbed's cmc_timeout is 2
    if bed.controller == "CMC":
        assert lines["fit03"].startswith("unexpected answer") and lines["fit03"].endswith("to status")
    else:  # the card behind the BMC answers garbage: the BMC fails the request
        assert lines["fit03"].startswith(bed.controller), lines["fit03"]
    assert run.seconds < 2 + 2  # the cmc timeout, plus the interpreter's start
    short = product(bed, "reset", "-t", "1", "2")
    assert short.code == 1 and short.lines()["fit02"] == bed.unreachable(1)


@pytest.mark.parametrize(("knob", "telnet", "reason"), [
    ("boot=never", False, "ssh not up"),
    ("ssh=never", False, "ssh not up"),
    ("telnet=hang", True, "telnet not up"),
])
def test_boot_faults_fail_wait_within_the_deadline(bed: Testbed, knob: str, telnet: bool, reason: str) -> None:
    bed.fault(2, knob)
    bed.set_next_boot(2, telnet)
    assert product(bed, "reset", "2").code == 0
    options = ["--telnet"] if telnet else []
    run = product(bed, "wait", *options, "-t", "3", "2")
    assert run.code == 1
    assert run.lines()["fit02"].startswith(reason)
    assert run.seconds < 3 + 1 + 1  # --timeout + 1 s, plus the interpreter's start


def test_black_holed_node_delays_neither_the_others_nor_the_exit(bed: Testbed) -> None:
    bed.fault(3, "loss=100%")
    run = product(bed, "wait", "-a", "-t", "3")
    assert run.code == 1
    lines = run.lines()
    assert list(lines)[-1] == "fit03"  # the others were reported first, as they came
    assert lines["fit03"].startswith("ssh not up")
    for name in ("fit01", "fit02", "fit04"):
        assert lines[name].startswith("ssh up")
        assert float(lines[name].rsplit("(", 1)[1].rstrip("s)")) < 1.5
    assert run.seconds < 3 + 1 + 1


def test_lossy_link_still_comes_up(bed: Testbed) -> None:
    # 15 % of frames lost each way: TCP retransmits (SYN after 1 s), so an attempt
    # needs more than the testbed's 2 s ssh_timeout; the retries still get through
    patient = bed.dir / "patient.conf"
    patient.write_text("[networking]\nssh_timeout = 6\n")
    bed.fault(1, "loss=15%")
    run = product(bed, "wait", "--config", str(patient), "-t", "30", "1")
    assert run.code == 0, run.out


CLIENTS = """
import asyncio, sys
from pathlib import Path
from imaging import ssh, telnet
async def main(ip_ssh, ip_telnet, key):
    status, out = await ssh.run(ip_ssh, "cat /etc/imaging-image; exit 3",
                                ssh.SshSettings(key=Path(key), connect_timeout=3))
    print("ssh", status, out.strip())
    lines = []
    status = await telnet.run(ip_telnet, "blockdev --getsize64 /dev/sda; ls /no/such", telnet.TelnetSettings(),
                              lines.append)
    sizes = [line.strip().removeprefix("# ") for line in lines]  # the shell's prompt may come first
    print("telnet", status, [size for size in sizes if size.isdigit()])
asyncio.run(main(*sys.argv[1:]))
"""


def test_our_clients_against_real_servers(bed: Testbed) -> None:
    """The product's asyncssh client on dropbear, its telnetlib3 client on busybox telnetd."""
    bed.boot(2, imaging_os=True)
    identity = bed.ssh(1, "cat /etc/imaging-image").stdout.strip()  # OpenSSH's view, for reference
    done = bed.run(sys.executable, "-c", CLIENTS, bed.node(1).control_ip, bed.node(2).control_ip,
                   str(bed.layout.client_key))
    assert done.returncode == 0, done.stderr
    ssh_line, telnet_line = done.stdout.splitlines()
    assert ssh_line == f"ssh 3 {identity}"
    assert telnet_line == f"telnet 2 ['{bed.disk(2).stat().st_size}']"
