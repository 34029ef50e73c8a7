"""Leases: the verdict, the file backend (JSON and TOML), and the commands' refusals.
The r2labapi backend is tested over real HTTP against the emulated testbed's API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from imaging.config import Config, key
from imaging.errors import ConfigError
from imaging.leases import (
    BACKENDS,
    Lease,
    LeaseError,
    LeaseSettings,
    authorize,
    current_login,
    fetch,
    judge,
    parse_slices,
)
from tests.conftest import Result
from tests.helpers import make_image

Runner = Callable[..., Result]
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


def write(path: Path, entries: list[dict[str, str]]) -> Path:
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


def span(start: str = "2020-01-01", until: str = "2999-01-01", **more: object) -> str:
    """One lease of alice, as a JSON leases file."""
    return json.dumps([{"slice": "alice", "from": start, "until": until, **more}])


@pytest.mark.parametrize(("content", "words"), [
    ("[{", "is not valid"), ('{"a": 1}', "must hold a list"), ('[{"slice": "x"}]', "want slice, from, until"),
    ('[{"slice": "x", "from": "yesterday", "until": "2030-01-01"}]', "not an ISO 8601 time"),
    ('[{"slice": "x", "from": "2020-01-01", "until": "2030-01-01", "nodes": "junk"}]', "not a node spec"),
    ("[1]", r"lease 1: want a table of slice, from, until"),
    ('[{"slice": "", "from": "2020-01-01", "until": "2030-01-01"}]', "lease 1: want slice, from, until"),
    ("[" * 100_000, "is not valid"),
    (b"\xff[]", "is not valid"),
    # item 5: a lease that does not end after it starts
    (span(until="2019-01-01"), r"lease 1 \('alice'\): it does not end after it starts \(from 2020-01-01 00:00:00,"
                               r" until 2019-01-01 00:00:00 UTC\)"),
    (span(until="2020-01-01T00:00:00+00:00"), r"lease 1 \('alice'\): it does not end after it starts"),
    # item 5: a spec the selector refuses, however it refuses it
    (span(nodes="1" * 5000), r"lease 1 \('alice'\): nodes = '1111111111.*' is not a node spec"),
    (span(nodes=""), r"lease 1 \('alice'\): nodes = '' is not a node spec such as \"1-5\""),
    (span(nodes=[1, 2]), r"nodes = \[1, 2\] is not a node spec"),
    (span(nodes=True), "nodes = True is not a node spec"),
    # a misspelt field would make a lease of some nodes one of the whole testbed
    (span(node="1-5"), r"lease 1 \('alice'\): unknown field 'node'; want slice, from, until, nodes"),
    (span(start="9999-12-31T23:00:00-05:00"), "is not an ISO 8601 time"),
])
def test_bad_leases_files_fail_closed(tmp_path: Path, content: str | bytes, words: str) -> None:
    """Item 5: whatever is wrong in the leases file, the answer is no, in one line naming the lease."""
    path = tmp_path / "leases.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(LeaseError, match=words) as info:
        asyncio.run(authorize(LeaseSettings(backend="file", file=path, privileged=frozenset()), "alice", [1]))
    assert "\n" not in info.value.message and len(info.value.message) < 400
    with pytest.raises(LeaseError, match="cannot read the leases file"):
        asyncio.run(authorize(LeaseSettings(backend="file", file=tmp_path / "none.json",
                                            privileged=frozenset()), "alice", [1]))


def test_item5_unreadable_leases_file_refuses(tmp_path: Path) -> None:
    """Item 5: a leases file that is a folder, or never ends, is a refusal, not a hang or a traceback."""
    for path, words in ((tmp_path, r"cannot read the leases file .* \(Is a directory\)"),
                        (Path("/dev/zero"), "is larger than 16 MiB")):
        with pytest.raises(LeaseError, match=words):
            asyncio.run(authorize(LeaseSettings(backend="file", file=path, privileged=frozenset()), "alice", [1]))


def test_item5_a_lease_on_node_0_is_not_the_whole_testbed(tmp_path: Path) -> None:
    """Item 5: ``"nodes": 0`` (a falsy spec) once meant every node."""
    path = tmp_path / "leases.json"
    path.write_text(span(nodes=0))
    settings = LeaseSettings(backend="file", file=path, privileged=frozenset())
    assert asyncio.run(fetch(settings, NOW))[0].nodes == frozenset({0})
    assert not asyncio.run(authorize(settings, "alice", [1])).allowed


def test_item5_toml_file_with_unknown_tables_refuses(tmp_path: Path) -> None:
    """Item 5: ``[[leases]]`` (a typo for ``[[lease]]``) is not an empty leases file."""
    path = tmp_path / "leases.toml"
    path.write_text('[[leases]]\nslice = "alice"\nfrom = 2020-01-01T00:00:00Z\nuntil = 2999-01-01T00:00:00Z\n')
    with pytest.raises(LeaseError, match=r"holds 'leases': want only \[\[lease\]\] tables"):
        asyncio.run(fetch(LeaseSettings(backend="file", file=path), NOW))
    path.write_text('[[lease]]\nslice = "alice"\nfrom = 2020-01-01\nuntil = 2999-01-01T00:00:00Z\nnodes = "1-3"\n')
    assert asyncio.run(fetch(LeaseSettings(backend="file", file=path), NOW)) == [
        Lease("alice", datetime(2020, 1, 1, tzinfo=UTC), datetime(2999, 1, 1, tzinfo=UTC), frozenset({1, 2, 3}))]


def test_item5_unknown_backend_is_a_config_error_naming_the_backends(tmp_path: Path) -> None:
    """Item 5: refused when the config is read, and by authorize even for a privileged login."""
    conf = tmp_path / "l.conf"
    conf.write_text("[leases]\nbackend = r2lab\n")
    with pytest.raises(ConfigError) as info:
        Config.from_files([conf])
    assert info.value.message == f"{conf}:2: [leases] backend = 'r2lab' is not one of none, file, r2labapi"
    assert info.value.exit_code == 2
    with pytest.raises(ConfigError, match="backend = 'r2lab' is not one of none, file, r2labapi"):
        asyncio.run(authorize(LeaseSettings(backend="r2lab"), "root", [1]))
    assert asyncio.run(authorize(LeaseSettings(backend="none"), "alice", [1])).allowed


def test_item5_backends_are_the_names_the_config_accepts() -> None:
    assert tuple(BACKENDS) == key("leases", "backend").choices


@pytest.mark.parametrize(("backend", "words"), [("file", r"backend = file needs \[leases\] file"),
                                                ("r2labapi", r"backend = r2labapi needs \[leases\] url")])
def test_item5_backend_without_its_source_refuses(backend: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        asyncio.run(authorize(LeaseSettings(backend=backend, privileged=frozenset()), "alice", [1]))


def test_item5_login_is_the_account_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 5: ``USER=root`` does not make anyone privileged; the uid decides."""
    import pwd
    nobody = pwd.getpwnam("nobody")
    monkeypatch.setenv("USER", "root")
    monkeypatch.setenv("LOGNAME", "root")
    monkeypatch.setattr("os.getuid", lambda: nobody.pw_uid)
    assert current_login() == "nobody"
    monkeypatch.setattr("os.getuid", lambda: 4_000_000_000)  # an account without a name
    assert current_login() == "4000000000"


def test_item5_api_lease_that_does_not_end_after_it_starts(tmp_path: Path) -> None:
    """Item 5: the r2labapi backend refuses a lease of no duration, naming it; over real HTTP."""
    from aiohttp import web

    async def scenario() -> str:
        async def leases(request: web.Request) -> web.Response:
            return web.json_response([{"slice_name": "inria_bob", "t_from": "2030-01-01T10:00:00+00:00",
                                       "t_until": "2030-01-01T10:00:00+00:00"}])
        app = web.Application()
        app.router.add_get("/leases", leases)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        try:
            await authorize(LeaseSettings(backend="r2labapi", url=f"http://127.0.0.1:{port}", privileged=frozenset(),
                                          timeout=2), "alice", [1])
        except LeaseError as exc:
            return exc.message
        finally:
            await runner.cleanup()
        return "allowed"

    message = asyncio.run(scenario())
    assert message.endswith("/leases, lease 1 (inria_bob): it does not end after it starts (from 2030-01-01 10:00:00,"
                            " until 2030-01-01 10:00:00 UTC); ask the testbed's admin to fix it")


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
def test_changing_commands_refuse_without_a_lease(cli: Runner, leased: Path, command: list[str]) -> None:
    """Item 5: every command that changes nodes asks first; so does it with the leases file gone."""
    result = cli("imaging-main", command[0], "--config", str(leased), *command[1:], "1-2")
    assert result.code == 1
    assert result.err.startswith(f"imaging-{command[0]}: error: no lease: the testbed is booked by someone-else"
                                 " until ")
    assert not list((leased.parent / "pxelinux.cfg").glob("01-*"))
    (leased.parent / "leases.json").unlink()
    result = cli("imaging-main", command[0], "--config", str(leased), *command[1:], "1-2")
    assert result.code == 1 and "error: cannot read the leases file" in result.err
    assert not list((leased.parent / "pxelinux.cfg").glob("01-*"))


@pytest.mark.parametrize("command", [["load", "-i", "u"], ["on"], ["reset"]])
def test_item5_unknown_backend_refuses_even_root(cli: Runner, leased: Path, command: list[str]) -> None:
    """Item 5: the default privileged login (root) is refused too: the config is wrong."""
    (leased.parent / "odd.conf").write_text("[leases]\nbackend = ldap\nprivileged = root\n")
    result = cli("imaging-main", command[0], "--config", str(leased), "--config", str(leased.parent / "odd.conf"),
                 *command[1:], "1")
    assert result.code == 2
    assert result.err == (f"imaging-{command[0]}: error: {leased.parent / 'odd.conf'}:2: [leases] backend = 'ldap'"
                          " is not one of none, file, r2labapi\n")


def test_leases_command(cli: Runner, leased: Path) -> None:
    result = cli("imaging-main", "leases", "--config", str(leased))
    assert result.code == 0 and "* someone-else" in result.out and "refused (no lease:" in result.out
    assert cli("imaging-main", "leases", "--config", str(leased), "--check").code == 1
    data = json.loads(cli("imaging-main", "leases", "--config", str(leased), "--json").out)
    assert data["allowed"] is False and data["leases"][0]["slice"] == "someone-else"
    assert data["leases"][0]["current"] is True


def test_lease_ending_before_the_deadline_warns(cli: Runner, leased: Path) -> None:
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
