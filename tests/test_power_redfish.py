"""The redfish power driver against a real Redfish service: sushy-tools' emulator on loopback.

The emulator runs as the testbed runs it (:mod:`imaging_testbed.redfish`: its systems' power is a node's
card, here :class:`tests.bmcs.Card`, the one stand-in); the product's driver and ``curl`` talk to it over
HTTP with basic authentication.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imaging.config import Config
from imaging.errors import ConfigError
from imaging.power.base import Power, PowerError, PowerOptions
from imaging.power.credentials import Credentials, read_credentials
from imaging.power.reset import ResetSettings, ensure_reset
from imaging_testbed.bmc import USER, credentials_text
from imaging_testbed.redfish import system_id, write_settings
from tests.bmcs import NODE, PASSWORD, Card, credentials_file, every_verb_reaches_the_card, free_port

pytest.importorskip("sushy_tools", reason="needs sushy-tools (pip install 'imaging[testbed]')")
TIMEOUT = 2.0


@dataclass
class Bed:
    """A running Redfish emulator and the card of its one system."""

    card: Card
    url: str
    credentials: Credentials

    def options(self, credentials: Credentials | None = None, url: str | None = None,
                system: str | None = system_id("fit01")) -> PowerOptions:
        config = Config.from_text(f"[power]\nredfish_url = {url or self.url}\nredfish_system = {system or ''}\n")
        return PowerOptions(timeout=TIMEOUT, default="redfish", credentials=credentials or self.credentials,
                            config=config)


@pytest.fixture
def bed(card: Card, tmp_path: Path) -> Iterator[Bed]:
    """The emulator on 127.0.0.1, one system (fit01) whose card is the stand-in."""
    port = free_port()
    settings = write_settings(tmp_path / "bmc", USER, PASSWORD, {"fit01": f"127.0.0.1:{card.port}"},
                              listen="127.0.0.1", port=port)
    log = open(tmp_path / "emulator.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen([sys.executable, "-m", "imaging_testbed.redfish", str(settings)],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            if subprocess.run(["curl", "-s", "-m", "1", f"http://127.0.0.1:{port}/redfish/v1"],
                              capture_output=True, check=False).returncode == 0:
                break
            assert process.poll() is None, (tmp_path / "emulator.log").read_text()
            time.sleep(0.05)
        credentials = read_credentials(credentials_file(tmp_path, credentials_text(PASSWORD)))
        yield Bed(card, f"http://{{ip}}:{port}", credentials)
    finally:
        process.kill()
        process.wait()
        log.close()


async def test_the_verbs_reach_the_node(bed: Bed) -> None:
    await every_verb_reaches_the_card(bed.options(), bed.card, "Name: fit01", "BMC (redfish)")


async def test_the_system_is_found_when_none_is_configured(bed: Bed) -> None:
    async with Power(bed.options(system=None)) as power:
        assert await power.request(NODE, "on") == "ok" and await power.status(NODE) == "on"
    assert bed.card.verbs == ["on"]


async def test_ensure_reset_through_redfish(bed: Bed) -> None:
    settings = ResetSettings(idle_after_reset=0.2, probe_ports=(free_port(),), poll=0.05)
    async with Power(bed.options()) as power:
        assert await ensure_reset(power, NODE, settings) == "turned on"
        assert await ensure_reset(power, NODE, settings) == "reset"
    assert bed.card.verbs == ["on", "reset"]


async def test_wrong_credentials_are_one_line_naming_the_driver(bed: Bed, tmp_path: Path) -> None:
    wrong = read_credentials(credentials_file(tmp_path, credentials_text("not-the-password")))
    async with Power(bed.options(wrong)) as power:
        with pytest.raises(PowerError) as caught:
            await power.request(NODE, "off")
    assert caught.value.message == "BMC (redfish) refused the login: wrong credentials (check [power] credentials)"
    assert bed.card.verbs == []


async def test_a_service_that_does_not_answer_fails_within_the_timeout(bed: Bed) -> None:
    started = time.monotonic()
    async with Power(bed.options(url=f"http://{{ip}}:{free_port()}")) as power:
        with pytest.raises(PowerError, match=r"^BMC \(redfish\) unreachable \(connection refused\)"):
            await power.status(NODE)
    assert time.monotonic() - started < TIMEOUT + 1.0


async def test_an_unknown_system_is_the_http_answer(bed: Bed) -> None:
    async with Power(bed.options(system="no-such-system")) as power:
        with pytest.raises(PowerError, match=r"^BMC \(redfish\) answered HTTP 404 to GET /redfish/v1/Systems/no-such"):
            await power.status(NODE)


async def test_curl_drives_the_same_service(bed: Bed) -> None:
    base = bed.url.replace("{ip}", "127.0.0.1") + f"/redfish/v1/Systems/{system_id('fit01')}"

    async def curl(*argv: str) -> str:
        process = await asyncio.create_subprocess_exec("curl", "-s", "-u", f"{USER}:{PASSWORD}", *argv,
                                                       stdout=asyncio.subprocess.PIPE)
        out, _ = await process.communicate()
        return out.decode()

    assert await curl("-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Content-Type: application/json",
                      "-d", '{"ResetType": "On"}', f"{base}/Actions/ComputerSystem.Reset") == "204"
    assert bed.card.power == "on" and json.loads(await curl(base))["PowerState"] == "On"


def test_a_redfish_url_without_its_address_is_refused(tmp_path: Path) -> None:
    from imaging.config import Config

    conf = tmp_path / "c.conf"
    conf.write_text("[power]\nredfish_url = https://bmc.example.org\n")
    with pytest.raises(ConfigError, match=r"is not an http:// or https:// URL whose host is \{ip\}"):
        Config.load([conf])
