"""Every external program the product and its testbed run is installed by the project's own lists.

The one list is :data:`imaging_testbed.programs.PROGRAMS` (what the testbed runs, the product's programs
on the testbed's server and nodes among them) plus the programs the product's config names by default and
the browser the tests look at the monitor's page with (:data:`tests.testbed.browser.PROGRAMS`).
Each must be on PATH and belong, by ``dpkg -S``, to the Debian package the list says, and that package
must be in ``debian-packages*.txt`` or be one every Debian system has (Essential or of priority required:
what ``debootstrap --variant=minbase`` installs).  A program the code starts to use without its package
in the lists fails here, by name, instead of on a user's new machine.

Emulab's frisbee programs (``frisbeed``, ``frisbee``, ``imagezip``, ``imagedump``) are left out: Debian
has no package of them; ``make frisbee`` builds them from ``third_party/`` (the tools and libraries that
build needs are checked here like the others).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

from imaging.config import keys
from imaging_testbed import frisbee
from imaging_testbed.programs import PROGRAMS, SEARCH_PATH
from tests.helpers import ROOT
from tests.testbed.browser import PROGRAMS as BROWSER

FRISBEE = {"frisbeed", "frisbee", "imagezip", "imagedump"}  # not Debian's: see the docstring
pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian system (no dpkg)")


def listed_packages() -> set[str]:
    """The Debian packages the Makefile installs (debian-packages*.txt)."""
    names: set[str] = set()
    for path in ROOT.glob("debian-packages*.txt"):
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                names.add(line)
    return names


def product_programs() -> dict[str, str]:
    """Programs the product runs by the default of a config key, and the key (frisbee's aside)."""
    found = {}
    for key in keys():
        programs = ("sender", "receiver", "server", "client", "imagezip", "netcat", "imagedump")
        if (key.section in ("udpcast", "frisbee") and key.name in programs and key.default not in FRISBEE) \
                or (key.section, key.name) == ("power", "ipmitool"):
            found[key.default] = f"[{key.section}] {key.name}"
    return found


@cache
def essential(package: str) -> bool:
    """True when every Debian system has the package (Essential: yes, or Priority: required)."""
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Essential} ${Priority}", package],
                          capture_output=True, text=True, check=False)
    return done.returncode == 0 and (done.stdout.startswith("yes") or done.stdout.endswith("required"))


def candidates(path: str) -> list[str]:
    """The names dpkg may know the file by: as found, resolved, and across the /usr merge."""
    names = []
    for name in (path, os.path.realpath(path)):
        names.append(name)
        if name.startswith("/usr/"):
            names.append(name[len("/usr"):])
        else:
            names.append("/usr" + name)
    return list(dict.fromkeys(names))


def owner(path: str) -> str | None:
    """The Debian package that ships the file, by ``dpkg -S`` (None when none does)."""
    for name in candidates(path):
        done = subprocess.run(["dpkg", "-S", name], capture_output=True, text=True, check=False)
        for line in done.stdout.splitlines():
            package, sep, shipped = line.partition(": ")
            if sep and not line.startswith("diversion ") and shipped.strip() == name:
                return package.split(":")[0].split(",")[0].strip()
    return None


def test_the_list_is_the_code_s() -> None:
    """The list names what the code runs (it is not empty, and holds the programs the issue found
    missing once: nft), and the product's default programs."""
    assert {"nft", "ip", "dnsmasq", "udp-sender", "busybox", "dropbear", "qemu-system-x86_64", "zstd",
            "mkfs.vfat"} <= set(PROGRAMS)
    assert {"udp-sender", "udp-receiver", "nc"} <= set(product_programs())


@pytest.mark.parametrize("program", sorted(set(PROGRAMS) | set(product_programs()) | set(BROWSER)))
def test_program_is_installed_by_the_lists(program: str) -> None:
    """On PATH, shipped by the package the list names, and that package installed by the Makefile."""
    path = shutil.which(program, path=SEARCH_PATH)
    declared = PROGRAMS[program].package if program in PROGRAMS else BROWSER.get(program)
    hint = f" (apt-get install {declared})" if declared else ""
    assert path is not None, f"{program} is not installed{hint}: add its package to debian-packages*.txt"
    package = owner(path)
    assert package is not None, f"{program} ({path}) belongs to no Debian package"
    if declared is not None:
        assert package == declared, f"{program} comes from {package}, the list says {declared}"
    listed = listed_packages()
    assert package in listed or essential(package), \
        f"{program} comes from the Debian package {package}, which debian-packages*.txt do not install"


@pytest.mark.parametrize("path", sorted(frisbee.BUILD_TOOLS) + sorted(frisbee.BUILD_LIBRARIES))
def test_what_builds_frisbee_is_installed_by_the_lists(path: str) -> None:
    """The build of Emulab's programs (``make frisbee``) finds its compiler, tools and headers on a new
    machine: each is shipped by the package the build names, and the lists install that package."""
    declared = frisbee.BUILD_TOOLS.get(path) or frisbee.BUILD_LIBRARIES[path]
    found = shutil.which(path) if path in frisbee.BUILD_TOOLS else path
    assert found is not None and os.path.exists(found), f"{path} is missing (apt-get install {declared})"
    assert owner(found) == declared, f"{path} comes from {owner(found)}, the build says {declared}"
    assert declared in listed_packages(), f"{declared} is not in debian-packages*.txt"
    assert frisbee.missing_build_tools() == []


def test_every_listed_package_exists() -> None:
    """The lists name only packages that this machine's apt knows (a typo would fail the install)."""
    for package in sorted(listed_packages()):
        done = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", package], capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0 and "installed" in done.stdout, f"{package} of debian-packages*.txt"


def test_owner_finds_packages_across_the_usr_merge(tmp_path: Path) -> None:
    """The helper itself: ``sh`` is dash's on Debian, found through a symlink and the /usr merge."""
    assert owner(shutil.which("dash") or "/bin/dash") == "dash"
    assert owner(str(tmp_path)) is None
