"""Every command line the tool sends to a node, run in a real shell with hostile
values (disk paths, image names, comments, server addresses) and stand-in
programs that record the arguments they got: nothing but the intended
programs may run, and each value must arrive as one intact argument (or, for
a disk read on standard input, open exactly the file it names)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from imaging.jobs.imagingos import DISK_SIZE
from imaging.jobs.save import stamp_command, stamp_line
from imaging.transports.base import Channel
from imaging.transports.frisbee import Frisbee
from imaging.transports.udpcast import Udpcast

HOSTILE = ["$(touch {canary})", "`touch {canary}`", "x; touch {canary}", "x' ; touch {canary}; '",
           "x\ntouch {canary}", "x && touch {canary}", "x | touch {canary}", "-rf {canary}"]
PROGRAMS = ("udp-receiver", "zstd", "nc", "frisbee", "imagezip", "blockdev", "stat", "mount", "umount")


@pytest.fixture
def shell(tmp_path: Path):
    """Run a command line in sh where the node's programs only record their argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    calls.mkdir()
    for name in PROGRAMS:
        # one file per call (the two sides of a pipe run at once): its argv, then "<" and what its
        # standard input is, each NUL-terminated
        (bin_dir / name).write_text(f'#!/bin/sh\nprintf "%s\\0" "{name}" "$@" "<$(readlink /proc/self/fd/0)"'
                                    f' > "$(mktemp {calls}/call.XXXXXX)"\n')
        (bin_dir / name).chmod(0o755)
    environment = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")

    def run(command: str) -> list[list[str]]:
        for old in calls.iterdir():
            old.unlink()
        subprocess.run(["sh", "-c", command], env=environment, capture_output=True, timeout=10, cwd=tmp_path,
                       stdin=subprocess.DEVNULL)
        return [call.read_text().split("\0")[:-1] for call in calls.iterdir()]

    return run


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_values_stay_arguments(shell, tmp_path: Path, template: str) -> None:
    canary = tmp_path / "canary"
    value = template.format(canary=canary)
    channel = Channel("234.5.6.1", 10001)
    udpcast, frisbee = Udpcast(), Frisbee()
    commands = {
        "udpcast receiver": (udpcast.receiver_command(channel, "10.0.0.1", "10.0.0.2", value, Path("i.img.zst")),
                             "udp-receiver"),
        "frisbee receiver": (frisbee.receiver_command(channel, "10.0.0.1", "10.0.0.2", value, Path("i.ndz")),
                             "frisbee"),
        "udpcast save": (udpcast.save_command(value, "10.0.0.1", 10001), "zstd <"),
        "frisbee save": (frisbee.save_command(value, "10.0.0.1", 10001), "imagezip"),
        "disk size": (DISK_SIZE.format(disk=shlex.quote(value)), "blockdev"),
        "stamp": (stamp_command(value, "/nonexistent-mnt", stamp_line("fit01", "img", "u", value)), "mount"),
    }
    disk = tmp_path / value  # a disk read on standard input must exist (the shell opens it)
    disk.parent.mkdir(parents=True, exist_ok=True)
    disk.write_bytes(b"disk")
    for what, (command, program) in commands.items():
        calls = shell(command)
        assert not canary.exists(), f"{what}: the hostile value ran a command"
        assert calls, f"{what}: {program} did not run"
        name, _, stdin = program.partition(" ")
        mine = [call for call in calls if call[0] == name]
        expected = f"<{disk}" if stdin else value
        assert mine and expected in mine[0], f"{what}: {value!r} did not reach {program} intact: {calls}"
