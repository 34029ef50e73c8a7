"""The job board: what a running load or save publishes for the monitor, and what a reader makes of it."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from imaging.events import Event
from imaging.jobboard import FOLDER, JobBoard, read_jobs


def test_a_job_is_read_node_by_node_while_it_runs_and_gone_at_its_end(tmp_path: Path) -> None:
    board = JobBoard.start(tmp_path, "load", "alice", ["fit01", "fit02"])
    assert stat.S_IMODE((tmp_path / FOLDER).stat().st_mode) == 0o1777
    jobs = read_jobs(tmp_path)
    assert jobs["fit01"] | {"since": 0} == {"command": "load", "user": "alice", "since": 0, "phase": "waiting",
                                            "percent": None}
    board.event(Event("fit02", "receiving", 10.0))  # a phase change: written at once
    assert read_jobs(tmp_path)["fit02"]["percent"] == 10.0
    board.event(Event("fit02", "receiving", 20.0))  # only a percent, right after: may wait for the next write
    board.write()
    assert (read_jobs(tmp_path)["fit02"]["phase"], read_jobs(tmp_path)["fit02"]["percent"]) == ("receiving", 20.0)
    board.event(Event("fit09", "receiving", 50.0))  # not one of its nodes: ignored
    assert "fit09" not in read_jobs(tmp_path)
    board.close()
    assert read_jobs(tmp_path) == {} and list((tmp_path / FOLDER).iterdir()) == []


def test_a_dead_job_and_a_garbled_file_are_skipped(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    (tmp_path / FOLDER).mkdir()
    (tmp_path / FOLDER / f"{gone}.json").write_text(json.dumps(
        {"pid": int(gone), "command": "save", "user": "bob", "since": 0, "nodes": {"fit03": {"phase": "saving",
                                                                                              "percent": 5}}}))
    (tmp_path / FOLDER / "garbled.json").write_text("{not json")
    (tmp_path / FOLDER / "other.json").write_text(json.dumps({"pid": os.getpid(), "nodes": "fit04"}))
    assert read_jobs(tmp_path) == {}
    assert read_jobs(tmp_path / "missing") == {}


def test_an_unwritable_folder_never_fails_the_job(tmp_path: Path) -> None:
    blocker = tmp_path / "lock"
    blocker.write_text("a file where the folder should be")
    board = JobBoard.start(blocker, "save", "carol", ["fit05"])  # cannot write: publishing stops, quietly
    board.event(Event("fit05", "saving", 50.0))
    board.close()
    assert read_jobs(blocker) == {}
