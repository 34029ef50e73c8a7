"""The frisbee transport end to end on the emulated testbed, with Emulab's own programs.

``frisbeed`` runs in the server namespace; ``frisbee`` and ``imagezip`` run on the nodes' imaging OS
(built from ``third_party/`` by ``make frisbee``, or by this module when they are not there yet).  A
node's disk with a GPT, a FAT, an ext4 with files, swap and deleted data in its free blocks is saved by
imagezip (file-system-aware, the default, and ``--raw``), then loaded on four other nodes: raw images
give byte-identical disks, file-system-aware ones fsck-clean file systems with every file's sha256 equal
and the same table, and the nodes boot them.  The udpcast suite's faults hold for frisbee too: a
receiver killed, a disk too small, the server killed, a Ctrl-C: every link restored, no program left.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging import imagecheck
from imaging.transports.frisbee import FrisbeeParser, covered_bytes
from imaging_testbed import frisbee
from imaging_testbed.disks import DiskReport, DiskSpec
from imaging_testbed.images import new_identity, sha256_file
from tests.testbed.conftest import Testbed, started_testbed
from tests.testbed.product import Run
from tests.testbed.test_save import Follow, links, save, saves

NODES = 5
TARGETS = (2, 3, 4, 5)
DISK_MIB = 128
SPEC = DiskSpec(size_mib=DISK_MIB, files_mib=24, deleted_mib=64, seed=13)
DEADLINE = 60
SLOW = "32"  # Mibit/s: the 33 MiB image then takes ~9 s, long enough to strike in the middle


@pytest.fixture(scope="module")
def programs() -> Path:
    """The folder of Emulab's programs (built now when ``make frisbee`` did not run)."""
    return asyncio.run(frisbee.build())


@pytest.fixture(scope="module")
def bed(programs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A testbed of 5 nodes with 128 MiB disks whose config names the real frisbee programs."""
    with started_testbed(tmp_path_factory.mktemp("frisbeebed"), NODES, disk_mib=DISK_MIB) as testbed:
        assert f"server = {programs / 'frisbeed'}" in testbed.config.read_text()
        yield testbed


@pytest.fixture(scope="module")
def source(bed: Testbed) -> tuple[DiskReport, str]:
    """Node 1's disk made like a used system's (written while the node is off): its report and identity."""
    identity = new_identity("frisbee")
    return bed.used_disk(1, SPEC, identity), identity


@pytest.fixture(scope="module")
def saved(bed: Testbed, source: tuple[DiskReport, str], tmp_path_factory: pytest.TempPathFactory
          ) -> dict[str, Path]:
    """Node 1 saved by imagezip both ways: ``fs`` (file-system-aware) and ``raw`` (``--raw``)."""
    folder = tmp_path_factory.mktemp("frisbeesaves")
    images = {}
    for kind in ("fs", "raw"):
        done = frisbee_command(bed, folder, "save", "-o", kind, *(["--raw"] if kind == "raw" else []), "1")
        assert done.code == 0, done.out + done.err
        found = sorted(folder.glob(f"saving__fit01__*__{kind}.ndz"))
        assert len(found) == 1, sorted(p.name for p in folder.iterdir())
        images[kind] = found[0]
    return images


@pytest.fixture(autouse=True)
def healthy(bed: Testbed) -> Iterator[None]:
    """Every test ends with healthy nodes and no frisbee program left running."""
    yield
    for number in range(1, NODES + 1):
        bed.fault(number, "clear")
    assert frisbee_processes(bed) == []


def frisbee_command(bed: Testbed, cwd: Path, command: str, *args: str, timeout: float = 150) -> Run:
    """``imaging-<command> --transport frisbee ARGS`` in the server namespace, from ``cwd``."""
    return save(bed, cwd, "--transport", "frisbee", *args, command=command, timeout=timeout, raw=False)


def frisbee_processes(bed: Testbed) -> list[str]:
    """Command lines of the frisbee programs running for this testbed (server or client)."""
    ips = {bed.layout.server_ip, *(bed.node(n).control_ip for n in range(1, NODES + 1))}
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv and Path(argv[0]).name in (frisbee.SERVER, frisbee.CLIENT, frisbee.IMAGEZIP) and ips & set(argv):
            found.append(" ".join(argv))
    return found


def transport_log(bed: Testbed, number: int) -> str:
    """The newest transport log of node ``number``."""
    logs = sorted(bed.layout.transport_logs_dir.glob(f"*/{bed.node(number).name}.log"), key=os.path.getmtime)
    assert logs, f"no transport log for {bed.node(number).name}"
    return logs[-1].read_text()


def pid_of(bed: Testbed, name: str, needle: str, timeout: float = DEADLINE) -> int:
    """The pid of the running program ``name`` whose command line holds ``needle``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                argv = cmdline.read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if argv and Path(argv[0]).name == name and needle in argv:
                return int(cmdline.parent.name)
        time.sleep(0.1)
    raise AssertionError(f"no {name} with {needle} within {timeout} s")


def test_the_images_are_imagezip_s(saved: dict[str, Path], source: tuple[DiskReport, str]) -> None:
    """A file-system-aware image holds the files and not the deleted data; a raw one every sector."""
    fs, raw = imagecheck.check_ndz(saved["fs"]), imagecheck.check_ndz(saved["raw"])
    assert fs.size == raw.size == DISK_MIB << 20  # the GPT's backup at the disk's end: the whole disk
    assert 24 << 20 < saved["fs"].stat().st_size < 40 << 20  # 24 MiB of random files, not the 64 deleted
    assert saved["raw"].stat().st_size > 80 << 20  # the deleted random data too
    dump = subprocess.run([str(frisbee.locate() / frisbee.IMAGEDUMP), str(saved["fs"])], capture_output=True,
                          text=True, check=True, timeout=30).stdout
    assert covered_bytes(dump) == DISK_MIB << 20
    for image in saved.values():
        digest = sha256_file(image)
        assert image.with_name(image.name + ".sha256").read_text() == f"{digest}  {image.name}\n"


def test_fs_image_loads_on_four_nodes_that_boot_it(bed: Testbed, source: tuple[DiskReport, str],
                                                    saved: dict[str, Path], tmp_path: Path) -> None:
    report, identity = source
    targets = ",".join(str(n) for n in TARGETS)
    done = frisbee_command(bed, tmp_path, "load", "-i", str(saved["fs"]), "-t", "120", targets)
    assert done.code == 0, done.out + done.err
    wait = save(bed, tmp_path, "-t", "30", targets, command="wait")
    assert wait.code == 0, wait.out + wait.err
    for number in TARGETS:
        assert bed.ssh(number, "cat /etc/imaging-image", timeout=10).stdout.strip() == identity
        parser = FrisbeeParser()
        for line in transport_log(bed, number).splitlines():
            parser.feed(line)
        assert parser.finished and parser.failure is None and parser.chunks and parser.dots == parser.chunks
    bed.assert_disks_hold(TARGETS, report)
    assert links(bed) == []


def test_raw_image_gives_byte_identical_disks(bed: Testbed, saved: dict[str, Path], tmp_path: Path) -> None:
    done = frisbee_command(bed, tmp_path, "load", "-i", str(saved["raw"]), "-n", "-t", "120", "2-3")
    assert done.code == 0, done.out + done.err
    expected = sha256_file(bed.disk(1))
    for number in (2, 3):
        assert sha256_file(bed.disk(number)) == expected, bed.node(number).name
    assert links(bed) == []


def test_a_disk_too_small_is_refused_before_writing(bed: Testbed, saved: dict[str, Path], tmp_path: Path) -> None:
    bed.fault(5, "disk=small:64")
    done = frisbee_command(bed, tmp_path, "load", "-i", str(saved["fs"]), "-n", "-t", str(DEADLINE), "5")
    assert done.code == 1, done.out + done.err
    assert "disk too small: fit05 has 64.0 MiB, the image needs 128.0 MiB" in done.out, done.out + done.err
    assert links(bed) == []


@pytest.mark.parametrize("strike", ["receiver", "server", "sigint"])
def test_a_load_struck_mid_transfer_cleans_up(bed: Testbed, saved: dict[str, Path], tmp_path: Path,
                                              strike: str) -> None:
    """A slowed load of nodes 4 and 5, struck once node 5's client wrote some chunks: its client killed,
    the server killed, or the command interrupted; every link restored, nothing left running."""
    follow = Follow(bed, tmp_path, "--transport", "frisbee", "-i", str(saved["fs"]), "-b", SLOW,
                    "-t", str(DEADLINE), "4-5", command="load")
    follow.wait_for(lambda e: e.get("node") == "fit05" and e.get("phase") == "receiving"
                    and (e.get("percent") or 0) >= 10, "fit05 receiving", timeout=DEADLINE)
    if strike == "receiver":
        os.kill(pid_of(bed, frisbee.CLIENT, bed.node(5).control_ip), signal.SIGKILL)
    elif strike == "server":
        os.kill(pid_of(bed, frisbee.SERVER, bed.layout.server_ip), signal.SIGKILL)
    else:
        follow.process.send_signal(signal.SIGINT)
    code, seconds, summary, err = follow.finish(timeout=DEADLINE + 10)
    assert "Traceback" not in err
    assert seconds < DEADLINE + 3
    assert links(bed) == []
    if strike == "sigint":
        assert code == 130, err
        return
    assert code == 1, err
    results = {r["node"]: r for r in summary["summary"]}
    if strike == "receiver":
        assert "receiver killed by signal 9" in results["fit05"]["detail"], results
        assert results["fit04"]["ok"], results
    else:
        for host in ("fit04", "fit05"):
            assert "the sender exited -9" in results[host]["detail"], results


def test_a_save_interrupted_publishes_nothing(bed: Testbed, tmp_path: Path) -> None:
    """Ctrl-C while imagezip streams node 1's disk: no image under its name, no link, no program left."""
    follow = Follow(bed, tmp_path, "--transport", "frisbee", "-o", "struck", "-t", str(DEADLINE), "1", raw=True)
    follow.wait_for(lambda e: e.get("phase") == "saving" and (e.get("percent") or 0) >= 5, "saving",
                    timeout=DEADLINE)
    follow.process.send_signal(signal.SIGINT)
    code, seconds, _, err = follow.finish(timeout=DEADLINE + 10)
    assert code == 130, err
    assert seconds < DEADLINE + 3
    assert saves(tmp_path) == [] and links(bed) == []


def test_a_client_whose_server_never_comes_is_bounded(bed: Testbed, saved: dict[str, Path],
                                                       tmp_path: Path) -> None:
    """The client retries its join forever when no server answers: the load fails the node once it made
    no progress for ``[nodes] stall_timeout`` (10 s on the testbed), and the client is gone."""
    silent = tmp_path / "silent-frisbeed"
    silent.write_text("#!/bin/sh\nexec sleep 300\n")  # a server that runs and never serves
    silent.chmod(0o755)
    extra = tmp_path / "silent.conf"
    extra.write_text(f"[frisbee]\nserver = {silent}\n")
    done = frisbee_command(bed, tmp_path, "load", "--config", str(extra), "-i", str(saved["fs"]), "-n",
                           "-t", str(DEADLINE), "5")
    assert done.code == 1, done.out + done.err
    assert "the receiver made no progress for 10s ([nodes] stall_timeout)" in done.out, done.out + done.err
    assert done.seconds < 30
    assert "Joined the team" not in transport_log(bed, 5)
    assert links(bed) == []


def test_a_server_that_leaves_by_itself_is_fine(bed: Testbed, saved: dict[str, Path], tmp_path: Path) -> None:
    """``frisbeed -T -1`` exits by itself (status 0) once its clients left: the load is not disturbed."""
    extra = tmp_path / "leaving.conf"
    extra.write_text("[frisbee]\nserver_options = -T -1\n")
    done = frisbee_command(bed, tmp_path, "load", "--config", str(extra), "-i", str(saved["raw"]), "-n",
                           "-t", str(DEADLINE), "4-5")
    assert done.code == 0, done.out + done.err
    sender = sorted(bed.layout.transport_logs_dir.glob("*/sender-*.log"), key=os.path.getmtime)[-1].read_text()
    assert " -T -1 " in sender.splitlines()[0] and "2 active clients" in sender
    assert links(bed) == []
