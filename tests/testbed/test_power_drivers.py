"""The product on testbeds whose nodes are powered by BMCs (``imaging-testbed up --power ipmi|redfish``).

Each node has a real BMC the product did not write on its management address, in front of the node's card:
OpenIPMI's ``ipmi_sim`` (the product speaks ``ipmitool -I lanplus`` to it), or sushy-tools' Redfish
emulator (the product speaks HTTP to it).  A client no one here wrote, ``ipmitool`` or ``curl`` run by the
test, drives the same BMCs.  The power verbs, a load (with its boot override: the next boot from the
network) and a wait go through them, and the faults name the
node and the driver: a BMC that does not answer, wrong credentials, a reset the BMC takes but the node
ignores.  (``IMAGING_TESTBED_POWER=ipmi pytest tests/testbed`` runs the whole suite with one driver.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging_testbed import redfish
from imaging_testbed.bmc import CREDENTIALS, USER
from tests.testbed.conftest import Testbed, started_testbed
from tests.testbed.product import product

NODES = 3
TIMEOUT = "30"


@pytest.fixture(scope="module", params=["ipmi", "redfish"])
def bed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """Three nodes whose power the product reaches by the driver of the parameter."""
    if request.param == "redfish":
        pytest.importorskip("sushy_tools", reason="needs sushy-tools (pip install 'imaging[testbed]')")
    with started_testbed(tmp_path_factory.mktemp(f"{request.param}bed"), NODES, power=request.param) as testbed:
        config = testbed.config.read_text()
        assert f"power = {request.param}" in config and f"credentials = {testbed.dir / CREDENTIALS}" in config
        for number in range(1, NODES + 1):
            testbed.wait_stage(number, "ssh")
        yield testbed


@pytest.fixture(autouse=True)
def healthy(bed: Testbed) -> Iterator[None]:
    """Every test leaves the nodes without faults, booted to ssh."""
    yield
    for number in range(1, NODES + 1):
        bed.fault(number, "clear")
    for number in range(1, NODES + 1):
        if bed.status()[bed.node(number).name].stage != "ssh":
            bed.boot(number, imaging_os=False)


def driver(bed: Testbed) -> str:
    """The testbed's power driver."""
    return next(line.split(" = ")[1] for line in bed.config.read_text().splitlines() if line.startswith("power = "))


def password(bed: Testbed) -> str:
    """The testbed's BMC password."""
    return dict(line.split(" = ", 1) for line in (bed.dir / CREDENTIALS).read_text().splitlines()
                if " = " in line)["password"]


def ipmitool(bed: Testbed, number: int, *command: str) -> str:
    """Plain ipmitool, run in the server namespace against node ``number``'s BMC with the testbed's login."""
    done = bed.run("ipmitool", "-I", "lanplus", "-C", "3", "-H", bed.node(number).cmc_ip, "-U", USER,
                   "-P", password(bed), *command)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def curl(bed: Testbed, number: int, *argv: str, action: str = "") -> str:
    """Plain curl, in the server namespace, to node ``number``'s Redfish system (or one of its actions)."""
    url = f"http://{bed.node(number).cmc_ip}:{redfish.PORT}/redfish/v1/Systems/{redfish.system_id(f'fit0{number}')}"
    done = bed.run("curl", "-s", "-f", "-u", f"{USER}:{password(bed)}", *argv, url + action)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_plain_client_drives_the_nodes(bed: Testbed) -> None:
    if driver(bed) == "ipmi":
        assert ipmitool(bed, 2, "chassis", "power", "status") == "Chassis Power is on"
        ipmitool(bed, 2, "chassis", "power", "off")
        assert bed.status()["fit02"].power == "off"
        assert ipmitool(bed, 2, "chassis", "power", "status") == "Chassis Power is off"
        ipmitool(bed, 2, "chassis", "power", "on")
        assert "Device ID" in ipmitool(bed, 2, "mc", "info")
    else:
        reset = "/Actions/ComputerSystem.Reset"
        assert json.loads(curl(bed, 2))["PowerState"] == "On"
        curl(bed, 2, "-X", "POST", "-H", "Content-Type: application/json", "-d", '{"ResetType": "ForceOff"}',
             action=reset)
        assert bed.status()["fit02"].power == "off" and json.loads(curl(bed, 2))["PowerState"] == "Off"
        curl(bed, 2, "-X", "POST", "-H", "Content-Type: application/json", "-d", '{"ResetType": "On"}',
             action=reset)
    bed.wait_stage(2, "ssh")


def test_power_verbs_through_the_bmcs(bed: Testbed) -> None:
    run = product(bed, "status", "-a")
    assert run.code == 0 and run.lines() == {f"fit0{n}": "on" for n in range(1, NODES + 1)}
    assert product(bed, "off", "3").lines() == {"fit03": "ok"}
    assert bed.status()["fit03"].power == "off" and not bed.port_open(3, 22)
    assert product(bed, "reset", "3").lines() == {"fit03": "turned on"}
    bed.set_next_boot(1, True)
    assert product(bed, "reset", "1").lines() == {"fit01": "reset"}
    assert product(bed, "wait", "--telnet", "-t", "15", "1").code == 0
    bed.set_next_boot(1, False)
    assert product(bed, "reset", "1").lines() == {"fit01": "reset"}  # from the imaging OS to its disk
    info = product(bed, "info", "2")
    assert info.code == 0 and ("Device ID" if driver(bed) == "ipmi" else "Name: fit02") in info.lines()["fit02"]
    assert product(bed, "wait", "-a", "-t", "15").code == 0


def boot_override(bed: Testbed, number: int) -> str:
    """What node ``number``'s BMC says its next boot device is, asked by a plain client."""
    if driver(bed) == "ipmi":
        flags = ipmitool(bed, number, "chassis", "bootparam", "get", "5")
        return next(line.split(":", 1)[1].strip() for line in flags.splitlines() if "Boot Device Selector" in line)
    return str(json.loads(curl(bed, number))["Boot"]["BootSourceOverrideTarget"])


def test_load_and_wait_through_the_bmcs(bed: Testbed) -> None:
    assert "PXE" not in boot_override(bed, 1).upper()
    chassis_log = bed.dir / "bmc" / "fit01" / "chassis.log"
    before = len(chassis_log.read_text().splitlines()) if chassis_log.exists() else 0
    load = product(bed, "load", "-a", "-t", TIMEOUT, timeout=60)
    assert load.code == 0 and f"{NODES} ok, 0 failed" in load.out, load.out + load.err
    # before each reset into the imaging OS, the product asked the BMC to boot the node from the network
    for number in range(1, NODES + 1):
        assert boot_override(bed, number) == ("Force PXE" if driver(bed) == "ipmi" else "Pxe")
    if driver(bed) == "ipmi":  # what the BMC was asked during the load, in order: the override, then the resets
        asked = chassis_log.read_text().splitlines()[before:]
        assert asked == ["set boot pxe", "set reset 1", "set reset 1"], asked
    assert product(bed, "wait", "-a", "-t", "15").code == 0


def test_a_bmc_that_does_not_answer_is_one_line(bed: Testbed) -> None:
    bed.fault(2, "cmc=blackhole")  # its packets to the BMC's address are dropped: IPMI's UDP too
    started = time.monotonic()
    run = product(bed, "status", "-a", "-t", "5")
    assert run.code == 1 and time.monotonic() - started < 5 + 3
    assert run.lines()["fit02"].startswith(f"BMC ({driver(bed)}) unreachable")
    assert run.lines()["fit01"] == run.lines()["fit03"] == "on"
    assert "Traceback" not in run.err


def test_wrong_credentials_are_one_line_naming_node_and_driver(bed: Testbed, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-credentials"
    wrong.write_text(f"[default]\nuser = {USER}\npassword = not-the-password\n")
    wrong.chmod(0o600)
    extra = tmp_path / "extra.conf"
    extra.write_text(f"[power]\ncredentials = {wrong}\n")
    run = product(bed, "reset", "2", "--config", str(extra))
    assert run.code == 1
    assert run.out.strip() == (f"fit02: BMC ({driver(bed)}) refused the login: wrong credentials"
                               " (check [power] credentials)")
    assert "not-the-password" not in run.out + run.err and bed.status()["fit02"].stage == "ssh"
    loose = tmp_path / "loose"
    loose.write_text(wrong.read_text())
    loose.chmod(0o644)
    extra.write_text(f"[power]\ncredentials = {loose}\n")
    refused = product(bed, "status", "2", "--config", str(extra))
    assert refused.code == 2 and refused.err.strip().endswith(f"(mode 0644): chmod 600 {loose}")


def test_a_reset_the_node_ignores_is_a_power_cycle(bed: Testbed) -> None:
    bed.fault(3, "reset=ignore")
    run = product(bed, "reset", "3", "--json")
    assert run.code == 0
    assert json.loads(run.out.splitlines()[0])["detail"] == f"reset ignored by the BMC ({driver(bed)}), power-cycled"
    assert product(bed, "wait", "3", "-t", "15").code == 0
