"""Transports: exact command lines, parsers fed with recorded output, session patterns.

The frisbee parser is fed the real client's output, recorded verbatim on the emulated testbed into
``tests/data/frisbee/`` (transport logs as the product writes them: its ``$ command`` line, the client's
output as the node's telnet gave it, the exit status), and ``imagedump``'s real report.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imaging import patterns
from imaging.config import Config
from imaging.errors import ConfigError
from imaging.transports import transport_for
from imaging.transports.base import Channel, Progress, SendPlan
from imaging.transports.frisbee import Frisbee, FrisbeeParser, covered_bytes
from imaging.transports.udpcast import Udpcast, UdpcastParser

DATA = Path(__file__).parent / "data" / "frisbee"
CHANNEL = Channel("234.5.6.3", 10003)
PLAN = SendPlan(Path("/images/u.img.zst"), CHANNEL, "10.150.255.254", 100, 8, 10.0)


def test_udpcast_command_lines() -> None:
    udpcast = Udpcast(sender_options="--fec 8x8/64", receiver_options="--receive-timeout 30")
    assert udpcast.sender_argv(PLAN) == [
        "udp-sender", "--file", "/images/u.img.zst", "--nokbd", "--interface", "10.150.255.254",
        "--mcast-data-address", "234.5.6.3", "--portbase", "10003", "--max-bitrate", str(100 * 2**20),
        "--min-receivers", "8", "--max-wait", "10", "--rexmit-hello-interval", "100",
        "--retries-until-drop", "15", "--fec", "8x8/64"]
    zst = udpcast.receiver_command(CHANNEL, "10.150.255.254", "10.150.0.3", "/dev/sda", Path("u.img.zst"))
    assert shlex.split(zst) == ["udp-receiver", "--pipe", "zstd -d -q --progress", "--nokbd", "--interface",
                                "10.150.0.3", "--portbase", "10003", "--file", "/dev/sda", "--receive-timeout", "30"]
    raw = udpcast.receiver_command(CHANNEL, "10.150.255.254", "10.150.0.3", "/dev/sd a;x", Path("u.img"))
    assert "--pipe" not in raw and shlex.split(raw)[-3] == "/dev/sd a;x"
    save = udpcast.save_command("/dev/sda", "10.0.0.1", 10005)
    assert "{ zstd -q -c -1 < /dev/sda; echo $? >&3; } | nc -q 0 10.0.0.1 10005 >/dev/null" in save


def test_udpcast_parser_on_recorded_output() -> None:
    parser = UdpcastParser(image_size=48 * 2**20)
    recorded = ["Udp-receiver 2021-09-11", "UDP receiver for /dev/sda at 10.150.0.3 on eth0",
                "Connected as #0 to 10.150.255.254", "Listening to multicast on 234.5.6.3",
                "bytes=           0  (  0.00 Mbps)", "bytes= 10 705 968  (196.20 Mbps)",
                "bytes= 50 331 648  ( 92.00 Mbps)", "Transfer complete."]
    progress = [parser.feed(line) for line in recorded]
    assert progress[5].percent == pytest.approx(100 * 10705968 / (48 * 2**20))
    assert progress[5].message == "196.20 Mbps"
    assert progress[6].percent == 100.0
    assert parser.finished and parser.failure is None
    assert parser.bytes == 50331648


def test_udpcast_parser_follows_what_zstd_writes(tmp_path: Path) -> None:
    """A compressed image: zstd's own progress (real output of `zstd -d -q --progress`, read slowly
    as a disk would) is what the percent and the liveness count follow, after the last byte came."""
    content = 64 * 2**20
    image = tmp_path / "zeros.img.zst"
    subprocess.run(["sh", "-c", f"head -c {content} /dev/zero | zstd -q -1 -c > {image}"], check=True)
    slow = "import sys, time\nwhile sys.stdin.buffer.read(1 << 20): time.sleep(0.01)"
    done = subprocess.run(["sh", "-c", f"zstd -d -q --progress -c < {image} | {sys.executable} -c '{slow}'"],
                          capture_output=True, text=True, check=True)
    parser = UdpcastParser(image_size=image.stat().st_size, content_size=content)
    parser.feed("bytes= 3 000  (  9.00 Mbps)")  # the whole (tiny) image came at once
    work = [parser.work]
    percents = []
    for line in re.split(r"[\r\n]", done.stderr):
        progress = parser.feed(line)
        if progress is not None:
            percents.append(progress.percent)
            work.append(parser.work)
    assert len(percents) >= 3, done.stderr
    assert percents == sorted(percents) and percents[-1] == 100.0 and percents[0] < 50
    assert work == sorted(work) and work[-1] == 3000 + content
    assert parser.decoded == content


def test_udpcast_parser_failures() -> None:
    parser = UdpcastParser(image_size=100)
    parser.feed("bytes=          64  ( 1.00 Mbps)")
    parser.feed("write: No space left on device")
    assert parser.failure == "disk write failed: write: No space left on device"
    assert not parser.finished


def test_frisbee_command_lines() -> None:
    frisbee = Frisbee(server="/usr/local/sbin/frisbeed", server_options="-K 3")
    plan = SendPlan(Path("/images/ubuntu.ndz"), CHANNEL, "192.168.3.100", 500, 12, 10.0)
    assert frisbee.sender_argv(plan) == ["/usr/local/sbin/frisbeed", "-d", "-i", "192.168.3.100", "-m",
                                         "234.5.6.3", "-p", "10003", "-W", str(500 * 2**20), "-K", "3",
                                         "/images/ubuntu.ndz"]
    assert frisbee.receiver_command(CHANNEL, "192.168.3.100", "192.168.3.7", "/dev/sda", Path("x.ndz")) == (
        "frisbee -i 192.168.3.7 -m 234.5.6.3 -p 10003 /dev/sda")
    assert "{ imagezip -z1 /dev/sda -; echo $? >&3; } | nc -q 0 192.168.3.100 10001" in (
        frisbee.save_command("/dev/sda", "192.168.3.100", 10001))
    assert "{ imagezip -r -z1 /dev/sda -; echo $? >&3; }" in frisbee.save_command("/dev/sda", "10.0.0.1", 1, raw=True)


@pytest.mark.parametrize(("producer", "consumer", "status"), [
    ("echo data", "cat", 0), ("false", "cat", 1), ("echo data", "false", 1), ("false", "false", 1),
])
def test_pipeline_fails_when_either_side_fails(producer: str, consumer: str, status: int) -> None:
    import subprocess

    from imaging.transports.base import pipeline
    done = subprocess.run(["sh", "-c", pipeline(producer, consumer)], capture_output=True, text=True)
    assert done.returncode == status


def recorded(name: str) -> list[str]:
    """The client's lines of a recorded transport log (without the product's command and status lines)."""
    lines = (DATA / name).read_text().splitlines()
    assert lines[0].startswith("$ ") and lines[-1].startswith("exit status ")
    return lines[1:-1]


def test_frisbee_parser_follows_a_real_load() -> None:
    parser = FrisbeeParser()
    percents = [p.percent for p in map(parser.feed, recorded("client-101-chunks.log")) if p and p.percent is not None]
    assert parser.chunks == 101 and parser.dots == 101
    assert percents[0] == 0.0 and percents == sorted(percents) and percents[-1] == 100.0
    assert percents[1] == pytest.approx(100 * 67 / 101)  # the first line of 67 dots
    assert parser.finished and parser.failure is None
    assert parser.written == 128 << 20  # the whole disk: the image covers it


def test_frisbee_parser_follows_a_line_of_dots_as_it_grows() -> None:
    """The client ends a line of dots after 67 chunks only: the line is followed while it is written, and
    each chunk counts as work once (the whole line then comes to feed)."""
    parser = FrisbeeParser()
    parser.feed("Joined the team after 0 sec. ID is 1004524055. File is 101 chunks (105906176 bytes)")
    works = []
    for count in (1, 2, 30, 67):
        progress = parser.partial("." * count)
        assert progress is not None and progress.percent == pytest.approx(100 * count / 101)
        works.append(parser.work)
    assert parser.partial("." * 67 + "   5 ") is None  # the counts being written: nothing new
    progress = parser.feed("." * 67 + "   5     34")
    assert progress is not None and progress.percent == pytest.approx(100 * 67 / 101)
    assert works == sorted(works) and len(set(works)) == 4 and parser.dots == 67 and parser.line_dots == 0
    assert parser.partial("....") is not None and parser.dots + parser.line_dots == 71
    assert parser.partial("Client 1004524055 Performance:") is None


def test_frisbee_parser_names_a_disk_write_error() -> None:
    parser = FrisbeeParser()
    for line in recorded("client-disk-full.log"):
        parser.feed(line)
    assert parser.failure == "disk write failed: write error: No space left on device"
    assert not parser.finished
    assert FrisbeeParser().feed("Progress: 42%") == Progress(42.0)


def test_covered_bytes_from_a_real_imagedump() -> None:
    assert covered_bytes((DATA / "imagedump-fs.txt").read_text()) == 128 << 20
    assert covered_bytes("  12345 bytes of compressed data\n") is None


def test_transport_for(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text("[udpcast]\nsender = /opt/udp-sender\n[frisbee]\nclient = /usr/bin/frisbee\n")
    config = Config.from_files([conf])
    assert transport_for("udpcast", config).sender == "/opt/udp-sender"
    assert transport_for("frisbee", config).client == "/usr/bin/frisbee"
    with pytest.raises(ConfigError, match="want frisbee or udpcast"):
        transport_for("rsync", config)


@pytest.mark.parametrize(("pattern", "number", "expected"), [
    ("10000 + *", 3, 10003), ("* + 10000", 1, 10001), ("10000 + 2 * *", 4, 10008),
    ("(* - 1) * 10 + 20000", 5, 20040), ("12345", 7, 12345), ("10000+*", 20, 10020),
])
def test_port_patterns(pattern: str, number: int, expected: int) -> None:
    assert patterns.port(pattern, number) == expected


@pytest.mark.parametrize("pattern", ["10000 + x", "10000 +", "__import__('os')", "70000 + *", "(1 + *"])
def test_bad_port_patterns(pattern: str) -> None:
    with pytest.raises(ConfigError, match="pattern_port"):
        patterns.port(pattern, 1)


def test_group_patterns() -> None:
    assert patterns.group("234.5.6.*", 7) == "234.5.6.7"
    with pytest.raises(ConfigError, match="not a multicast address"):
        patterns.group("10.0.0.*", 1)
    with pytest.raises(ConfigError, match="not an IPv4 address"):
        patterns.group("234.5.6.*", 300)


@given(st.text(max_size=30), st.integers(1, 50))
def test_port_pattern_parser_is_total(pattern: str, number: int) -> None:
    try:
        value = patterns.port(pattern, number)
    except ConfigError:
        return
    assert 1 <= value <= 65535


@pytest.mark.parametrize("size", [0, 1, 255, 256, 300, 65791, 70000, 5 * 2**20 + 3])
def test_zstd_declared_size(tmp_path: Path, size: int) -> None:
    from imaging.errors import ImageError
    from imaging.transports.udpcast import decompressed_size
    raw = tmp_path / "disk.img"
    raw.write_bytes(bytes(size))
    subprocess.run(["zstd", "-q", "-f", str(raw), "-o", str(tmp_path / "disk.img.zst")], check=True)
    assert decompressed_size(raw) == size
    if size == 0:  # item 4: an image of an empty disk would leave the nodes with no OS
        with pytest.raises(ImageError, match="empty"):
            decompressed_size(tmp_path / "disk.img.zst")
    else:
        assert decompressed_size(tmp_path / "disk.img.zst") == size
    (tmp_path / "junk.img.zst").write_bytes(b"not zstd at all")
    with pytest.raises(ImageError, match="is not a zstd file"):
        decompressed_size(tmp_path / "junk.img.zst")


def test_a_raw_save_states_the_disk_size_in_the_frame() -> None:
    """zstd --stream-size puts the disk's size in the frame header: a load of the save can tell the percent
    of the disk written, not only of the image received (which ends long before the disk is written)."""
    from imaging.transports.udpcast import Udpcast
    command = Udpcast().save_command("/dev/sda", "10.0.0.1", 1, None, 4096)
    assert "zstd -q -c -1 --stream-size=4096 < /dev/sda" in command
    assert "--stream-size" not in Udpcast().save_command("/dev/sda", "10.0.0.1", 1)
