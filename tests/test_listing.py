"""`imaging-list` hides nothing (issue item 5): entries named like images that no load
can use are listed as ``broken: …``, and ``--verify`` fails on them."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from datetime import datetime
from io import StringIO
from pathlib import Path

import pytest

from imaging.cli.listing import SORT_KEYS, matches, print_json, print_table
from imaging.images import Repository
from tests.conftest import Result
from tests.helpers import ROOT, make_image

T0 = 1_700_000_000
Cli = Callable[..., Result]


@pytest.fixture
def repo(sandbox: Path) -> Path:
    """The sandbox's repository: an image with a good sidecar and an alias, a dangling
    alias, a symlink loop and a directory, all named like images."""
    repo = sandbox / "repo"
    image = make_image(repo, "base.img.zst", 2048, T0)
    (repo / "base.img.zst.sha256").write_text(hashlib.sha256(image.read_bytes()).hexdigest() + "  base.img.zst\n")
    (repo / "default.img.zst").symlink_to("base.img.zst")
    (repo / "latest.img.zst").symlink_to("saving__fit02__2026-01-01@10-00__gone.img.zst")
    (repo / "loop.ndz").symlink_to("loop.ndz")
    (repo / "unpacked.img").mkdir()
    for path in (repo / "latest.img.zst", repo / "loop.ndz", repo / "unpacked.img"):
        os.utime(path, (T0 + 60, T0 + 60), follow_symlinks=False)
    return repo


def test_item5_the_table_shows_broken_entries_with_their_reason(cli: Cli, repo: Path) -> None:
    result = cli("imaging-list")
    assert result.code == 0 and result.err == ""
    lines = result.out.splitlines()
    assert lines[1].split() == ["date", "size", "name", "aliases", "transport", "status"]
    assert lines[-2].strip() == ""
    rows = {}
    for line in lines[3:-2]:  # date time size name …, the size in two words ("2.0 KiB") or "-"
        words = line.split()
        rows[words[3] if words[2] == "-" else words[4]] = line
    assert sorted(rows) == ["base.img.zst", "latest.img.zst", "loop.ndz", "unpacked.img"]
    assert rows["latest.img.zst"].split()[2:] == ["-", "latest.img.zst", "udpcast", "broken:", "dangling", "link",
                                                  "to", "saving__fit02__2026-01-01@10-00__gone.img.zst"]
    assert rows["loop.ndz"].rstrip().endswith("frisbee     broken: symlink loop")
    assert rows["unpacked.img"].rstrip().endswith("udpcast     broken: a directory")
    assert "broken" not in rows["base.img.zst"] and "default.img.zst (default)" in rows["base.img.zst"]
    assert lines[-1] == "1 image(s), 2.0 KiB; 3 broken"


def test_item5_json_gives_every_entry_a_status(cli: Cli, repo: Path) -> None:
    (repo / "saving__fit03__2026-02-02@09-00__old.ndz").symlink_to("moved-away.ndz")
    records = {r["name"]: r for r in json.loads(cli("imaging-list", "--json").out)}
    old = records["saving__fit03__2026-02-02@09-00__old.ndz"]
    assert old["status"] == "broken: dangling link to moved-away.ndz" and old["transport"] == "frisbee"
    assert old["save"] == {"host": "fit03", "date": "2026-02-02@09-00", "radical": "old"}
    assert records["base.img.zst"]["status"] == "ok" and records["base.img.zst"]["size"] == 2048
    latest = records["latest.img.zst"]
    assert latest == {
        "name": "latest.img.zst", "path": str(repo / "latest.img.zst"), "size": None, "aliases": [],
        "alias_paths": [], "default": False, "sha256": None, "layout": None,
        "date": datetime.fromtimestamp(T0 + 60).isoformat(timespec="seconds"),  # the link's own time
        "transport": "udpcast", "status": "broken: dangling link to saving__fit02__2026-01-01@10-00__gone.img.zst",
        "save": None,
    }
    assert records["loop.ndz"]["status"] == "broken: symlink loop"
    assert records["unpacked.img"]["status"] == "broken: a directory"
    only = json.loads(cli("imaging-list", "--json", "loop").out)
    assert [r["name"] for r in only] == ["loop.ndz"]


def test_item5_verify_fails_on_broken_entries(cli: Cli, repo: Path) -> None:
    result = cli("imaging-list", "--verify")
    assert result.code == 1
    assert result.err == (
        "imaging-list: error: broken: latest.img.zst (dangling link to"
        " saving__fit02__2026-01-01@10-00__gone.img.zst), loop.ndz (symlink loop),"
        " unpacked.img (a directory); repair or remove them\n")
    records = {r["name"]: r for r in json.loads(cli("imaging-list", "--verify", "--json").out)}
    assert records["base.img.zst"]["verified"] == "ok" and records["loop.ndz"]["verified"] == "-"
    for name in ("latest.img.zst", "loop.ndz"):
        (repo / name).unlink()
    (repo / "unpacked.img").rmdir()
    assert cli("imaging-list", "--verify").code == 0


def test_item5_verify_names_mismatches_and_broken_entries_on_one_line(cli: Cli, repo: Path) -> None:
    (repo / "base.img.zst").write_bytes(b"changed")
    result = cli("imaging-list", "--verify", "base", "loop")
    assert result.code == 1
    assert result.err == ("imaging-list: error: checksum mismatch or unreadable image: base.img.zst;"
                          " broken: loop.ndz (symlink loop); repair or remove them\n")


def test_verify_fails_on_an_image_that_cannot_be_read(cli: Cli, repo: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(path: Path) -> str:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("imaging.images.file_sha256", failing)
    records = {r["name"]: r for r in json.loads(cli("imaging-list", "--verify", "--json", "base").out)}
    assert records["base.img.zst"]["verified"] == "unreadable (Input/output error)"
    result = cli("imaging-list", "--verify", "base")
    assert result.code == 1
    assert result.err == ("imaging-list: error: checksum mismatch or unreadable image: base.img.zst;"
                          " repair or remove them\n")


def test_item4_an_empty_image_is_listed_as_broken(cli: Cli, repo: Path) -> None:
    (repo / "blank.img").write_bytes(b"")
    (repo / "blank.img.sha256").write_text(hashlib.sha256(b"").hexdigest() + "  blank.img\n")
    records = {r["name"]: r for r in json.loads(cli("imaging-list", "--json", "--verify", "blank").out)}
    assert records["blank.img"]["status"] == "broken: empty file" and records["blank.img"]["verified"] == "ok"
    result = cli("imaging-list", "--verify", "blank")
    assert result.code == 1
    assert result.err == "imaging-list: error: broken: blank.img (empty file); repair or remove them\n"
    (repo / "blank.img.sha256").write_text("0" * 64 + "  blank.img\n")  # a mismatch too: named once
    result = cli("imaging-list", "--verify", "blank")
    assert result.err == ("imaging-list: error: checksum mismatch or unreadable image: blank.img;"
                          " repair or remove them\n")


def test_item5_symlink_loops_do_not_hang_the_command(repo: Path, sandbox: Path) -> None:
    for n in range(40):  # a long chain ending in a loop, and many loops
        (repo / f"chain{n}.img").symlink_to(f"chain{n + 1}.img")
    (repo / "chain40.img").symlink_to("chain0.img")
    env = dict(os.environ, IMAGING_CONFIG=str(sandbox / "test.conf"), HOME=str(sandbox / "home"))
    done = subprocess.run([str(ROOT / "bin" / "imaging-list"), "--json"], cwd=sandbox / "work", env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    statuses = {r["name"]: r["status"] for r in json.loads(done.stdout)}
    assert all(statuses[f"chain{n}.img"] == "broken: symlink loop" for n in range(41))


def test_sort_and_filter_entries(repo: Path) -> None:
    scan = Repository([repo]).scan()
    entries = scan.entries()
    by_size = sorted(entries, key=SORT_KEYS["size"])
    assert [e.name for e in by_size] == ["latest.img.zst", "loop.ndz", "unpacked.img", "base.img.zst"]
    by_date = sorted(entries, key=SORT_KEYS["date"])
    assert by_date[0].name == "base.img.zst"
    by_name = sorted(entries, key=SORT_KEYS["name"])
    assert [e.name for e in by_name] == ["base.img.zst", "latest.img.zst", "loop.ndz", "unpacked.img"]
    assert [e.name for e in entries if matches(e, ["default"])] == ["base.img.zst"]  # by its alias
    assert [e.name for e in entries if matches(e, ["unpack"])] == ["unpacked.img"]
    out = StringIO()
    print_json(entries, None, out=out)
    assert [r["status"] for r in json.loads(out.getvalue())] == [
        "ok", "broken: dangling link to saving__fit02__2026-01-01@10-00__gone.img.zst",
        "broken: symlink loop", "broken: a directory"]
    out = StringIO()
    print_table(scan.images, None, long=False, out=out)
    lines = out.getvalue().splitlines()
    assert lines[1].split() == ["date", "size", "name", "aliases", "transport"]  # no status when none is broken
    assert lines[-1] == "1 image(s), 2.0 KiB"
