"""The commands' front door: dispatch, node selection, listing, config, errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import make_image

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def test_issue_examples(cli) -> None:
    result = cli("imaging-main", "nodes", "1-12", "fit15-reboot18", "~4-6")
    assert result.code == 0
    assert result.out.split() == ["fit01", "fit02", "fit03", "fit07", "fit08", "fit09", "fit10",
                                  "fit11", "fit12", "fit15", "fit16", "fit17", "fit18"]
    result = cli("imaging-main", "nodes", "-a", "~4")
    assert result.out.split() == [f"fit{n:02d}" for n in range(1, 38) if n != 4]
    assert cli("imaging-nodes", "--cmc", "3").out == "reboot03\n"


def test_nodes_from_environment(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODES", "1-3")
    assert cli("imaging-main", "nodes").out == "fit01 fit02 fit03\n"
    monkeypatch.setenv("NODES", "fit05 ~5 7")
    assert cli("imaging-main", "nodes").out == "fit07\n"


@pytest.mark.parametrize(("argv", "words"), [
    (["nodes", "10-1"], "range goes backwards"),
    (["nodes", "1-5-0"], "step must be a positive number"),
    (["nodes", "junk"], "'junk' is not a node spec"),
    (["nodes", "40"], "no node 40 in the inventory (it has 1-37)"),
    (["nodes", "1", "~1"], "selects no node"),
    (["nodes"], "no nodes given"),
    (["load", "fedora-21"], "'fedora-21' is not a node spec"),
    (["save", "-o", "../etc", "1"], "image name '../etc' contains a slash"),
    (["load", "-i", "bad name", "1"], "image name 'bad name' contains a space"),
    (["load", "-i", "centos", "1"], "no image 'centos'"),
    (["resolve", "-x"], "the following arguments are required: NAME"),
])
def test_usage_errors_are_one_line_and_exit_2(cli, argv: list[str], words: str) -> None:
    result = cli("imaging-main", *argv)
    assert result.code == 2
    assert words in result.err
    assert "Traceback" not in result.err
    assert result.err.strip().splitlines()[-1].startswith(f"imaging-{argv[0]}: error:")


def test_forgotten_dash_i_is_suggested(cli, sandbox: Path) -> None:
    make_image(sandbox / "repo", "fedora-21.ndz")
    result = cli("imaging-load", "fedora-21")
    assert result.code == 2
    assert result.err == ("imaging-load: error: 'fedora-21' is not a node, but an image has that name:"
                          " did you mean -i fedora-21?\n")


def test_bad_config_and_inventory(cli, sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = sandbox / "bad.conf"
    bad.write_text("[nodes]\nbandwidth = lots\n")
    result = cli("imaging-main", "nodes", "--config", str(bad), "1")
    assert result.code == 2
    assert result.err == (f"imaging-nodes: error: {bad}:2: [nodes] bandwidth = 'lots' is not a whole number"
                          " from 1 to 100000 (Mibps)\n")
    inventory = sandbox / "inv.json"
    inventory.write_text('[{"cmc": {}}]')
    (sandbox / "inv.conf").write_text(f"[testbed]\ninventory = {inventory}\n")
    result = cli("imaging-main", "nodes", "--config", str(sandbox / "inv.conf"), "1")
    assert result.code == 2
    assert result.err.startswith(f"imaging-nodes: error: inventory {inventory}, entry 0: 'control'")
    result = cli("imaging-main", "nodes", "--config", str(sandbox / "none.conf"), "1")
    assert result.code == 2 and "does not exist" in result.err


def test_config_errors_print_no_traceback(cli, sandbox: Path) -> None:
    bad = sandbox / "bad.conf"
    bad.write_text("no section header\n")
    for argv in (["imaging-list"], ["imaging-status", "1"], ["imaging-load", "1"]):
        result = cli(*argv, "--config", str(bad))
        assert result.code == 2 and result.err.count("\n") == 1 and "Traceback" not in result.err


def test_debug_shows_the_traceback(cli) -> None:
    with pytest.raises(Exception, match="backwards"):
        cli("imaging-main", "nodes", "--debug", "3-1")


@pytest.fixture
def populated(sandbox: Path) -> Path:
    repo = sandbox / "repo"
    make_image(repo, "ubuntu-24.ndz", 3 * 1024 * 1024, 1_700_000_000)
    make_image(repo, "fedora-40.img.zst", 1024, 1_700_100_000)
    (repo / "default.ndz").symlink_to("ubuntu-24.ndz")
    (repo / "u24.ndz").symlink_to("ubuntu-24.ndz")
    make_image(Path.cwd(), "saving__fit03__2026-01-02@10-00__exp.ndz", 10, 1_700_200_000)
    (repo / "fedora-40.img.zst.sha256").write_text("b" * 64 + "  fedora-40.img.zst\n")
    return repo


def test_list_shows_each_image_once_with_aliases(cli, populated: Path) -> None:
    result = cli("imaging-list")
    assert result.code == 0
    lines = result.out.splitlines()
    for name in ("ubuntu-24.ndz", "fedora-40.img.zst", "saving__fit03__2026-01-02@10-00__exp.ndz"):
        assert sum(name in line for line in lines) == 1
    ubuntu = next(line for line in lines if "ubuntu-24.ndz" in line)
    assert "default.ndz, u24.ndz (default)" in ubuntu and "3.0 MiB" in ubuntu and "frisbee" in ubuntu
    assert not any(line.lstrip().startswith(("default", "u24")) for line in lines)
    assert "3 image(s)" in result.out


def test_list_json_and_filters(cli, populated: Path) -> None:
    result = cli("imaging-list", "--json")
    records = json.loads(result.out)
    assert [r["name"] for r in records] == ["ubuntu-24.ndz", "fedora-40.img.zst",
                                            "saving__fit03__2026-01-02@10-00__exp.ndz"]
    assert records[0]["aliases"] == ["default.ndz", "u24.ndz"] and records[0]["default"] is True
    assert records[1]["sha256"] == "b" * 64 and records[1]["transport"] == "udpcast"
    assert records[2]["save"] == {"host": "fit03", "date": "2026-01-02@10-00", "radical": "exp"}
    filtered = json.loads(cli("imaging-list", "--json", "u24").out)
    assert [r["name"] for r in filtered] == ["ubuntu-24.ndz"]
    assert cli("imaging-list", "nothing-like-this").code == 1
    long = cli("imaging-list", "-l", "--sort", "name").out
    assert "b" * 64 in long and str(populated) in long


def test_list_warns_when_the_repository_cannot_be_read(cli, sandbox: Path) -> None:
    conf = sandbox / "norepo.conf"
    conf.write_text(f"[images]\nimages_dir = {sandbox / 'nowhere'}\n")
    result = cli("imaging-list", "--config", str(conf))
    assert result.code == 0 and "0 image(s)" in result.out
    assert result.err == (f"imaging-list: warning: the repository {sandbox / 'nowhere'} is missing or unreadable;"
                          " only ./ is listed (set [images] images_dir)\n")


def test_resolve(cli, populated: Path) -> None:
    assert cli("imaging-main", "resolve", "default").out == f"{populated / 'ubuntu-24.ndz'}\n"
    assert cli("imaging-main", "resolve", "exp").out.endswith("exp.ndz\n")


def test_config_command_tells_origins_and_redacts(cli, sandbox: Path) -> None:
    (sandbox / "work" / "imaging.conf").write_text("[nodes]\nbandwidth = 42\n[leases]\nurl = http://x\n")
    result = cli("imaging-main", "config")
    assert result.code == 0
    assert "bandwidth = 42    # ./imaging.conf" in result.out
    assert f"inventory = {ROOT / 'inventory' / 'sample-inventory.json'}    # {sandbox / 'test.conf'}" in result.out
    assert "regularname = fit    # (default)" in result.out
    assert cli("imaging-main", "config", "--sample").out == (ROOT / "imaging.conf.sample").read_text()


def test_log_file_gets_the_command_line(cli, sandbox: Path) -> None:
    cli("imaging-main", "nodes", "1-2")
    text = (sandbox / "work" / "imaging.log").read_text()
    assert "command: imaging-main nodes 1-2" in text
    assert f"config files read: {sandbox / 'test.conf'}" in text


def test_unwritable_log_is_a_warning_not_a_failure(cli, sandbox: Path) -> None:
    (sandbox / "log.conf").write_text(f"[logging]\nfile = {sandbox}/no/such/dir/imaging.log\n")
    result = cli("imaging-main", "nodes", "--config", str(sandbox / "log.conf"), "1")
    assert result.code == 0 and result.out == "fit01\n"
    assert "warning: cannot write the log file" in result.err


def test_dispatch(cli) -> None:
    """Item 5: imaging-main with no command is a usage error (exit 2), not a help page with exit 0."""
    result = cli("imaging-main")
    assert result.code == 2 and "imaging-main: error: the following arguments are required: COMMAND" in result.err
    assert cli("imaging-main", "--help").code == 0
    result = cli("imaging-main", "frobnicate")
    assert result.code == 2 and "invalid choice" in result.err
    result = cli("/usr/bin/imaging-frob")
    assert result.code == 2 and "unknown command name 'imaging-frob'; known: imaging-main" in result.err
    assert cli("/some/where/imaging-nodes.py", "2").out == "fit02\n"
    assert "imaging" in cli("imaging-main", "--version").out


def test_load_preflight_refuses_before_touching_nodes(cli, populated: Path) -> None:
    result = cli("imaging-load", "-i", "ubuntu-24", "--transport", "frisbee", "1-2")
    assert result.code == 2
    assert result.err == ("imaging-load: error: the frisbee sender 'frisbeed' is not installed;"
                          " install it or set its path in [frisbee]\n")
    result = cli("imaging-load", "-i", "ubuntu-24", "--transport", "udpcast", "1-2")
    assert result.code == 2 and "ubuntu-24.ndz is a frisbee image; the udpcast transport loads" in result.err
    result = cli("imaging-load", "-i", "fedora-40", "-b", "0", "--transport", "udpcast", "1")
    assert result.code == 2 and "'0' is not a whole number from 1 to 100000 (Mibps)" in result.err
    for bad in ("-5", "nan", "inf", "soon", "1e12", "\uff13", "0"):  # item 4: what the config refuses too
        result = cli("imaging-load", "-i", "fedora-40", "-t", bad, "1")
        assert result.code == 2 and f"{bad!r} is not a number of seconds from more than 0 to 604800" in result.err
    for bad in ("\uff13", "\u0663", "100001", "1_0"):  # item 4: non-ASCII digits are not digits here
        result = cli("imaging-load", "-i", "fedora-40", "-b", bad, "1")
        assert result.code == 2 and f"{bad!r} is not a whole number from 1 to 100000 (Mibps)" in result.err


def run_command(argv: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME="/nonexistent")
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd="/tmp", timeout=30)


@pytest.mark.parametrize("argv", [
    [str(ROOT / "bin" / "imaging-load"), "--help"],
    [str(VENV_BIN / "imaging-load"), "--help"],
    [str(ROOT / "bin" / "imaging-main"), "list", "--help"],
    [str(VENV_BIN / "imaging-main"), "list", "--help"],
    [str(ROOT / "bin" / "imaging-main.py"), "nodes", "--help"],
])
def test_help_from_checkout_and_installed(argv: list[str]) -> None:
    done = run_command(argv)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: imaging-")


def test_help_does_not_import_network_libraries() -> None:
    code = ("import sys; from imaging.cli.main import main\n"
            "try: main(['imaging-load', '--help'])\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('aiohttp', 'asyncssh', 'telnetlib3', 'rich') if m in sys.modules]\n"
            "print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_share_moves_a_save_into_the_repository(cli, populated: Path) -> None:
    save = Path.cwd() / "saving__fit03__2026-01-02@10-00__exp.ndz"
    (Path.cwd() / (save.name + ".sha256")).write_text("c" * 64 + f"  {save.name}\n")
    dry = cli("imaging-main", "share", "exp", "--alias", "latest", "--dry-run")
    assert dry.code == 0 and dry.out.startswith(f"would move {save} -> {populated / 'exp.ndz'}")
    assert save.exists()
    done = cli("imaging-main", "share", "exp", "--alias", "latest")
    assert done.code == 0, done.err
    assert not save.exists() and (populated / "exp.ndz").is_file()
    assert (populated / "exp.ndz.sha256").read_text() == "c" * 64 + "  exp.ndz\n"
    assert os.readlink(populated / "latest.ndz") == "exp.ndz"
    assert not list(populated.glob("*.partial"))
    again = Path.cwd() / "saving__fit04__2026-01-03@10-00__exp.ndz"
    again.write_bytes(b"x")
    refused = cli("imaging-main", "share", str(again))
    assert refused.code == 2 and "exp.ndz exists; pass --force" in refused.err
    assert cli("imaging-main", "share", str(again), "--force").code == 0
    assert (populated / "exp.ndz").read_bytes() == b"x"


def test_list_verify(cli, populated: Path) -> None:
    image = populated / "fedora-40.img.zst"
    import hashlib
    (populated / "fedora-40.img.zst.sha256").write_text(hashlib.sha256(image.read_bytes()).hexdigest() + "  x\n")
    records = {r["name"]: r for r in json.loads(cli("imaging-list", "--verify", "--json").out)}
    assert records["fedora-40.img.zst"]["verified"] == "ok"
    assert records["ubuntu-24.ndz"]["verified"] == "no sidecar"
    image.write_bytes(b"changed")
    result = cli("imaging-list", "--verify")
    assert result.code == 1 and "checksum mismatch or unreadable image: fedora-40.img.zst" in result.err
    assert "MISMATCH" in result.out


def test_library_warnings_go_to_the_log_not_the_terminal(sandbox: Path) -> None:
    """A library's warning (asyncssh's about DSA keys under a newer cryptography, with every warning shown) is
    written in the log; the terminal keeps the results only."""
    import os
    import subprocess
    import sys

    log = sandbox / "work" / "imaging.log"
    script = """
import sys, warnings
import imaging.cli.wait as wait
from imaging.cli.main import main
plain = wait.run
def run(args, ctx):  # a library warning while the command runs, as asyncssh's import gives one
    warnings.warn("a library deprecates something", DeprecationWarning)
    return plain(args, ctx)
wait.run = run
sys.exit(main(["imaging-wait", "-t", "0.5", "1"]))
"""
    done = subprocess.run([sys.executable, "-W", "default", "-c", script],
                          capture_output=True, text=True, timeout=60, cwd=sandbox / "work", env=dict(os.environ))
    assert done.returncode == 1 and done.stdout.startswith("fit01: ssh not up"), done.stdout + done.stderr
    assert "Warning" not in done.stderr, done.stderr
    assert "a library deprecates something" in log.read_text()
