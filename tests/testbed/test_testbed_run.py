"""``imaging-testbed run``: the signals that stop a command reach it, once, and
``run`` waits for it and exits with its status; nothing is left in the server
namespace.  The command run is a small python that records every signal it
gets with its sender's PID (a signal the terminal sends has none)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imaging_testbed import procs

from .conftest import Testbed, started_testbed

ROOT = Path(__file__).resolve().parents[2]
CHILD = r"""
import json, os, signal, sys
mark = sys.argv[1]
watched = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
signal.pthread_sigmask(signal.SIG_BLOCK, watched)
if sys.argv[2:] == ["leave-group"]:
    os.setpgid(0, 0)
with open(mark + ".ready", "w") as out:
    out.write(f"{os.getpid()} {os.getpgrp()}\n")
got = [signal.sigwaitinfo(watched)]
while (more := signal.sigtimedwait(watched, 0.4)) is not None:
    got.append(more)
with open(mark, "w") as out:
    json.dump([[info.si_signo, info.si_pid] for info in got], out)
sys.exit(7)
"""


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A one-card testbed: a server namespace with only the controller in it."""
    with started_testbed(tmp_path_factory.mktemp("run") / "tb", 1, cmc_only=True) as testbed:
        yield testbed


def run_command(bed: Testbed, *argv: str, **options: Any) -> subprocess.Popen[bytes]:
    """``imaging-testbed run --dir DIR -- ARGV`` started in the background (own session unless told)."""
    options.setdefault("start_new_session", True)
    command = [sys.executable, "-m", "imaging", "testbed", "run", "--dir", str(bed.dir), "--", *argv]
    return subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=bed.dir, **options)


def stop(proc: subprocess.Popen[bytes], pid: int) -> None:
    """Kill ``run`` and its command, if a failed test left them."""
    proc.kill()
    proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start_child(bed: Testbed, tmp_path: Path, *args: str, **options: Any
                ) -> tuple[subprocess.Popen[bytes], Path, int, int]:
    """``run`` of the signal-recording child; once it is ready: run, the child's mark, its PID and group."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    mark = tmp_path / "signals.json"
    proc = run_command(bed, sys.executable, str(script), str(mark), *args, **options)
    ready = mark.with_name(mark.name + ".ready")
    deadline = time.monotonic() + 30
    while not ready.exists() or not ready.read_text().endswith("\n"):
        assert proc.poll() is None, f"run exited with {proc.returncode} before its command was ready"
        assert time.monotonic() < deadline, "the command did not start"
        time.sleep(0.02)
    pid, group = (int(word) for word in ready.read_text().split())
    return proc, mark, pid, group


def server_processes(bed: Testbed) -> set[int]:
    """The PIDs living in the server namespace, but the controller's."""
    controller = {p.pid for p in procs.tracked(bed.layout.run_dir) if p.name == "controller"}
    return set(procs.netns_pids(bed.layout.server_ns)) - controller


def gone(pid: int) -> bool:
    """Whether process ``pid`` has exited."""
    return procs.start_time(pid) is None


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_to_run_reaches_its_command_once(bed: Testbed, tmp_path: Path, number: int) -> None:
    proc, mark, pid, group = start_child(bed, tmp_path)
    try:
        assert pid in server_processes(bed)  # it runs in the server namespace
        assert group != os.getpgid(proc.pid)  # no terminal: a group of its own
        proc.send_signal(number)
        assert proc.wait(timeout=20) == 7  # run waited for it, and exits with its status
        assert json.loads(mark.read_text()) == [[number, proc.pid]]
        assert gone(pid) and not server_processes(bed)
    finally:
        stop(proc, pid)


def test_a_signal_to_runs_group_reaches_its_command_once(bed: Testbed, tmp_path: Path) -> None:
    """What ``timeout`` and ``kill 0`` do: the command gets the signal from run only."""
    proc, mark, pid, _ = start_child(bed, tmp_path)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 7
        assert json.loads(mark.read_text()) == [[signal.SIGTERM, proc.pid]]
        assert gone(pid) and not server_processes(bed)
    finally:
        stop(proc, pid)


def test_timeout_stops_the_command_and_run_tells_how_it_died(bed: Testbed) -> None:
    before = server_processes(bed)
    started = time.monotonic()
    command = [sys.executable, "-m", "imaging", "testbed", "run", "--dir", str(bed.dir), "--", "sleep", "100"]
    done = subprocess.run(["timeout", "--preserve-status", "2", *command], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr  # sleep died of SIGTERM, and run says so
    assert time.monotonic() - started < 10
    assert not before and not server_processes(bed)  # no sleep left in the namespace


@contextlib.contextmanager
def terminal() -> Iterator[tuple[int, dict[str, Any]]]:
    """A new pseudo-terminal: its master side, and the options that start a command in
    a new session whose controlling terminal it is (the command in its foreground)."""
    master, slave = os.openpty()

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        yield master, {"stdin": slave, "stdout": slave, "stderr": slave, "preexec_fn": controlling_terminal}
    finally:
        os.close(master)
        os.close(slave)


def test_ctrl_c_on_the_terminal_reaches_the_command(bed: Testbed, tmp_path: Path) -> None:
    """On a terminal the command shares run's process group: it reads the terminal and
    gets its Ctrl-C from the terminal itself."""
    with terminal() as (master, options):
        proc, mark, pid, group = start_child(bed, tmp_path, **options)
        try:
            assert group == os.getpgid(proc.pid)
            os.write(master, b"\x03")
            assert proc.wait(timeout=20) == 7
            assert [signal.SIGINT, 0] in json.loads(mark.read_text())  # from the terminal
            assert gone(pid) and not server_processes(bed)
        finally:
            stop(proc, pid)


def test_the_terminals_ctrl_c_is_not_passed_on_again(bed: Testbed, tmp_path: Path) -> None:
    """The terminal's Ctrl-C reached the command already: run does not send another.
    (Here the command left run's group once started, so that only run gets the Ctrl-C.)"""
    with terminal() as (master, options):
        proc, mark, pid, group = start_child(bed, tmp_path, "leave-group", **options)
        try:
            assert group == pid
            os.write(master, b"\x03")
            time.sleep(0.5)
            assert proc.poll() is None and not mark.exists()  # neither run nor its command stopped
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 7
            assert json.loads(mark.read_text()) == [[signal.SIGTERM, proc.pid]]
        finally:
            stop(proc, pid)


def test_run_exits_with_the_commands_own_status(bed: Testbed) -> None:
    proc = run_command(bed, "sh", "-c", "exit 3", start_new_session=False)
    assert proc.wait(timeout=30) == 3
    proc = run_command(bed, "sh", "-c", "kill -HUP $$", start_new_session=False)
    assert proc.wait(timeout=30) == 128 + signal.SIGHUP
