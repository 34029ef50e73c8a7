"""The ipmi power driver against a real BMC: OpenIPMI's ``ipmi_sim`` on loopback, driven by ``ipmitool``.

The simulator is the testbed's own BMC (:mod:`imaging_testbed.bmc`): its chassis actions go to a node's
card, here :class:`tests.bmcs.Card` (the one stand-in: a node's power hardware); everything between the
product and it is real (ipmitool, RMCP+, ipmi_sim, its chassis_control script, curl).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imaging.config import Config
from imaging.errors import ConfigError
from imaging.power.base import Power, PowerError, PowerOptions
from imaging.power.credentials import Credentials, read_credentials
from imaging.power.ipmi import Ipmi
from imaging.power.reset import ResetSettings, ensure_reset
from imaging_testbed.bmc import USER, credentials_text, write_bmc
from tests.bmcs import NODE, PASSWORD, Card, credentials_file, every_verb_reaches_the_card, free_port

pytestmark = pytest.mark.skipif(shutil.which("ipmi_sim") is None or shutil.which("ipmitool") is None,
                                reason="needs openipmi and ipmitool (make system-packages)")
TIMEOUT = 2.0


@dataclass
class Bed:
    """A running simulated BMC and its card."""

    card: Card
    port: int
    credentials: Credentials

    def options(self, credentials: Credentials | None = None, port: int | None = None) -> PowerOptions:
        return PowerOptions(timeout=TIMEOUT, default="ipmi", credentials=credentials or self.credentials,
                            config=Config.from_text(f"[power]\nipmi_port = {port or self.port}\n"))


@pytest.fixture
def bed(card: Card, tmp_path: Path) -> Iterator[Bed]:
    """ipmi_sim on 127.0.0.1 with the testbed's configuration, its card the stand-in."""
    port = free_port(socket.SOCK_DGRAM)
    bmc = write_bmc(tmp_path / "bmc", "fit01", "127.0.0.1", port, f"127.0.0.1:{card.port}", PASSWORD)
    process = subprocess.Popen(bmc.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        credentials = read_credentials(credentials_file(tmp_path, credentials_text(PASSWORD)))
        for _ in range(100):  # until it answers an unauthenticated ping
            if subprocess.run(["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", str(port),
                               "-U", USER, "-P", PASSWORD, "-N", "1", "-R", "1", "mc", "info"],
                              capture_output=True, check=False).returncode == 0:
                break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.05)
        yield Bed(card, port, credentials)
    finally:
        process.kill()
        process.wait()


async def test_the_verbs_reach_the_node(bed: Bed) -> None:
    await every_verb_reaches_the_card(bed.options(), bed.card, "Device ID", "BMC (ipmi)")


async def test_ensure_reset_through_the_bmc(bed: Bed) -> None:
    settings = ResetSettings(idle_after_reset=0.2, probe_ports=(free_port(socket.SOCK_STREAM),), poll=0.05)
    async with Power(bed.options()) as power:
        assert await ensure_reset(power, NODE, settings) == "turned on"
        assert await ensure_reset(power, NODE, settings) == "reset"  # nothing answers: the reset is taken
    assert bed.card.verbs == ["on", "reset"]


async def test_wrong_credentials_are_one_line_naming_the_driver(bed: Bed, tmp_path: Path) -> None:
    wrong = read_credentials(credentials_file(tmp_path, credentials_text("not-the-password")))
    started = time.monotonic()
    async with Power(bed.options(wrong)) as power:
        with pytest.raises(PowerError) as caught:
            await power.status(NODE)
    assert caught.value.message == "BMC (ipmi) refused the login: wrong credentials (check [power] credentials)"
    assert "not-the-password" not in caught.value.message and time.monotonic() - started < TIMEOUT
    assert bed.card.verbs == []


async def test_a_bmc_that_does_not_answer_fails_within_the_timeout(bed: Bed) -> None:
    silent = free_port(socket.SOCK_DGRAM)
    started = time.monotonic()
    async with Power(bed.options(port=silent)) as power:
        with pytest.raises(PowerError, match=r"^BMC \(ipmi\) unreachable"):
            await power.status(NODE)
    assert time.monotonic() - started < TIMEOUT + 1.0
    assert not [p for p in os.popen("pgrep -af ipmitool").read().splitlines() if f"-p {silent}" in p]


def test_the_password_goes_by_the_environment_never_the_command_line(bed: Bed) -> None:
    argv = Ipmi(bed.options()).argv(NODE, "status", USER)
    assert PASSWORD not in " ".join(argv) and "-E" in argv and "-P" not in argv
    assert PASSWORD not in repr(bed.credentials) and PASSWORD not in repr(bed.credentials.login("fit01"))


@pytest.mark.parametrize(("text", "mode", "message"), [
    (credentials_text(PASSWORD), 0o644, r"may be read by other users \(mode 0644\): chmod 600 "),
    ("[default]\nuser = admin\n", 0o600, "gives no password for fit01: add them to its"),
    ("user = admin\n", 0o600, r"are not an ini file \(File contains no section headers"),
    ("[default]\nuser = a\npassword = b\nport = 1\n", 0o600, "unknown key port"),
])
def test_a_bad_credentials_file_is_named_with_its_fix(tmp_path: Path, text: str, mode: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        read_credentials(credentials_file(tmp_path, text, mode)).login("fit01")
    assert PASSWORD not in caught.value.message


def test_a_host_section_overrides_the_default(tmp_path: Path) -> None:
    credentials = read_credentials(credentials_file(tmp_path, credentials_text(PASSWORD) + "[fit07]\npassword = x\n"))
    assert credentials.login("fit07") == credentials.login("fit07").__class__(USER, "x")
    assert credentials.login("fit01").password == PASSWORD
    with pytest.raises(ConfigError, match="cannot read the BMC credentials"):
        read_credentials(tmp_path / "absent.conf")


def test_cancelling_a_request_kills_ipmitool(bed: Bed) -> None:
    silent = free_port(socket.SOCK_DGRAM)

    async def cancelled() -> None:
        async with Power(bed.options(port=silent)) as power:
            task = asyncio.create_task(power.status(NODE))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(cancelled())
    time.sleep(0.1)
    assert not [p for p in os.popen("pgrep -af ipmitool").read().splitlines() if f"-p {silent}" in p]
