"""The bad-input corpus: what hostile or careless users typed, each case a file of ``tests/data/badinput/``.

Every case runs the real program (``python -m imaging …``, or a script of the repository) in a process of
its own, from a current directory nobody may write into, once as root and once as an unprivileged user
(``nobody``), against a small site of its own: a config, an inventory of five nodes on loopback addresses,
a repository with a valid default image, a pxelinux folder and a lock folder.  The case says what the exit
code must be and what the one error line must say; no case may print a traceback.  A case's file name
starts with the number of the item of the issue it comes from.

No case gets past its pre-flight checks to a real node: the inventory's addresses are loopback ones
where nothing listens, so a command that did would fail fast and never send a packet off this machine.

Format of a case (TOML)::

    doc = "what the user did"
    argv = ["load", "-i", "", "1"]      # arguments of `python -m imaging`; {site} is the site folder
    exit = 2
    stderr = 'regex'                     # searched in the standard error
    config = '''[nodes]
    bandwidth = 0'''                     # optional: {site}/case.conf, given with --config after the command
    program = "inventory/configure.py"   # optional: run this script of the repository instead
    users = ["root", "nobody"]           # optional: who runs it (default both)
    [files]                              # optional: more files under {site}, replacing the site's own
    "inventory.json" = "..."
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT

CORPUS = Path(__file__).parent / "data" / "badinput"
CASES = sorted(CORPUS.glob("*.toml"))
USERS = ("root", "nobody")
CASE_TIMEOUT = 60.0  # seconds; no case may come near it (a hang is a defect the corpus exists to find)
FIELDS = {"doc", "argv", "exit", "stderr", "config", "program", "users", "files"}


def load_case(path: Path) -> dict[str, Any]:
    """The case in ``path``, its fields checked (a malformed case must not pass by asserting nothing)."""
    case = tomllib.loads(path.read_text(encoding="utf-8"))
    unknown = set(case) - FIELDS
    assert not unknown, f"{path.name}: unknown fields {sorted(unknown)}"
    assert re.fullmatch(r"[1-7]-[a-z0-9-]+\.toml", path.name), f"{path.name}: name it <item>-<slug>.toml"
    assert isinstance(case.get("doc"), str) and case["doc"], f"{path.name}: say what the user did in doc"
    assert isinstance(case.get("argv"), list), f"{path.name}: argv is a list"
    assert isinstance(case.get("exit"), int), f"{path.name}: exit is the expected exit code"
    assert isinstance(case.get("stderr"), str) and case["stderr"], f"{path.name}: stderr is a regex"
    assert set(case.get("users", USERS)) <= set(USERS), f"{path.name}: users are {USERS}"
    return case


def make_site(site: Path) -> None:
    """The site every case starts from; readable by everyone, writable by root only."""
    for folder in ("images", "pxelinux.cfg", "home", "logs"):
        (site / folder).mkdir(parents=True)
    locks = site / "locks"
    locks.mkdir()
    locks.chmod(0o1777)  # as /run/lock: every user may take a node's lock
    nodes = []
    for number in range(1, 6):
        def interface(prefix: str, subnet: int, number: int = number) -> dict[str, str]:
            return {"hostname": f"{prefix}{number:02d}", "ip": f"127.0.{subnet}.{number}",
                    "mac": f"02:00:00:0{subnet}:00:{number:02x}"}
        nodes.append({"control": interface("fit", 1), "cmc": interface("reboot", 2), "data": interface("data", 3)})
    (site / "inventory.json").write_text(json.dumps(nodes, indent=1))
    raw = site / "images" / "default.img"
    raw.write_bytes(os.urandom(4096) + bytes(1 << 20))
    subprocess.run(["zstd", "-q", "--rm", str(raw)], check=True)
    (site / "pxelinux.cfg" / "pxefrisbee").write_text("default imaging-os\n")
    (site / "imaging.conf").write_text(
        "[testbed]\n"
        f"inventory = {site}/inventory.json\n"
        "all_scope = 1-5\n"
        "[images]\n"
        f"images_dir = {site}/images\n"
        "[pxelinux]\n"
        f"config_dir = {site}/pxelinux.cfg\n"
        "[transport]\n"
        "kind = udpcast\n"
        "server_ip = 127.0.0.1\n"
        "[locks]\n"
        f"lock_dir = {locks}\n"
        "[logging]\n"
        f"transport_logs = {site}/logs\n"
        "[nodes]\n"
        "cmc_timeout = 1\n"
        "boot_timeout = 2\n"
        "load_timeout = 10\n"
        "save_timeout = 10\n"
        "wait_timeout = 3\n"
    )


def world_readable(top: Path) -> None:
    """Make everything under ``top`` readable by everyone (pytest's folders are 0700)."""
    for folder in [top, *(p for p in top.rglob("*") if p.is_dir())]:
        folder.chmod(folder.stat().st_mode | 0o755)
    for file in top.rglob("*"):
        if file.is_file() and not file.is_symlink():
            file.chmod(file.stat().st_mode | 0o444)


def as_user(user: str) -> list[str]:
    """The prefix that runs a command as ``user``.

    Where this checkout sits in a folder ``nobody`` cannot enter (``/root/project`` in a fresh root), the
    unprivileged user keeps one capability, CAP_DAC_READ_SEARCH, to read the interpreter and the code; it
    can read, never write, what root alone may read, so every write check it meets is a real one."""
    if user == "root":
        return []
    account = pwd.getpwnam(user)
    prefix = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import imaging"], cwd="/", capture_output=True,
                           env={"PYTHONPATH": str(ROOT)})
    if probe.returncode != 0:
        prefix += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return prefix


def substitute(text: str, site: Path) -> str:
    """``{site}`` replaced by the case's site folder."""
    return text.replace("{site}", str(site))


@pytest.fixture(scope="module")
def top() -> Iterator[Path]:
    """A folder every user may enter (pytest's own are 0700), removed afterwards.

    A chroot made in a ``mktemp -d`` folder has a ``/`` of mode 0700, which no real system has and
    in which no unprivileged program can even load its libraries: ``/`` is then opened to every
    user (search only, as everywhere) for the corpus, and put back after it."""
    root_mode = stat.S_IMODE(os.stat("/").st_mode)
    if os.geteuid() == 0 and not root_mode & 0o001:
        os.chmod("/", root_mode | 0o005)
    folder = Path(tempfile.mkdtemp(prefix="imaging-badinput-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if stat.S_IMODE(os.stat("/").st_mode) != root_mode:
            os.chmod("/", root_mode)


@pytest.fixture(scope="module")
def unwritable_cwd(top: Path) -> Iterator[Path]:
    """A current directory no case may write into: mode 0555 for a user, a read-only bind mount for root."""
    folder = top / "cwd"
    folder.mkdir(mode=0o555)
    folder.chmod(0o555)
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_the_corpus_holds_every_item() -> None:
    """The corpus is not empty, and every case file is well formed."""
    items = {int(path.name.split("-")[0]) for path in CASES}
    assert {1, 2, 4, 5} <= items, f"items with cases: {sorted(items)}"
    for path in CASES:
        load_case(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="runs each case as root and as nobody: needs root")
@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_input(path: Path, user: str, top: Path, unwritable_cwd: Path) -> None:
    """One line naming the problem, the right exit code, no traceback, nothing written in the cwd."""
    case = load_case(path)
    if user not in case.get("users", USERS):
        pytest.skip(f"{path.name} is a case for {case['users']} only")
    site = top / f"{path.stem}-{user}"
    make_site(site)
    for name, content in case.get("files", {}).items():
        target = site / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            target.write_text(substitute(content, site), encoding="utf-8", errors="surrogateescape")
        else:  # a list of byte values, for what is not text
            target.write_bytes(bytes(content))
    argv = [substitute(arg, site) for arg in case["argv"]]
    if "config" in case:
        (site / "case.conf").write_text(substitute(case["config"], site))
        argv[1:1] = ["--config", str(site / "case.conf")]
    world_readable(site)
    if "program" in case:
        command = [sys.executable, str(ROOT / case["program"]), *argv]
    else:
        command = [sys.executable, "-m", "imaging", *argv]
    env = {"PATH": os.environ["PATH"], "HOME": str(site / "home"), "LANG": "C.UTF-8",
           "IMAGING_CONFIG": str(site / "imaging.conf"), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    before = sorted(os.listdir(unwritable_cwd))
    done = subprocess.run([*as_user(user), *command], cwd=unwritable_cwd, env=env, capture_output=True,
                          text=True, errors="replace", timeout=CASE_TIMEOUT, stdin=subprocess.DEVNULL)
    shown = f"{path.name} as {user}: exit {done.returncode}\n{done.stderr}{done.stdout[-2000:]}"
    assert "Traceback" not in done.stderr + done.stdout, shown
    assert done.returncode == case["exit"], shown
    assert re.search(case["stderr"], done.stderr), shown
    if case["exit"] != 0:
        errors = [line for line in done.stderr.splitlines() if ": error:" in line]
        assert len(errors) == 1, shown
    assert sorted(os.listdir(unwritable_cwd)) == before
    assert not stat.S_IMODE(unwritable_cwd.stat().st_mode) & 0o222
