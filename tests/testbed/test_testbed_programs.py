"""The one list of the programs the testbed runs (imaging_testbed.programs):
the code runs programs by its constants, the nodes' scripts run only listed
programs, and a missing program is one line naming its package, before
anything is started."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import shutil
from pathlib import Path

import pytest

from imaging.errors import UsageError
from imaging_testbed import bmc, firmware, lifecycle, programs
from imaging_testbed.vm import kernel

PACKAGE = Path(programs.__file__).parent
# what the nodes' scripts run that is the shell's own, not a program
SHELL_BUILTINS = {"cd", "command", "echo", "exec", "exit", "export", "kill", "printf", "read", "set", "shift",
                  "test", "trap", "ulimit", "unset", "wait", "true", "false", "local", "return", "continue",
                  "break"}
# a word in command position: at a line's start or after ; | & ( { ) $( and the keywords
# and the scripts' own wrappers before a command, past VAR=value assignments
COMMAND = re.compile(r"(?:^|[;|&({)])[ \t]*(?:(?:if|then|elif|else|do|while|until|!|must|detach|exec)[ \t]+)*"
                     r"(?:\w+=[^\s(]*[ \t]+)*([A-Za-z_][\w.+-]*)", re.MULTILINE)


def commands(script: str) -> set[str]:
    """The programs a shell script runs: the words in command position that name a program
    installed here (not the script's own functions, nor the shell's builtins); comments
    and single-quoted text (awk and sed programs) left out."""
    text = re.sub(r"(^|\s)#.*$", "", script, flags=re.MULTILINE)
    text = re.sub(r"'[^']*'", "''", text)
    functions = set(re.findall(r"^\s*(\w+)\(\)", text, flags=re.MULTILINE))
    words = {match[1] for match in COMMAND.finditer(text)} - functions - SHELL_BUILTINS
    return {word for word in words if shutil.which(word, path=programs.SEARCH_PATH)}


def test_the_node_scripts_run_only_listed_programs() -> None:
    found = {name: commands(text) for name, text in {**firmware.SCRIPTS, "chassis": bmc.CHASSIS}.items()}
    assert found["chassis"] == {"curl"}
    assert {"busybox", "ip", "nc", "dropbear", "mtype", "grep", "hostname", "stat"} <= found[firmware.FIRMWARE]
    assert {"cat", "sed", "sleep"} <= found[firmware.RECEIVER_WRAPPER]
    assert {"ip", "busybox"} <= found[firmware.DHCP_HOOK]
    for name, used in found.items():
        assert used <= set(programs.PROGRAMS), f"{name} runs programs not in PROGRAMS: {used - set(programs.PROGRAMS)}"


def test_the_script_reader_sees_a_new_program() -> None:
    """The check above would see a program added to a script."""
    assert "tar" in commands('x=1\nmust tar -x "$f"; echo done\n')
    assert commands("v=$(cp a b)\nLANG=C MTOOLS_X=1 mtype -i d ::/f\n") == {"cp", "mtype"}
    assert commands("halt() { echo hi; }\nhalt 'tar is not run' # nor cp\n") == set()


def _program_literals(tree: ast.AST) -> list[str]:
    """String literals naming a listed program that start a call's arguments or an argv list."""
    found = []
    for node in ast.walk(tree):
        first: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            first = node.args[0]
        elif isinstance(node, (ast.List, ast.Tuple)) and node.elts:
            first = node.elts[0]
        if isinstance(first, ast.Constant) and first.value in programs.PROGRAMS:
            found.append(f"line {first.lineno}: {first.value!r}")
    return found


def test_the_code_runs_programs_by_their_constants() -> None:
    sources = [path for path in PACKAGE.rglob("*.py") if path.name != "programs.py"]  # its command line too
    offenders = {str(path.relative_to(PACKAGE.parent)): found for path in sources
                 if (found := _program_literals(ast.parse(path.read_text())))}
    assert offenders == {}
    assert _program_literals(ast.parse('run("ip", "netns", "list")\nargv = ["zstd", "-q"]\n')) == [
        "line 1: 'ip'", "line 2: 'zstd'"]


def test_every_program_says_its_package_and_purpose() -> None:
    for name, program in programs.PROGRAMS.items():
        assert re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", program.package), name
        assert len(program.purpose) > 10, name
    vm_only = {name for name, program in programs.PROGRAMS.items() if program.vm}
    assert programs.QEMU in vm_only and programs.DNSMASQ not in vm_only
    assert set(programs.needed(vm=False)) == set(programs.PROGRAMS) - vm_only
    assert set(programs.needed(vm=True)) == set(programs.PROGRAMS)
    assert set(kernel.BUILD_TOOLS) <= set(programs.PROGRAMS)


def _path_without(tmp_path: Path, *absent: str) -> str:
    """A search path holding every listed program installed here but ``absent``."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in programs.PROGRAMS:
        found = shutil.which(name, path=programs.SEARCH_PATH)
        if found and name not in absent:
            (folder / name).symlink_to(found)
    return str(folder)


def test_a_missing_program_is_named_with_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(programs, "SEARCH_PATH", _path_without(tmp_path, programs.DNSMASQ, programs.NFT))
    with pytest.raises(UsageError) as error:
        programs.find(programs.DNSMASQ)
    assert str(error.value) == "dnsmasq is missing: install its Debian package (apt-get install dnsmasq-base)"
    assert programs.find(programs.IP).endswith("/ip")
    assert programs.missing(vm=False) == ["nft (nftables)", "dnsmasq (dnsmasq-base)"]
    with pytest.raises(UsageError) as error:
        programs.require(vm=False)
    assert "nft (nftables), dnsmasq (dnsmasq-base)" in str(error.value)
    assert "apt-get install dnsmasq-base nftables (or make system-packages)" in str(error.value)
    assert "\n" not in str(error.value)


def test_nothing_missing_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if programs.missing(vm=False):
        pytest.skip(f"not installed here: {programs.missing(vm=False)}")
    monkeypatch.setattr(programs, "SEARCH_PATH", _path_without(tmp_path, programs.QEMU))
    programs.require(vm=False)  # qemu is the VM tier's only
    assert programs.missing(vm=True) == ["qemu-system-x86_64 (qemu-system-x86)"]
    assert kernel.missing_tools() == []


def test_the_vm_builders_name_the_packages_they_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(programs, "SEARCH_PATH", str(tmp_path))  # nothing at all
    assert kernel.missing_tools() == sorted({programs.PROGRAMS[name].package for name in kernel.BUILD_TOOLS})
    assert {"dpkg", "kmod", "libc-bin", "syslinux"} <= set(kernel.missing_tools())
    with pytest.raises(UsageError, match=r"apt-get install syslinux"):
        kernel.tool(programs.SYSLINUX)


@pytest.mark.skipif(os.geteuid() != 0, reason="up needs root")
def test_up_refuses_before_starting_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(programs, "SEARCH_PATH", _path_without(tmp_path, programs.DNSMASQ))
    with pytest.raises(UsageError, match=r"the testbed needs dnsmasq \(dnsmasq-base\)"):
        asyncio.run(lifecycle.up(tmp_path / "tb", 1, cmc_only=True))
    assert not (tmp_path / "tb").exists()  # refused before preparing its folder, let alone namespaces
