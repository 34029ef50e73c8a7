"""``imaging-monitor`` on the emulated testbed: what it sees follows the nodes (power off and on, a black-holed
card, a load in progress on the nodes it loads), a slow node delays no other, and it serves JSON, server-sent
events, Prometheus metrics and its page; SIGTERM ends it cleanly.  Everything it talks to is real: the cards,
the nodes' sshd (dropbear) and telnetd, and the product's own load publishing its progress.  The page is
looked at in a real browser (headless Chromium, :mod:`tests.testbed.browser`), on a desktop's screen and a
phone's; its screenshots are saved under ``test-artifacts/`` (``IMAGING_TEST_ARTIFACTS`` elsewhere)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT
from tests.testbed.browser import CHROMEDRIVER, CHROMIUM, PROGRAMS, Browser, png_size
from tests.testbed.conftest import NODES, Testbed
from tests.testbed.product import BIN, product

CYCLE = "0.5"
PROBE_TIMEOUT = 1  # seconds for each probe of the monitor under test
PORT = 18090  # in the testbed's server namespace, where nothing else listens
ARTIFACTS = Path(os.environ.get("IMAGING_TEST_ARTIFACTS", ROOT / "test-artifacts"))
# the page's tiles as the browser shows them, by hostname: state, computed colour, text, progress, place
TILES = """const tiles = Object.fromEntries([...document.querySelectorAll("#grid .node")].map(tile => [
  tile.querySelector(".name").textContent,
  {state: tile.dataset.state, colour: getComputedStyle(tile).backgroundColor,
   what: tile.querySelector(".what").textContent, bar: !tile.querySelector(".bar").hidden,
   percent: tile.dataset.percent === "" ? null : Number(tile.dataset.percent),
   box: tile.getBoundingClientRect().toJSON()}]));
"""


@pytest.fixture
def bed(testbed: Testbed) -> Iterator[Testbed]:
    """The session testbed, its nodes put back to health and ssh afterwards."""
    yield testbed
    for number in range(1, NODES + 1):
        testbed.fault(number, "clear")
    for number in range(1, NODES + 1):
        if testbed.status()[testbed.node(number).name].stage != "ssh":
            testbed.boot(number, imaging_os=False)


@pytest.fixture
def monitor(bed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[str]]:
    """``imaging-monitor -a`` serving on the server's loopback, a look at each node every half second;
    stopped by SIGTERM at the end, which it must take as a clean exit."""
    conf = tmp_path_factory.mktemp("monitor") / "monitor.conf"
    conf.write_text(f"[monitor]\nprobe_timeout = {PROBE_TIMEOUT}\n")
    process = bed.popen(str(BIN / "imaging-monitor"), "-a", "--cycle", CYCLE, "--listen", f"127.0.0.1:{PORT}",
                        "--config", str(conf))
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "serving http://127.0.0.1:" in line, line + (process.stderr.read() if process.stderr else "")
    yield process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0, process.stderr.read() if process.stderr else ""


@pytest.fixture
def page(bed: Testbed, monitor: subprocess.Popen[str]) -> Iterator[Browser]:
    """The monitor's page, open in headless Chromium in the server namespace, where the monitor listens."""
    binary, driver = shutil.which(CHROMIUM), shutil.which(CHROMEDRIVER)
    assert binary and driver, f"no browser: apt-get install {' '.join(PROGRAMS.values())}"
    browser = Browser(bed.layout.server_ns, binary, driver)
    try:
        browser.screen(1280, 800)  # a laptop's; the window's own size depends on Chromium's version
        browser.open(f"http://127.0.0.1:{PORT}/")
        yield browser
    finally:
        browser.close()


def get(bed: Testbed, path: str) -> str:
    """``curl`` the monitor in the server namespace."""
    done = bed.run("curl", "-sS", "-m", "5", f"http://127.0.0.1:{PORT}{path}")
    assert done.returncode == 0, done.stderr
    return done.stdout


def nodes(bed: Testbed) -> dict[str, dict[str, Any]]:
    """``/api/nodes`` by hostname."""
    return {node["hostname"]: node for node in json.loads(get(bed, "/api/nodes"))}


def until(bed: Testbed, check: Callable[[dict[str, dict[str, Any]]], bool], what: str,
          timeout: float = 15.0) -> dict[str, dict[str, Any]]:
    """Poll ``/api/nodes`` until ``check`` holds; the nodes then."""
    deadline = time.monotonic() + timeout
    while True:
        seen = nodes(bed)
        if check(seen):
            return seen
        assert time.monotonic() < deadline, f"{what} not seen within {timeout} s: {seen}"
        time.sleep(0.1)


def test_once_is_one_snapshot_of_every_node(bed: Testbed) -> None:
    run = product(bed, "monitor", "-a", "--once")
    assert run.code == 0, run.err
    seen = {node["hostname"]: node for node in json.loads(run.out)}
    assert sorted(seen) == [f"fit0{n}" for n in range(1, NODES + 1)]
    for number in range(1, NODES + 1):
        node = seen[f"fit0{number}"]
        identity = bed.ssh(number, "tail -n 1 /etc/imaging-image").stdout.strip()
        assert (node["power"], node["os"], node["image"]) == ("on", "ssh", identity) and identity
        assert set(node["latency"]) == {"power", "control", "image"}


def test_states_follow_power_and_the_events_tell_each_change(bed: Testbed, monitor: subprocess.Popen[str]) -> None:
    until(bed, lambda seen: all(n["os"] == "ssh" and n["image"] for n in seen.values()), "every node's image")
    events = bed.popen("curl", "-sS", "-N", "-m", "20", f"http://127.0.0.1:{PORT}/api/events")
    assert events.stdout is not None
    assert events.stdout.readline().strip() == "event: snapshot"
    assert len(json.loads(events.stdout.readline().removeprefix("data: "))) == NODES
    assert bed.cmc(3, "off").stdout.strip() == "ok"
    until(bed, lambda seen: (seen["fit03"]["power"], seen["fit03"]["os"]) == ("off", "none"), "fit03 off")
    assert bed.cmc(3, "on").stdout.strip() == "ok"
    until(bed, lambda seen: (seen["fit03"]["power"], seen["fit03"]["os"]) == ("on", "ssh"), "fit03 back on ssh")
    changes: list[tuple[Any, ...]] = []
    for line in events.stdout:  # the stream said each change of fit03, in order, as it came
        if line.startswith("data: "):
            node = json.loads(line.removeprefix("data: "))
            if node["hostname"] == "fit03":
                changes.append((node["power"], node["os"]))
        if ("off", "none") in changes and changes[-1] == ("on", "ssh"):
            break
    events.kill()
    assert changes[changes.index(("off", "none")) + 1:][-1] == ("on", "ssh"), changes
    assert all(node["os"] == "ssh" for name, node in nodes(bed).items() if name != "fit03")


def test_a_black_holed_card_is_unreachable_and_delays_no_other(bed: Testbed,
                                                               monitor: subprocess.Popen[str]) -> None:
    until(bed, lambda seen: all(n["power"] == "on" for n in seen.values()), "every node on")
    bed.fault(2, "cmc=blackhole")
    seen = until(bed, lambda seen: seen["fit02"]["power"] == "unreachable", "fit02 unreachable")
    assert seen["fit02"]["detail"] == f"no answer within {PROBE_TIMEOUT}s" and seen["fit02"]["os"] == "ssh"
    # while fit02's every probe waits for its card, the others are looked at every half second
    before = {name: node["updated"] for name, node in seen.items()}
    time.sleep(1.6)
    after = nodes(bed)
    for name in ("fit01", "fit03", "fit04"):
        assert after[name]["updated"] - before[name] >= 1.0, (name, before[name], after[name]["updated"])
        assert after[name]["power"] == "on"
    metrics = get(bed, "/metrics")
    assert 'imaging_node_controller_reachable{node="fit02"} 0.0' in metrics
    assert 'imaging_node_controller_reachable{node="fit01"} 1.0' in metrics
    assert 'imaging_node_os_up{node="fit02",os="ssh"} 1.0' in metrics
    assert re.search(r'imaging_probe_latency_seconds\{node="fit02",probe="power"\} 1\.\d+', metrics), metrics
    bed.fault(2, "clear")
    until(bed, lambda seen: seen["fit02"]["power"] == "on", "fit02's card back")


def test_the_page_and_a_port_taken(bed: Testbed, monitor: subprocess.Popen[str]) -> None:
    page = get(bed, "/")
    assert page.startswith("<!doctype html>") and 'new EventSource("api/events")' in page
    assert "http://" not in page and "https://" not in page, "the page fetches nothing from elsewhere"
    taken = product(bed, "monitor", "-a", "--listen", f"127.0.0.1:{PORT}")
    assert taken.code == 2
    assert taken.err.strip() == (f"imaging-monitor: error: cannot listen on 127.0.0.1:{PORT} (Address already in"
                                 " use): choose another with --listen or [monitor] listen")


def test_a_load_shows_on_its_nodes_with_growing_percent(bed: Testbed, page: Browser, tmp_path: Path) -> None:
    """In the JSON and in the browser's page: the page's bars move with the percents, a screenshot is saved."""
    until(bed, lambda seen: all(n["os"] == "ssh" for n in seen.values()), "every node on ssh")
    image = tmp_path / "random.img"  # incompressible, and slowed: seconds of progress
    image.write_bytes(os.urandom(16 << 20))
    load = bed.popen(str(BIN / "imaging-load"), "-i", str(image), "-b", "40", "-t", "60", "1-2")
    try:
        seen_percents: dict[str, list[float]] = {"fit01": [], "fit02": []}
        page_percents: dict[str, list[float]] = {"fit01": [], "fit02": []}
        screenshot = None
        deadline = time.monotonic() + 60
        while load.poll() is None and time.monotonic() < deadline:
            seen = nodes(bed)
            for name, percents in seen_percents.items():
                job = seen[name]["job"]
                if job and job["phase"] == "receiving" and job["percent"] is not None:
                    assert (job["command"], job["user"]) == ("load", "root")
                    percents.append(job["percent"])
            assert seen["fit03"]["job"] is None and seen["fit04"]["job"] is None, "a job on a node it does not touch"
            tiles = page.script(TILES + "return tiles")
            for name, percents in page_percents.items():
                if tiles[name]["bar"] and tiles[name]["what"] == "load receiving":
                    assert tiles[name]["percent"] is not None, (name, tiles[name])  # a bar shows a percent
                    percents.append(tiles[name]["percent"])
            assert not tiles["fit03"]["bar"] and not tiles["fit04"]["bar"], tiles
            if screenshot is None and all(5 < (tiles[name]["percent"] or 0) < 95 for name in page_percents):
                screenshot = page.screenshot(ARTIFACTS / "monitor-load.png")  # both bars part-way
            time.sleep(0.1)
        out, err = load.communicate(timeout=30)
        assert load.returncode == 0, out + err
        for name, percents in (*seen_percents.items(), *page_percents.items()):
            assert len(set(percents)) >= 2 and percents == sorted(percents), (name, percents)
        assert screenshot is not None and png_size(screenshot) == (1280, 800), "no screenshot of the page mid-load"
        assert "imaging_node_job_percent" in get(bed, "/metrics")
        until(bed, lambda seen: all(n["job"] is None for n in seen.values()), "the load gone from every node")
        page.until(TILES + "return Object.values(tiles).every(tile => !tile.bar)", "every bar gone")
    finally:  # random bytes boot nothing: the default image back, whatever happened (a failure stays the one told)
        if load.poll() is None:
            load.terminate()
            load.communicate(timeout=30)
        restored = product(bed, "load", "-t", "60", "1-2")
    assert restored.code == 0, restored.out + restored.err


def test_the_page_shows_every_node_and_a_node_turned_off_changes_colour(bed: Testbed, page: Browser) -> None:
    tiles = page.until(TILES + f"""return document.getElementById("status").textContent === "live"
        && Object.keys(tiles).length === {NODES}
        && Object.values(tiles).every(tile => tile.state === "ssh" && tile.what) && tiles""",
                       "every node's tile, on ssh, with its image")
    assert sorted(tiles) == [f"fit0{n}" for n in range(1, NODES + 1)]
    images = {name: node["image"] for name, node in nodes(bed).items()}
    assert {name: tile["what"] for name, tile in tiles.items()} == images
    legend = page.script("""return Object.fromEntries([...document.querySelectorAll("#legend span")]
        .map(span => [span.className, getComputedStyle(span).backgroundColor]))""")
    assert legend["ssh"] != legend["off"]
    assert all(tile["colour"] == legend["ssh"] for tile in tiles.values()), (tiles, legend)
    assert bed.cmc(3, "off").stdout.strip() == "ok"
    tiles = page.until(TILES + 'return tiles.fit03.state === "off" && tiles', "fit03 turned off")
    assert tiles["fit03"]["colour"] == legend["off"] and tiles["fit03"]["what"] == "off"
    assert all(tiles[name]["colour"] == legend["ssh"] for name in ("fit01", "fit02", "fit04"))
    assert bed.cmc(3, "on").stdout.strip() == "ok"
    tiles = page.until(TILES + 'return tiles.fit03.state === "ssh" && tiles', "fit03 back on ssh", timeout=30)
    assert tiles["fit03"]["colour"] == legend["ssh"]
    # on a phone: the viewport is the phone's, every tile fits its width, nothing scrolls sideways
    page.screen(390, 844, scale=2, mobile=True)
    width = page.until("return window.innerWidth === 390 && window.innerWidth", "the phone's viewport")
    tiles = page.until(TILES + "return tiles", "the tiles")
    assert page.script("return document.documentElement.scrollWidth") <= width
    for name, tile in tiles.items():
        assert tile["box"]["left"] >= 0 and tile["box"]["right"] <= width and tile["box"]["width"] >= 100, (name, tile)
    assert png_size(page.screenshot(ARTIFACTS / "monitor-phone.png")) == (780, 1688)
