"""Emulab's frisbee programs for the testbed: found installed, or built from the source in ``third_party/``.

Debian has no package of ``frisbeed``, ``frisbee``, ``imagezip``, ``imageunzip`` and
``imagedump``.  When no ``frisbeed`` is installed, :func:`build` compiles them from
``third_party/emulab-frisbee-src.tar.gz`` (Emulab's own sources, unmodified, with a patch
that lets ``imagezip`` read ext4 file systems with the ``64bit`` feature, which Debian 12's
``mke2fs`` turns on by default) into :data:`CACHE`, outside the source tree, one folder per
source checksum.  The programs are linked statically (``STATIC=1``), so a VM's initramfs
takes them without libraries, and without OpenSSL (``WITH_HASH=0``: only ``imagezip``'s
delta signatures need it; this build has no encryption or signing either).

``python -m imaging_testbed.frisbee`` builds them when needed and prints their folder
(``make frisbee`` runs it); :func:`locate` finds them, and the testbed's generated config
names them in ``[frisbee]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from imaging.errors import ImagingError, UsageError

from .procs import run

SOURCE = Path(__file__).resolve().parents[1] / "third_party" / "emulab-frisbee-src.tar.gz"
CACHE = Path("/var/cache/imaging-testbed/frisbee")
TOP = "frisbee-src"  # the tarball's folder
PATCH = "patches/imagezip-extfs-64bit.patch"
MAKE_ARGS = ("-j2", "STATIC=1", "WITH_HASH=0")
SERVER, CLIENT, IMAGEZIP, IMAGEUNZIP, IMAGEDUMP = "frisbeed", "frisbee", "imagezip", "imageunzip", "imagedump"
PROGRAMS = (SERVER, CLIENT, IMAGEZIP, IMAGEUNZIP, IMAGEDUMP)
# what the build runs, and the Debian package of each (debian-packages.txt lists them)
BUILD_TOOLS = {"make": "make", "gcc": "gcc", "patch": "patch"}  # gcc installs cc, which the Makefile runs
BUILD_LIBRARIES = {"/usr/include/zlib.h": "zlib1g-dev", "/usr/lib/x86_64-linux-gnu/libc.a": "libc6-dev"}


def _complete(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in PROGRAMS)


def installed() -> Path | None:
    """The folder of an installed ``frisbeed`` when the other programs sit beside it; None otherwise."""
    found = shutil.which(SERVER)
    folder = Path(found).resolve().parent if found else None
    return folder if folder is not None and _complete(folder) else None


def built_folder(source: Path = SOURCE, cache: Path = CACHE) -> Path:
    """Where :func:`build` puts the programs of ``source``: a folder named by its checksum."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    return cache / digest / "bin"


def locate(source: Path = SOURCE, cache: Path = CACHE) -> Path | None:
    """The folder holding the five programs: installed ones first, else those built from ``source``; None
    when neither exists."""
    found = installed()
    if found is not None:
        return found
    if not source.is_file():
        return None
    folder = built_folder(source, cache)
    return folder if _complete(folder) else None


def missing_build_tools() -> list[str]:
    """The Debian packages the build needs that are not installed."""
    absent = {package for tool, package in BUILD_TOOLS.items() if shutil.which(tool) is None}
    absent |= {package for path, package in BUILD_LIBRARIES.items() if not Path(path).exists()}
    return sorted(absent)


async def build(source: Path = SOURCE, cache: Path = CACHE) -> Path:
    """The programs' folder, built from ``source`` into ``cache`` unless they are installed or built already.

    The build runs in a scratch folder of ``cache`` and its programs are moved in place by one rename, so
    an interrupted build leaves nothing that :func:`locate` takes.  UsageError when a build tool is
    missing (naming its package) or ``cache`` cannot be written; ImagingError when the build fails."""
    found = locate(source, cache)
    if found is not None:
        return found
    if not source.is_file():
        raise UsageError(f"the frisbee source {source} is missing: restore it from the repository (git checkout)")
    absent = missing_build_tools()
    if absent:
        raise UsageError(f"building frisbee needs {', '.join(absent)}: apt-get install {' '.join(absent)}"
                         " (or make system-packages)")
    target = built_folder(source, cache)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="build-", dir=target.parent))
    except OSError as exc:
        raise UsageError(f"cannot write the frisbee build cache {cache} ({exc.strerror}): run as root") from None
    try:
        with tarfile.open(source) as archive:
            # the "data" filter (no links out, no devices) where this Python has it: Debian 12's 3.11.2 does not
            if hasattr(tarfile, "data_filter"):
                archive.extraction_filter = tarfile.data_filter
            archive.extractall(scratch)
        tree = scratch / TOP
        await run("patch", "-d", str(tree), "-p1", "-i", PATCH)
        await run("make", "-C", str(tree), *MAKE_ARGS)
        if not _complete(tree / "bin"):
            raise ImagingError(f"the frisbee build in {tree} made no {', '.join(PROGRAMS)}")
        try:
            (tree / "bin").rename(target)
        except OSError:  # built meanwhile by another run
            if not _complete(target):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def main() -> int:
    """``python -m imaging_testbed.frisbee``: build when needed, print the programs' folder."""
    try:
        print(asyncio.run(build()))
    except ImagingError as exc:
        print(f"frisbee: {exc.message}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
