"""End-to-end: up, status, run, fault and down through the CLI; a second
testbed beside the session's; nothing left behind; the host's /etc untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imaging.cli.main import main
from imaging_testbed import procs
from imaging_testbed.layout import Layout

from .conftest import Testbed, host_files, missing_requirements, started_testbed


def cli(*argv: str) -> tuple[int, str, str]:
    """Run ``imaging-testbed ARGV`` in a subprocess: exit code, stdout, stderr."""
    code = ("import sys; from imaging.cli.main import main;"
            " sys.exit(main(['imaging-testbed', *sys.argv[1:]]))")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                            cwd=argv[argv.index("--dir") + 1] if "--dir" in argv else None,
                            env={**os.environ, "PYTHONPATH": str(root)}, timeout=60, check=False)
    return result.returncode, result.stdout, result.stderr


def test_full_cycle_through_the_cli(tmp_path: Path, testbed: Testbed) -> None:
    if reason := missing_requirements():
        pytest.skip(reason)
    before = host_files()
    directory = tmp_path / "tb"
    directory.mkdir()
    started = time.monotonic()
    code, out, err = cli("up", "2", "--dir", str(directory), "--boot-delay", "0.2",
                         "--fault", "fit02:cmc=blackhole", "--fault", "fit02:ssh=never")
    assert code == 0, err
    assert time.monotonic() - started < 10
    record = json.loads((directory / "testbed.json").read_text())
    layout = Layout(directory, record["index"], 2)
    assert record["index"] != testbed.layout.index  # two testbeds at once
    assert layout.server_ns != testbed.layout.server_ns

    code, out, err = cli("up", "2", "--dir", str(directory))
    assert code == 2 and "already up" in err and len(err.splitlines()) == 1

    inventory = json.loads((directory / "inventory.json").read_text())
    assert [entry["control"]["hostname"] for entry in inventory] == ["fit01", "fit02"]
    conf = (directory / "imaging.conf").read_text()
    assert f"config_dir = {directory}/tftp/pxelinux.cfg" in conf
    assert (directory / "images" / "default.img.zst").exists()
    assert (directory / "tftp" / "pxelinux.0").exists() and (directory / "tftp" / "ldlinux.c32").exists()

    deadline = time.monotonic() + 10
    while True:
        code, out, err = cli("status", "--dir", str(directory), "--json")
        nodes = {n["name"]: n for n in json.loads(out)["nodes"]}
        if nodes["fit01"]["boot"] == "ssh" and nodes["fit02"]["stage"] == "no-ssh":
            break
        assert time.monotonic() < deadline, nodes
        time.sleep(0.1)
    assert nodes["fit02"]["faults"] == ["cmc=blackhole", "ssh=never"]
    code, out, _ = cli("status", "--dir", str(directory))
    assert code == 0 and "fit01" in out and "ssh" in out

    # run: in the server namespace, with IMAGING_CONFIG
    code, out, _ = cli("run", "--dir", str(directory), "--", "sh", "-c",
                       f'echo "$IMAGING_CONFIG"; curl -sS -m 1 {layout.node(1).cmc_ip}/status; exit 3')
    assert code == 3 and out.splitlines() == [str(directory / "imaging.conf"), "on"]
    code, _, _ = cli("run", "--dir", str(directory), "--", "curl", "-s", "-m", "1",
                     f"{layout.node(2).cmc_ip}/status")
    assert code == 28  # black-holed from the start

    code, out, err = cli("fault", "--dir", str(directory), "fit02", "clear")
    assert code == 0 and "no faults" in out
    code, out, _ = cli("run", "--dir", str(directory), "--", "curl", "-s", "-m", "1",
                       f"{layout.node(2).cmc_ip}/status")
    assert code == 0 and out.strip() == "on"
    code, _, err = cli("fault", "--dir", str(directory), "fit02", "cmc=sometimes")
    assert code == 2 and "unknown fault" in err

    # everything the testbed runs, to check nothing survives down
    pids = {pid: procs.start_time(pid) for ns in layout.namespaces() for pid in procs.netns_pids(ns)}
    pids.update({p.pid: p.start for p in procs.tracked(layout.run_dir)})
    assert len(pids) >= 4  # dnsmasq, controller, two nodes
    code, out, err = cli("down", "--dir", str(directory))
    assert code == 0, err
    alive = [pid for pid, start in pids.items() if start is not None and procs.start_time(pid) == start]
    assert not alive
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(ns in listed.split() for ns in layout.namespaces())
    assert not (directory / "testbed.json").exists()
    code, _, err = cli("status", "--dir", str(directory))
    assert code == 2 and "no testbed" in err
    assert host_files() == before


def test_up_as_non_root_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["imaging-testbed", "up", "2", "--dir", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "root" in err and "sudo" in err


def test_cmc_only_many_cards(tmp_path: Path) -> None:
    started = time.monotonic()
    with started_testbed(tmp_path / "cmc", 400, cmc_only=True) as bed:
        elapsed = time.monotonic() - started
        assert elapsed < 15
        assert bed.cmc(400, "status").stdout.strip() == "on"
        assert bed.cmc(400, "off").stdout.strip() == "ok"
        assert bed.cmc(400, "status").stdout.strip() == "off"
        statuses = bed.status()
        assert len(statuses) == 400 and statuses["fit400"].power == "off"
        assert statuses["fit001"].boot == "none"


def test_down_after_a_controller_crash(tmp_path: Path) -> None:
    with started_testbed(tmp_path / "crash", 2) as bed:
        bed.wait_stage(1, "ssh")
        bed.wait_stage(2, "ssh")
        layout = bed.layout
        pids = {pid: procs.start_time(pid) for ns in layout.namespaces() for pid in procs.netns_pids(ns)}
        controller = next(p for p in procs.tracked(layout.run_dir) if p.name == "controller")
        os.kill(controller.pid, 9)
        deadline = time.monotonic() + 5
        while controller.alive():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert bed.ssh(1, "true").returncode == 0  # the nodes live on, like hardware
        assert bed.ssh(2, "true").returncode == 0
    # started_testbed's down ran after the crash
    alive = [pid for pid, start in pids.items() if start is not None and procs.start_time(pid) == start]
    assert not alive
