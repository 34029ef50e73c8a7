"""imaging-load with the frisbee transport, end to end on the emulated testbed.

The frisbee binaries do not exist here: test doubles print the real format.
``tests/doubles/frisbeed`` and ``tests/doubles/frisbee`` take the command
lines the product builds, print what Emulab's server and client print (the
``Joined the team`` line, a dot per 1 MiB chunk with the counts after every
67, the performance block, ``Wrote``, ``Left the team``, ``Short write`` on a
disk error) and really copy the bytes (found by a multicast announcement,
carried over TCP; see their docstrings).  For the doubles an ``.ndz`` file is
the raw disk bytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging.testbed.images import TestImage, make_image, sha256_file
from imaging.transports.frisbee import FrisbeeParser, covered_bytes

from .conftest import Testbed, started_testbed

DOUBLES = Path(__file__).resolve().parent.parent / "doubles"
FRISBEED = DOUBLES / "frisbeed"
FRISBEE = DOUBLES / "frisbee"
IMAGEDUMP = DOUBLES / "imagedump"  # run on the server: no need to copy it where nodes see it
BIN = Path(sys.executable).parent  # the venv's console scripts
NODES = 3
MIB = 2**20


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A testbed of 3 nodes with 32 MiB disks, for this module."""
    with started_testbed(tmp_path_factory.mktemp("frisbee"), NODES, disk_mib=32) as testbed:
        yield testbed


@pytest.fixture(scope="module")
def node_doubles() -> Iterator[Path]:
    """The doubles copied where a node sees them: a node has a private ``/tmp`` (and
    ``/run``, ``/dev``), so a checkout under ``/tmp`` is out of its sight; ``/var``
    is the host's (under an overlay that each boot mounts afresh)."""
    folder = Path(tempfile.mkdtemp(prefix="imaging-doubles-", dir="/var/tmp"))
    try:
        for double in (FRISBEED, FRISBEE):
            shutil.copy2(double, folder / double.name)
        folder.chmod(0o755)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def frisbee_conf(bed: Testbed, node_doubles: Path) -> Path:
    """A config file choosing frisbee, with the doubles as its server and client."""
    path = bed.dir / "frisbee.conf"
    path.write_text(f"[transport]\nkind = frisbee\n\n[frisbee]\nserver = {node_doubles / 'frisbeed'}\n"
                    f"client = {node_doubles / 'frisbee'}\n")
    return path


@pytest.fixture(scope="module")
def image(bed: Testbed) -> TestImage:
    """``X.ndz`` in the repository: a FAT test image (so the nodes boot it) and 6 MiB of random bytes."""
    made = asyncio.run(make_image("X", bed.dir / "scratch", size_mib=7, random_fill=True))
    ndz = bed.layout.images_dir / "X.ndz"
    made.path.replace(ndz)
    return dataclasses.replace(made, path=ndz, sha256=made.raw_sha256)


@pytest.fixture
def healthy(bed: Testbed) -> Iterator[Testbed]:
    """The module's testbed; every node's faults are cleared afterwards."""
    yield bed
    for number in range(1, NODES + 1):
        bed.fault(number, "clear")


def load(bed: Testbed, conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``imaging-load --config CONF -i X --transport frisbee --json -t 60 ARGS…`` in the server namespace."""
    return bed.run(str(BIN / "imaging-load"), "--config", str(conf), "-i", "X", "--transport", "frisbee",
                   "--json", "-t", "60", *args, timeout=90)


def summary(run: subprocess.CompletedProcess[str]) -> dict[str, dict[str, object]]:
    """The per-node results of a ``--json`` run, by hostname."""
    last = json.loads(run.stdout.strip().splitlines()[-1])
    return {result["node"]: result for result in last["summary"]}


def links(bed: Testbed) -> list[str]:
    """The per-MAC next-boot links left in the pxelinux folder."""
    return sorted(p.name for p in bed.layout.pxe_dir.glob("01-*"))


def doubles_running(bed: Testbed) -> list[str]:
    """Command lines of frisbee double processes serving this testbed's images."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(Path(arg).name in ("frisbeed", "frisbee") for arg in argv) and str(bed.dir) in " ".join(argv):
            found.append(" ".join(argv))
    return found


def transport_log(bed: Testbed, number: int) -> str:
    """The newest per-node transport log of node ``number``."""
    logs = sorted(bed.layout.transport_logs_dir.glob(f"*/{bed.node(number).name}.log"))
    assert logs, f"no transport log for {bed.node(number).name}"
    return logs[-1].read_text()


def parse(lines: list[str]) -> tuple[FrisbeeParser, list[float]]:
    """Feed ``lines`` to a frisbee parser; the parser and the percents it reported."""
    parser = FrisbeeParser()
    percents = [p.percent for p in map(parser.feed, lines) if p is not None and p.percent is not None]
    return parser, percents


def test_load_three_nodes_then_boot_them(bed: Testbed, frisbee_conf: Path, image: TestImage) -> None:
    run = load(bed, frisbee_conf, "-a")
    assert run.returncode == 0, run.stdout + run.stderr
    assert all(result["ok"] for result in summary(run).values())
    for number in range(1, NODES + 1):
        assert sha256_file(bed.disk(number), limit=image.raw_size) == image.raw_sha256, bed.node(number).name
    assert links(bed) == []
    assert doubles_running(bed) == []
    wait = bed.run(str(BIN / "imaging-wait"), "--config", str(frisbee_conf), "-a", "-t", "30", timeout=45)
    assert wait.returncode == 0, wait.stdout + wait.stderr
    for number in range(1, NODES + 1):
        assert bed.ssh(number, "cat /etc/imaging-image").stdout.strip() == image.identity
        text = transport_log(bed, number)
        assert "Joined the team after" in text and "Left the team after" in text
        parser, percents = parse(text.splitlines())
        assert parser.chunks == 7 and parser.dots == 7 and parser.written == image.raw_size
        assert percents[-1] == 100.0 and parser.finished and parser.failure is None


def test_small_disk_fails_that_node_only(healthy: Testbed, frisbee_conf: Path, image: TestImage) -> None:
    healthy.fault(2, "disk=small:2")  # from its next boot: the load's reset
    run = load(healthy, frisbee_conf, "-a")
    assert run.returncode == 1, run.stdout + run.stderr
    results = summary(run)
    assert results["fit01"]["ok"] and results["fit03"]["ok"]
    assert not results["fit02"]["ok"]
    assert re.search(r"disk write failed: Short write on /dev/sda", str(results["fit02"]["detail"]))
    for number in (1, 3):
        assert sha256_file(healthy.disk(number), limit=image.raw_size) == image.raw_sha256
    assert healthy.disk(2).stat().st_size == 2 * MIB
    assert "Short write" in transport_log(healthy, 2)
    assert links(healthy) == []
    assert doubles_running(healthy) == []


def test_imagedump_refuses_a_small_disk_before_writing(healthy: Testbed, frisbee_conf: Path,
                                                       image: TestImage) -> None:
    conf = healthy.dir / "frisbee-imagedump.conf"
    conf.write_text(frisbee_conf.read_text() + f"imagedump = {IMAGEDUMP}\n")
    healthy.fault(2, "disk=small:2")
    before = sha256_file(healthy.disk(2))
    run = load(healthy, conf, "-n", "1-2")  # -n: no reboot of the failed node that could touch its disk
    assert run.returncode == 1, run.stdout + run.stderr
    results = summary(run)
    assert results["fit01"]["ok"]
    assert results["fit02"]["detail"] == ("disk too small: fit02 has 2.0 MiB, the image needs 7.0 MiB;"
                                         " left in the imaging OS (-n)")
    assert sha256_file(healthy.disk(2)) == before, "nothing was written on the small disk"
    assert links(healthy) == [] and doubles_running(healthy) == []


def test_covered_bytes_from_imagedump_output() -> None:
    out = subprocess.run([str(IMAGEDUMP), str(IMAGEDUMP)], capture_output=True, text=True, check=True).stdout
    sectors = -(-IMAGEDUMP.stat().st_size // 512)
    assert covered_bytes(out) == sectors * 512
    recorded = "  42 total regions: 1.0/1/3 ave/min/max per chunk\n  covered sector range: [0-16777215]\n"
    assert covered_bytes(recorded) == 8 << 30
    assert covered_bytes("  12345 bytes of compressed data\n") is None


def test_the_doubles_talk_like_frisbee(bed: Testbed) -> None:
    """The doubles alone, in the server namespace: a server until SIGTERM, a client whose
    output (several 67-dot lines, a last partial chunk) the product's parser follows."""
    scratch = bed.dir / "scratch"
    scratch.mkdir(exist_ok=True)
    size = 140 * MIB + 5  # 141 chunks, the last one of 5 bytes
    source, disk = scratch / "big.ndz", scratch / "disk"
    with open(source, "wb") as handle:
        handle.write(os.urandom(MIB))
        handle.truncate(size)
    with open(disk, "wb") as handle:
        handle.truncate(size + MIB)
    ip = bed.layout.server_ip
    server = bed.popen(str(FRISBEED), "-i", ip, "-m", "234.5.6.200", "-p", "10200", "-W", str(100 * MIB),
                       str(source))
    try:
        client = bed.run(str(FRISBEE), "-i", ip, "-m", "234.5.6.200", "-p", "10200", str(disk), timeout=30)
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=10)
    assert server.returncode == 0, out + err
    assert client.returncode == 0, client.stdout + client.stderr
    assert sha256_file(disk, limit=size) == sha256_file(source)
    assert disk.stat().st_size == size + MIB  # written in place, not truncated
    lines = client.stdout.splitlines()
    assert re.fullmatch(r"Joined the team after 0 sec\. ID is \d+\. File is 141 chunks \(143361 blocks\)",
                        lines[2])
    assert re.fullmatch(r"\.{67}[ \d]{3}\d {5}75", lines[3])
    assert re.fullmatch(r"\.{67}[ \d]{3}\d {6}8", lines[4])
    assert lines[5] == "......."
    assert lines[-2] == f"Wrote {size} bytes ({size} actual)"
    assert re.fullmatch(r"Left the team after \d+ seconds on the field!", lines[-1])
    parser, percents = parse(lines)
    assert percents[0] == 0.0 and percents == sorted(percents) and percents[-1] == 100.0
    assert percents[1] == pytest.approx(100 * 67 / 141)
    assert parser.finished and parser.failure is None and parser.dots == 141 and parser.written == size


def test_the_doubles_refuse_bad_command_lines(tmp_path: Path) -> None:
    """Like the real programs: usage or an error on stderr, exit 1."""
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=10, check=False)

    image = tmp_path / "i.ndz"
    image.write_bytes(b"x")
    for argv in ([FRISBEED, "-p", "1", image], [FRISBEED, "-m", "234.5.6.1", image],
                 [FRISBEED, "-m", "234.5.6.1", "-p", "1"], [FRISBEE, "-m", "234.5.6.1", tmp_path / "d"]):
        refused = run(*argv)
        assert refused.returncode == 1 and "usage:" in refused.stderr
    missing = run(FRISBEED, "-m", "234.5.6.1", "-p", "1", tmp_path / "none.ndz")
    assert missing.returncode == 1 and "No such file or directory" in missing.stderr
    no_disk = run(FRISBEE, "-m", "234.5.6.1", "-p", "1", tmp_path / "none")
    assert no_disk.returncode == 1 and "No such file or directory" in no_disk.stderr
