"""Running testbeds are recorded outside their folders: ``imaging-testbed list``
shows them, ``down NAME`` and ``down --all`` bring them down even when their
folder was deleted, leaving no namespace, no process and no record; and the
commands find the testbed of the current folder without ``--dir``."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging_testbed import lifecycle, procs, registry

from .conftest import missing_requirements

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    if reason := missing_requirements():
        pytest.skip(reason)


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A registry of the test's own; whatever it still records at the end is brought down."""
    folder = tmp_path / "registry"
    yield folder
    monkeypatch.setenv(registry.ENVIRONMENT, str(folder))
    asyncio.run(lifecycle.down_all())


def cli(*argv: str, cwd: Path | None = None, registry_dir: Path | None = None) -> tuple[int, str, str]:
    """``imaging-testbed ARGV`` in a subprocess (in ``cwd``; the registry in ``registry_dir``,
    else the machine's): exit code, stdout, stderr."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(registry.ENVIRONMENT, None)
    if registry_dir is not None:
        env[registry.ENVIRONMENT] = str(registry_dir)
    done = subprocess.run([sys.executable, "-m", "imaging", "testbed", *argv], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=120, check=False)
    return done.returncode, done.stdout, done.stderr


def listed(registry_dir: Path | None = None) -> dict[str, dict[str, object]]:
    """``imaging-testbed list --json``, by name."""
    code, out, err = cli("list", "--json", registry_dir=registry_dir)
    assert code == 0, err
    return {item["name"]: item for item in json.loads(out)}


def everything(name: str, registry_dir: Path) -> tuple[dict[int, int | None], list[str]]:
    """What testbed ``name`` runs (PID → start time) and its namespaces, from its record."""
    entry = registry.find(name, registry_dir)
    assert entry is not None
    pids = {pid: procs.start_time(pid) for ns in entry.namespaces for pid in procs.netns_pids(ns)}
    pids.update({d.pid: d.start for d in entry.daemons})
    return pids, entry.namespaces


def assert_nothing_left(pids: dict[int, int | None], namespaces: list[str]) -> None:
    """No process of ``pids`` alive, no namespace of ``namespaces`` left."""
    alive = [pid for pid, start in pids.items() if start is not None and procs.start_time(pid) == start]
    assert not alive
    present = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split()
    assert not set(namespaces) & set(present)


def wait_booted(folder: Path, registry_dir: Path) -> None:
    """Wait until every node of the testbed in ``folder`` serves ssh (``status`` run inside it)."""
    deadline = time.monotonic() + 20
    while True:
        code, out, err = cli("status", "--json", cwd=folder / "images", registry_dir=registry_dir)
        assert code == 0, err
        if all(node["boot"] == "ssh" for node in json.loads(out)["nodes"]):
            return
        assert time.monotonic() < deadline, out
        time.sleep(0.1)


def test_a_testbed_whose_folder_was_deleted_is_brought_down_from_inside_it(tmp_path: Path, reg: Path) -> None:
    testbed = tmp_path / "testbed"
    code, out, err = cli("up", "2", "--boot-delay", "0.2", cwd=tmp_path, registry_dir=reg)  # in ./testbed
    assert code == 0, err
    name = out.split()[1]
    entry = registry.find(name, reg)
    assert entry is not None and entry.directory == str(testbed) and entry.count == 2
    assert entry.namespaces == [f"{name}-srv", f"{name}-1", f"{name}-2"]
    assert {d.name for d in entry.daemons} == {"controller", "dnsmasq"}
    shown = listed(reg)
    assert list(shown) == [name]
    assert shown[name] | {"directory": ""} == {"name": name, "directory": "", "count": 2, "kind": "emulated",
                                                "state": "up", "folder": True, "alive": True}

    # status and run from inside the folder (a subfolder), without --dir
    wait_booted(testbed, reg)
    code, out, err = cli("run", "--", "sh", "-c", 'echo "$IMAGING_CONFIG"', cwd=testbed / "images", registry_dir=reg)
    assert code == 0 and out.strip() == str(testbed / "imaging.conf"), err
    pids, namespaces = everything(name, reg)
    assert len(pids) >= 4  # controller, dnsmasq, a firmware and a dropbear per node

    shutil.rmtree(testbed)
    code, _, err = cli("status", "--dir", str(testbed), registry_dir=reg)
    assert code == 2 and f"lost its files: bring it down with imaging-testbed down {name}" in err
    testbed.mkdir()
    code, _, err = cli("up", "1", cwd=tmp_path, registry_dir=reg)  # not a second testbed over the lost one
    assert code == 2 and f"testbed {name} still runs from {testbed}" in err and len(err.splitlines()) == 1
    assert listed(reg)[name]["folder"] is False and listed(reg)[name]["alive"] is True

    # down from inside the deleted folder, which is the current folder
    inside = testbed / "sub"
    inside.mkdir()
    script = (f"import os, subprocess, sys; os.chdir({str(inside)!r}); os.rmdir({str(inside)!r});"
              f" os.rmdir({str(testbed)!r}); sys.exit(subprocess.call([sys.executable, '-m', 'imaging', 'testbed',"
              f" 'down']))")
    env = {**os.environ, "PYTHONPATH": str(ROOT), registry.ENVIRONMENT: str(reg)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert f"testbed {name} in {testbed} is down" in done.stdout
    assert_nothing_left(pids, namespaces)
    assert not list(reg.glob("*.json")) and listed(reg) == {}


def test_down_all_brings_down_every_recorded_testbed(tmp_path: Path, reg: Path) -> None:
    for folder in ("one", "two"):
        code, _, err = cli("up", "1", "--cmc-only", "--dir", str(tmp_path / folder), registry_dir=reg)
        assert code == 0, err
    names = sorted(listed(reg))
    assert len(names) == 2
    left = {name: everything(name, reg) for name in names}
    shutil.rmtree(tmp_path / "one")
    assert {item["folder"] for item in listed(reg).values()} == {True, False}
    code, out, err = cli("down", "--all", registry_dir=reg)
    assert code == 0, err
    assert sorted(line.split()[1] for line in out.splitlines()) == names
    for pids, namespaces in left.values():
        assert_nothing_left(pids, namespaces)
    assert not (tmp_path / "two" / "testbed.json").exists()  # brought down from its folder
    assert listed(reg) == {} and not list(reg.glob("*.json"))
    code, out, _ = cli("down", "--all", registry_dir=reg)
    assert code == 0 and out.strip() == "no testbed is running"


def test_down_by_name_in_the_machines_registry(tmp_path: Path) -> None:
    folder = tmp_path / "tb"
    code, out, err = cli("up", "1", "--cmc-only", "--dir", str(folder))
    assert code == 0, err
    name = out.split()[1]
    try:
        check_down_by_name(name, folder)
    finally:
        if registry.find(name, registry.DEFAULT_ROOT) is not None:
            asyncio.run(lifecycle.down_named(name))


def check_down_by_name(name: str, folder: Path) -> None:
    """``list`` shows testbed ``name`` (in ``folder``); ``down NAME`` leaves nothing of it."""
    record = registry.path_of(name, registry.DEFAULT_ROOT)
    assert record.is_file() and listed()[name]["directory"] == str(folder)
    pids, namespaces = everything(name, registry.DEFAULT_ROOT)
    code, out, err = cli("down", name)
    assert code == 0 and out.strip() == f"testbed {name} ({folder}) is down", err
    assert_nothing_left(pids, namespaces)
    assert not record.exists() and not (folder / "testbed.json").exists()
    assert name not in listed()
    code, _, err = cli("down", name)
    assert code == 2 and f"no testbed {name} is running" in err


def test_a_stale_record_shows_as_gone_and_down_removes_it(tmp_path: Path, reg: Path) -> None:
    """A record whose namespaces are gone (say, deleted by hand) is shown so, and cleared."""
    stale = registry.Entry("imtb4999", 4999, str(tmp_path / "old"), 3, "emulated", ["imtb4999-srv"],
                           [procs.Tracked("controller", 2 ** 22 + 1, 1)])
    registry.record(stale, reg)
    assert listed(reg)["imtb4999"] | {"directory": ""} == {
        "name": "imtb4999", "directory": "", "count": 3, "kind": "emulated", "state": "gone", "folder": False,
        "alive": False}
    code, out, err = cli("down", "imtb4999", registry_dir=reg)
    assert code == 0 and "imtb4999" in out, err
    assert listed(reg) == {}
