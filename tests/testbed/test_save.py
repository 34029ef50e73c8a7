"""imaging-save end to end on the emulated testbed: a load, a save and a load of
the save (round trip, byte for byte); two nodes at once; failures mid-stream
(the node's pipeline killed, the node reset, the server's disk full, Ctrl-C),
each leaving no file under a real name, no partial file, no next-boot link;
and bad input refused before anything is written.

These saves are raw (``--raw``: every byte of the disk, ``.img.zst``); the
file-system-aware format, udpcast's default, has its own module
(``test_save_partclone.py``)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from imaging_testbed.images import TestImage, make_image, sha256_file
from tests.testbed.conftest import Testbed, started_testbed
from tests.testbed.product import BIN, Run, product

NODES = 8
DISK_MIB = 40
DISK_BYTES = DISK_MIB << 20
THROTTLE = "80mbit"  # 40 MiB of random disk then take ~4 s: long enough to strike mid-stream
DEADLINE = 30  # -t of the failing saves


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A testbed of 8 nodes with 40 MiB disks, for this module."""
    with started_testbed(tmp_path_factory.mktemp("savebed"), NODES, disk_mib=DISK_MIB) as testbed:
        yield testbed


@pytest.fixture(autouse=True)
def healthy(bed: Testbed) -> Iterator[None]:
    """Every test ends with healthy, unthrottled nodes."""
    yield
    for number in range(1, NODES + 1):
        bed.fault(number, "clear")
        unthrottle(bed, number)


# --- helpers ---------------------------------------------------------------------------------------

def save(bed: Testbed, cwd: Path, *args: str, command: str = "save", timeout: float = 90.0, raw: bool = True) -> Run:
    """``imaging-<command> args…`` in the server namespace, run from ``cwd`` (a save with ``--raw``
    unless ``raw`` is false)."""
    start = time.monotonic()
    options = ["--raw"] if command == "save" and raw else []
    argv = ["ip", "netns", "exec", bed.layout.server_ns, str(BIN / f"imaging-{command}"), *options, *args]
    done = subprocess.run(argv,
                          env={**os.environ, "IMAGING_CONFIG": str(bed.config)}, cwd=cwd, text=True,
                          capture_output=True, timeout=timeout, check=False)
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - start)


class Follow:
    """``imaging-save --json`` (or another ``command``) started from ``cwd``; its events read by a thread
    (so the product never blocks on a full pipe while the test strikes)."""

    def __init__(self, bed: Testbed, cwd: Path, *args: str, raw: bool = True, command: str = "save") -> None:
        self.start = time.monotonic()
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", bed.layout.server_ns, str(BIN / f"imaging-{command}"), "--json",
             *(["--raw"] if raw and command == "save" else []), *args],
            env={**os.environ, "IMAGING_CONFIG": str(bed.config)}, cwd=cwd, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.events: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                with self.changed:
                    self.events.append(json.loads(line))
                    self.changed.notify_all()
        with self.changed:
            self.events.append({"eof": True})
            self.changed.notify_all()

    def wait_for(self, test: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30.0) -> None:
        """Until an event passes ``test``."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.changed:
            while True:
                for event in self.events[seen:]:
                    assert "eof" not in event, f"the save ended before {what}: {self.events[-3:]}"
                    if test(event):
                        return
                seen = len(self.events)
                left = deadline - time.monotonic()
                assert left > 0, f"no {what} within {timeout} s"
                self.changed.wait(left)

    def mid_stream(self, percent: float = 5.0) -> None:
        """Until the server has received ``percent`` of the disk."""
        self.wait_for(lambda e: e.get("phase") == "saving" and (e.get("percent") or 0) >= percent,
                      f"saving at {percent} %")

    def finish(self, timeout: float = DEADLINE + 10) -> tuple[int, float, dict[str, Any], str]:
        """Exit code, seconds, the JSON summary, stderr."""
        code = self.process.wait(timeout=timeout)
        seconds = time.monotonic() - self.start
        self.reader.join(5)
        assert self.process.stderr is not None
        err = self.process.stderr.read()
        summaries = [e for e in self.events if "summary" in e]
        return code, seconds, summaries[-1] if summaries else {}, err


def links(bed: Testbed) -> list[str]:
    """The per-MAC next-boot links left in the pxelinux folder."""
    return sorted(p.name for p in (bed.dir / "tftp" / "pxelinux.cfg").glob("01-*"))


def saves(folder: Path) -> list[str]:
    """Everything a save may have left in ``folder`` (published, sidecar or partial)."""
    return sorted(p.name for p in folder.glob("saving__*"))


def published(folder: Path, host: str, radical: str) -> Path:
    """The one image ``host`` published in ``folder`` under ``radical``."""
    found = sorted(folder.glob(f"saving__{host}__*__{radical}.img.zst"))
    assert len(found) == 1, saves(folder)
    return found[0]


def decompressed_sha256(path: Path, limit: int | None = None) -> tuple[str, int]:
    """sha256 and size of ``zstd -d`` of ``path`` (its first ``limit`` bytes)."""
    digest, size = hashlib.sha256(), 0
    with subprocess.Popen(["zstd", "-d", "-c", "-q", str(path)], stdout=subprocess.PIPE) as unzip:
        assert unzip.stdout is not None
        while chunk := unzip.stdout.read(1 << 20):
            if limit is not None:
                chunk = chunk[:limit - size]
            digest.update(chunk)
            size += len(chunk)
            if limit is not None and size >= limit:
                unzip.kill()
                break
    return digest.hexdigest(), size


def check_sidecar(image: Path) -> str:
    """The published file's sha256, checked against its ``.sha256`` sidecar."""
    digest = sha256_file(image)
    assert image.with_name(image.name + ".sha256").read_text() == f"{digest}  {image.name}\n"
    return digest


def random_disk(bed: Testbed, number: int) -> None:
    """Fill the node's whole disk with random bytes, in place (the file is bind-mounted in the node)."""
    with open(bed.disk(number), "r+b") as disk:
        for _ in range(DISK_MIB):
            disk.write(os.urandom(1 << 20))


def throttle(bed: Testbed, number: int, rate: str = THROTTLE) -> None:
    """Cap what the node sends (tbf on its eth0; the testbed's kernel has no netem)."""
    subprocess.run(["ip", "netns", "exec", bed.node(number).netns, "tc", "qdisc", "replace", "dev", "eth0", "root",
                    "tbf", "rate", rate, "burst", "64kb", "latency", "400ms"], check=True)


def unthrottle(bed: Testbed, number: int) -> None:
    """Remove :func:`throttle`'s cap (no error when there is none)."""
    subprocess.run(["ip", "netns", "exec", bed.node(number).netns, "tc", "qdisc", "del", "dev", "eth0", "root"],
                   capture_output=True, check=False)


def assert_nothing_left(bed: Testbed, folder: Path, code: int, seconds: float, expected_code: int = 1) -> None:
    """A failed save: its exit code, within the deadline, nothing under a real name nor partial, no link."""
    assert code == expected_code
    assert seconds < DEADLINE + 3
    assert saves(folder) == []
    assert links(bed) == []


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` (made), unmounted after."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


# --- round trip ------------------------------------------------------------------------------------

def test_round_trip_load_save_load(bed: Testbed, tmp_path: Path) -> None:
    image: TestImage = asyncio.run(make_image("savesource", bed.dir / "images", size_mib=16, compressed=True,
                                              random_fill=True))
    loaded = product(bed, "load", "-i", "savesource", "-t", "40", "3")
    assert loaded.code == 0, loaded.out + loaded.err
    assert sha256_file(bed.disk(3), limit=image.raw_size) == image.raw_sha256

    saved = save(bed, tmp_path, "-o", "roundtrip", "-t", "40", "3")
    assert saved.code == 0, saved.out + saved.err
    target = published(tmp_path, "fit03", "roundtrip")
    check_sidecar(target)
    assert not list(tmp_path.glob("*.partial"))
    assert decompressed_sha256(target, image.raw_size) == (image.raw_sha256, image.raw_size)
    assert decompressed_sha256(target) == (sha256_file(bed.disk(3)), DISK_BYTES)  # the whole disk
    assert links(bed) == []

    reloaded = save(bed, tmp_path, "-i", "roundtrip", "-t", "60", "4-8", command="load")
    assert reloaded.code == 0, reloaded.out + reloaded.err
    for number in range(4, 9):
        assert sha256_file(bed.disk(number), limit=image.raw_size) == image.raw_sha256, f"fit0{number}"
        assert sha256_file(bed.disk(number)) == sha256_file(bed.disk(3)), f"fit0{number}, whole disk"
    assert product(bed, "wait", "-t", "30", "3-8").code == 0
    identity = bed.ssh(3, "cat /etc/imaging-image").stdout.strip()
    assert identity == image.identity
    for number in range(4, 9):
        assert bed.ssh(number, "cat /etc/imaging-image").stdout.strip() == identity, f"fit0{number}"


def test_two_nodes_at_once(bed: Testbed, tmp_path: Path) -> None:
    random_disk(bed, 2)
    run = save(bed, tmp_path, "-o", "pair", "-t", "40", "1-2")
    assert run.code == 0, run.out + run.err
    for number in (1, 2):
        target = published(tmp_path, f"fit0{number}", "pair")
        check_sidecar(target)
        assert decompressed_sha256(target) == (sha256_file(bed.disk(number)), DISK_BYTES), f"fit0{number}"
    assert len(saves(tmp_path)) == 4  # two images, two sidecars
    assert links(bed) == []


# --- failures mid-stream ---------------------------------------------------------------------------

def test_pipeline_killed_mid_stream(bed: Testbed, tmp_path: Path) -> None:
    random_disk(bed, 5)
    throttle(bed, 5)
    follow = Follow(bed, tmp_path, "-o", "killed", "-t", str(DEADLINE), "5")
    follow.mid_stream()
    assert any(p.name.endswith(".partial") for p in tmp_path.iterdir())  # it really was mid-stream
    bed.telnet(5, "pkill -9 zstd")
    code, seconds, summary, err = follow.finish()
    assert_nothing_left(bed, tmp_path, code, seconds)
    detail = summary["summary"][0]["detail"]
    assert "the save pipeline on the node failed" in detail, (detail, err)


def test_node_reset_mid_stream(bed: Testbed, tmp_path: Path) -> None:
    random_disk(bed, 6)
    throttle(bed, 6)
    follow = Follow(bed, tmp_path, "-o", "reset", "-t", str(DEADLINE), "6")
    follow.mid_stream()
    assert bed.cmc(6, "reset").stdout.strip() == "ok"
    code, seconds, summary, err = follow.finish()
    assert_nothing_left(bed, tmp_path, code, seconds)
    assert summary["ok"] is False, err


def test_server_disk_too_small_is_refused(bed: Testbed, tmp_path: Path) -> None:
    random_disk(bed, 7)
    with tmpfs(tmp_path / "small", "8m") as folder:
        log = tmp_path / "conf"
        log.write_text(f"[logging]\nfile = {tmp_path / 'imaging.log'}\n")
        follow = Follow(bed, folder, "--config", str(log), "-o", "small", "-t", str(DEADLINE), "7")
        code, seconds, summary, err = follow.finish()
        assert_nothing_left(bed, folder, code, seconds)
        assert "not enough space" in summary["summary"][0]["detail"], (summary, err)


def test_server_disk_full_mid_stream(bed: Testbed, tmp_path: Path) -> None:
    """Room for exactly the raw disk: the check before the stream passes, the compressed random
    stream (a few hundred bytes larger) fills the file system."""
    random_disk(bed, 7)
    with tmpfs(tmp_path / "full", "41m") as folder:
        log = tmp_path / "conf"
        log.write_text(f"[logging]\nfile = {tmp_path / 'imaging.log'}\n")
        stat = os.statvfs(folder)
        filler = stat.f_bavail * stat.f_frsize - DISK_BYTES
        (folder / "filler").write_bytes(b"\0" * filler)
        stat = os.statvfs(folder)
        assert stat.f_bavail * stat.f_frsize == DISK_BYTES
        follow = Follow(bed, folder, "--config", str(log), "-o", "full", "-t", str(DEADLINE), "7")
        code, seconds, summary, err = follow.finish()
        (folder / "filler").unlink()
        assert_nothing_left(bed, folder, code, seconds)
        assert "the server's disk is full" in summary["summary"][0]["detail"], (summary, err)


@pytest.mark.parametrize(("number", "keep"), [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["sigint-discard", "sigint-keep-partial", "sigterm"])
def test_ctrl_c_mid_stream(bed: Testbed, tmp_path: Path, number: signal.Signals, keep: bool) -> None:
    """Item 1 of the hostile-user list too: a save interrupted while it streams prints no traceback
    (asyncio used to print the receiver's cancelled connection as an error)."""
    random_disk(bed, 8)
    throttle(bed, 8)
    follow = Follow(bed, tmp_path, "-o", "interrupted", "-t", str(DEADLINE), *(["--keep-partial"] if keep else []),
                    "8")
    follow.mid_stream()
    follow.process.send_signal(number)
    code, seconds, summary, err = follow.finish()
    assert summary.get("ok") is False, err
    assert not any(word in err for word in ("Traceback", "Exception in callback", "CancelledError")), err
    if number == signal.SIGTERM:
        assert_nothing_left(bed, tmp_path, code, seconds, expected_code=1)
        return
    if keep:
        left = saves(tmp_path)
        assert len(left) == 1 and left[0].endswith("__interrupted.img.zst.partial"), left
        assert 0 < (tmp_path / left[0]).stat().st_size < DISK_BYTES
        (tmp_path / left[0]).unlink()
    assert_nothing_left(bed, tmp_path, code, seconds, expected_code=130)


def test_a_program_missing_on_the_node_is_named_at_once(bed: Testbed, tmp_path: Path) -> None:
    """Item 2: a save whose compressor the imaging OS does not have (frisbee's imagezip here) fails at
    once naming it, instead of sitting in "saving" until the deadline; nothing is written."""
    extra = tmp_path / "no-imagezip.conf"
    extra.write_text("[frisbee]\nimagezip = no-such-imagezip\n")
    run = save(bed, tmp_path, "--config", str(extra), "--transport", "frisbee", "--json", "-o", "nozip",
               "-t", str(DEADLINE), "5", raw=False)
    assert run.code == 1, run.out + run.err
    detail = run.json_lines()[-1]["summary"][0]["detail"]
    assert detail.startswith("the imaging OS of fit05 has no no-such-imagezip: install it there"), detail
    assert detail.endswith("; reset to boot its disk"), detail
    assert run.seconds < 15
    assert saves(tmp_path) == [] and links(bed) == []


# --- bad input -------------------------------------------------------------------------------------

def refused(bed: Testbed, run: Run, folder: Path, message: str) -> None:
    """Exit 2, one line on stderr holding ``message``, no image written, no link."""
    assert run.code == 2, run.out + run.err
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imaging-save: error: "), run.err
    assert message in lines[0], run.err
    assert run.seconds < 10
    assert [name for name in saves(folder) if "__existing." not in name] == []
    assert links(bed) == []


def test_existing_target_needs_force(bed: Testbed, tmp_path: Path) -> None:
    now = datetime.now()
    existing = [tmp_path / f"saving__fit01__{(now + timedelta(minutes=m)).strftime('%Y-%m-%d@%H-%M')}__existing.img.zst"
                for m in (0, 1)]  # this minute and the next: no race with the clock
    for path in existing:
        path.write_bytes(b"precious")
    run = save(bed, tmp_path, "-o", "existing", "1")
    refused(bed, run, tmp_path, "exists; pass --force")
    assert all(path.read_bytes() == b"precious" for path in existing)
    assert saves(tmp_path) == sorted(p.name for p in existing)


@pytest.mark.parametrize("name", ["../x", "a b"])
def test_invalid_name(bed: Testbed, tmp_path: Path, name: str) -> None:
    run = save(bed, tmp_path, "-o", name, "1")
    refused(bed, run, tmp_path, f"image name {name!r} contains a")


def test_unknown_node(bed: Testbed, tmp_path: Path) -> None:
    run = save(bed, tmp_path, "-o", "ghost", "99")
    refused(bed, run, tmp_path, "no node 99 in the inventory")
