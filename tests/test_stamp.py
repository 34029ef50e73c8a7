"""The stamp a save writes into the saved OS's /etc/imaging-image: run in a real
shell, with ``mount``/``umount`` replaced by stand-ins (the emulated tier has no
partition to mount), hostile comments must arrive as text and run nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from imaging.jobs.save import stamp_command, stamp_line

HOSTILE = ["$(touch {canary})", "`touch {canary}`", "; touch {canary}", "' ; touch {canary}; '",
           "a\nb; touch {canary}", "%s %n %d", "-- --help"]


@pytest.fixture
def fake_mount(tmp_path: Path) -> dict[str, str]:
    """A PATH where mount and umount do nothing and succeed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("mount", "umount"):
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")


@pytest.mark.parametrize("comment", HOSTILE)
def test_hostile_comments_are_text(tmp_path: Path, fake_mount: dict[str, str], comment: str) -> None:
    canary = tmp_path / "canary"
    mount_point = tmp_path / "mnt"
    (mount_point / "etc").mkdir(parents=True)
    line = stamp_line("fit07", "my-image", "alice", comment.format(canary=canary))
    command = stamp_command("/dev/sda1", str(mount_point), line)
    done = subprocess.run(["sh", "-c", command], env=fake_mount, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not canary.exists()
    written = (mount_point / "etc" / "imaging-image").read_text()
    assert written == line + "\n" and written.count("\n") == 1
    assert " node fit07 image my-image by alice - " in written


def test_a_failed_mount_fails_the_stamp(tmp_path: Path, fake_mount: dict[str, str]) -> None:
    (Path(fake_mount["PATH"].split(":")[0]) / "mount").write_text("#!/bin/sh\nexit 32\n")
    command = stamp_command("/dev/sda1", str(tmp_path / "mnt"), stamp_line("fit07", "x", "bob", ""))
    assert subprocess.run(["sh", "-c", command], env=fake_mount).returncode != 0
