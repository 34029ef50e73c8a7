"""Fixtures shared by the tests: a sandboxed environment and a CLI runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from imaging.cli.main import main
from tests.helpers import SAMPLE_INVENTORY

pytest_plugins = ["tests.bmcs"]  # the card behind the BMCs of the power drivers' tests


@dataclass
class Result:
    """What a command did: exit code and its two outputs."""

    code: int
    out: str
    err: str


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A current directory and HOME of the test's own, and a config file
    ($IMAGING_CONFIG) naming the sample inventory and a repository in it."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    repo = tmp_path / "repo"
    for folder in (home, work, repo):
        folder.mkdir()
    config = tmp_path / "test.conf"
    config.write_text(
        "[testbed]\n"
        f"inventory = {SAMPLE_INVENTORY}\n"
        "all_scope = 1-37\n"
        "[images]\n"
        f"images_dir = {repo}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("IMAGING_CONFIG", str(config))
    monkeypatch.delenv("NODES", raising=False)
    monkeypatch.chdir(work)
    return tmp_path


@pytest.fixture
def cli(sandbox: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run a command in-process: ``cli("imaging-main", "nodes", "1-3")``."""

    def run(*argv: str) -> Result:
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's --help and usage errors
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
