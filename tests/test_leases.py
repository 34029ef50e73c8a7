"""Leases: the verdict, the file backend (JSON and TOML), and the commands' refusals.
The r2labapi backend is tested over real HTTP against the emulated testbed's API."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imaging.leases import Lease, LeaseError, LeaseSettings, authorize, judge, parse_slices
from tests.helpers import make_image

NOW = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
H = timedelta(hours=1)
FILE = LeaseSettings(backend="file", privileged=frozenset({"root"}))


def lease(slice_: str, start: float, end: float, nodes: set[int] | None = None) -> Lease:
    return Lease(slice_, NOW + start * H, NOW + end * H, frozenset(nodes) if nodes else None)


def test_own_current_lease_allows_until_its_end() -> None:
    verdict = judge([lease("alice", -1, 1)], FILE, "alice", [1, 2], NOW)
    assert verdict.allowed and verdict.until == NOW + H


def test_refusal_names_the_holder_and_the_next_lease() -> None:
    verdict = judge([lease("bob", -1, 1), lease("alice", 2, 3)], FILE, "alice", [1], NOW)
    assert not verdict.allowed
    assert verdict.reason == ("no lease: the testbed is booked by bob until 14:00 UTC;"
                              " your next lease starts 15:00 UTC")
    nobody = judge([], FILE, "alice", [1], NOW)
    assert nobody.reason == "no lease: alice has no lease now; book one in the leases system"


def test_privileged_and_open_testbed_and_slice_mapping() -> None:
    assert judge([lease("bob", -1, 1)], FILE, "root", [1], NOW).allowed
    assert judge([], LeaseSettings(), "anyone", [1], NOW).allowed
    mapped = LeaseSettings(backend="file", slices=parse_slices("alice:inria_alice, carol:upmc"))
    assert judge([lease("inria_alice", -1, 1)], mapped, "alice", [3], NOW).allowed
    assert not judge([lease("alice", -1, 1)], mapped, "alice", [3], NOW).allowed


def test_per_node_leases() -> None:
    leases = [lease("alice", -1, 1, {1, 2, 3, 4, 5})]
    assert judge(leases, FILE, "alice", [1, 2, 3, 4, 5], NOW).allowed
    refused = judge(leases, FILE, "alice", [5, 6], NOW)
    assert not refused.allowed and "does not include node(s) 6" in refused.reason


def write(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps(entries))
    return path


def test_file_backend_json_and_toml(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    json_file = write(tmp_path / "leases.json", [
        {"slice": "alice", "from": (now - H).isoformat(), "until": (now + H).isoformat(), "nodes": "1-5"},
        {"slice": "bob", "from": (now + H).isoformat(), "until": (now + 2 * H).isoformat()}])
    settings = LeaseSettings(backend="file", file=json_file, privileged=frozenset())
    assert asyncio.run(authorize(settings, "alice", [1, 5])).allowed
    assert not asyncio.run(authorize(settings, "alice", [6])).allowed
    toml_file = tmp_path / "leases.toml"
    toml_file.write_text('[[lease]]\nslice = "carol"\nfrom = 2020-01-01T00:00:00Z\nuntil = 2999-01-01T00:00:00Z\n')
    assert asyncio.run(authorize(LeaseSettings(backend="file", file=toml_file, privileged=frozenset()),
                                 "carol", [9])).allowed


@pytest.mark.parametrize(("content", "words"), [
    ("[{", "is not valid"), ('{"a": 1}', "must hold a list"), ('[{"slice": "x"}]', "want slice, from, until"),
    ('[{"slice": "x", "from": "yesterday", "until": "2030-01-01"}]', "not an ISO 8601 time"),
    ('[{"slice": "x", "from": "2020-01-01", "until": "2030-01-01", "nodes": "junk"}]', "not a node spec"),
])
def test_bad_leases_files_fail_closed(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "leases.json"
    path.write_text(content)
    with pytest.raises(LeaseError, match=words):
        asyncio.run(authorize(LeaseSettings(backend="file", file=path, privileged=frozenset()), "alice", [1]))
    with pytest.raises(LeaseError, match="cannot read the leases file"):
        asyncio.run(authorize(LeaseSettings(backend="file", file=tmp_path / "none.json",
                                            privileged=frozenset()), "alice", [1]))


@pytest.fixture
def leased(sandbox: Path) -> Path:
    """The sandbox with the file backend, nobody privileged, a pxelinux folder and an image."""
    now = datetime.now(UTC)
    leases = write(sandbox / "leases.json", [{"slice": "someone-else", "from": (now - H).isoformat(),
                                              "until": (now + H).isoformat()}])
    pxe = sandbox / "pxelinux.cfg"
    pxe.mkdir()
    (pxe / "pxefrisbee").write_text("DEFAULT imaging\n")
    make_image(sandbox / "repo", "u.img.zst")
    conf = sandbox / "leases.conf"
    conf.write_text(f"[leases]\nbackend = file\nfile = {leases}\nprivileged = nobody-at-all\n"
                    f"[pxelinux]\nconfig_dir = {pxe}\n[transport]\nkind = udpcast\nserver_ip = 127.0.0.1\n")
    return conf


@pytest.mark.parametrize("command", [["load", "-i", "u"], ["save", "-o", "x"], ["on"], ["off"], ["reset"]])
def test_changing_commands_refuse_without_a_lease(cli, leased: Path, command: list[str]) -> None:
    result = cli("imaging-main", command[0], "--config", str(leased), *command[1:], "1-2")
    assert result.code == 1
    assert result.err.startswith(f"imaging-{command[0]}: error: no lease: the testbed is booked by someone-else"
                                 " until ")
    assert not list((leased.parent / "pxelinux.cfg").glob("01-*"))


def test_leases_command(cli, leased: Path) -> None:
    result = cli("imaging-main", "leases", "--config", str(leased))
    assert result.code == 0 and "* someone-else" in result.out and "refused (no lease:" in result.out
    assert cli("imaging-main", "leases", "--config", str(leased), "--check").code == 1
    data = json.loads(cli("imaging-main", "leases", "--config", str(leased), "--json").out)
    assert data["allowed"] is False and data["leases"][0]["slice"] == "someone-else"
    assert data["leases"][0]["current"] is True


def test_lease_ending_before_the_deadline_warns(cli, leased: Path) -> None:
    import getpass
    now = datetime.now(UTC)
    write(leased.parent / "leases.json", [{"slice": "tester", "from": (now - H).isoformat(),
                                           "until": (now + timedelta(minutes=5)).isoformat()}])
    extra = leased.parent / "extra.conf"
    extra.write_text(f"[leases]\nslices = {getpass.getuser()}:tester\n[nodes]\ncmc_timeout = 0.5\n")
    # the sample inventory's CMCs are on loopback, where nothing listens: the load fails fast, after the warning
    result = cli("imaging-load", "--config", str(leased), "--config", str(extra), "-i", "u", "-t", "600", "1")
    assert "imaging-load: warning: your lease ends at " in result.err
    assert "before this command's deadline (600s)" in result.err
    assert result.code == 1 and "unreachable" in result.out
