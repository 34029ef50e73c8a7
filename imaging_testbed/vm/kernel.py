"""The Linux kernel the testbed's virtual machines boot, and the host commands
the VM builders need.

The kernel is Debian's own package (``linux-image-<abi>-amd64``), fetched by
``make vm-packages`` into :data:`PACKAGE_DIR` and unpacked, never installed:
its tree (``boot/vmlinuz-<version>``, ``lib/modules/<version>/``) is needed
only while the initramfs and the boot images are built.  The package ships no
``modules.dep``: :func:`unpack` runs ``depmod`` on the tree.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imaging.errors import ImagingError, UsageError

from .. import programs
from ..procs import run
from ..programs import DEPMOD, DPKG_DEB, MODPROBE

PACKAGE_DIR = Path("/var/cache/imaging-testbed")
# linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb, not the -cloud-amd64 or -rt-amd64 flavours
PACKAGE_RE = re.compile(r"linux-image-\d+\.\d+\.\d+-\d+-amd64_(?P<version>[^_]+)_amd64\.deb")
FETCH_HINT = "run `make vm-packages` (it runs `apt-get download linux-image-<abi>-amd64` into that folder)"

HEAD = "head"  # coreutils' head, which imaging_testbed.programs lists among the firmware's programs
# The host commands the VM builders run or copy (their packages: imaging_testbed.programs).
BUILD_TOOLS = (DPKG_DEB, DEPMOD, MODPROBE, programs.LDD, programs.BUSYBOX, programs.DASH, programs.UDP_RECEIVER,
               programs.ZSTD, programs.NC_OPENBSD, programs.DROPBEAR, programs.MKFS_VFAT, programs.SYSLINUX,
               programs.GRUB_MKIMAGE,
               programs.MCOPY, programs.MTYPE, programs.MDIR, programs.PARTCLONE_EXT4, programs.PARTCLONE_VFAT,
               programs.PARTCLONE_DD, programs.SFDISK, programs.BLKID, programs.MKSWAP, programs.DD, HEAD)
tool = programs.find  # the path of a host command, or UsageError naming its package


def missing_tools() -> list[str]:
    """The Debian packages of :data:`BUILD_TOOLS` that are not installed."""
    return sorted({programs.PROGRAMS[name].package for name in BUILD_TOOLS
                   if shutil.which(name, path=programs.SEARCH_PATH) is None})


@dataclass(frozen=True)
class Kernel:
    """An unpacked Debian kernel package."""

    tree: Path  # the unpacked package (boot/, lib/modules/<version>/)
    version: str  # e.g. "6.1.0-56-amd64"

    @property
    def vmlinuz(self) -> Path:
        """The kernel image."""
        return self.tree / "boot" / f"vmlinuz-{self.version}"

    async def modules_for(self, names: Sequence[str]) -> list[Path]:
        """The ``.ko`` files to insmod, in this order, to load modules ``names``:
        dependencies before their users (``virtio_ring`` before ``virtio``),
        each file once.  Modules built into the kernel need no file.

        Asks ``modprobe --show-depends``; raises ImagingError naming a module
        the kernel does not have.
        """
        found: list[Path] = []
        for name in names:
            try:
                out = await run(tool(MODPROBE), "-d", str(self.tree), "-S", self.version, "--show-depends", name)
            except ImagingError as exc:
                raise ImagingError(f"kernel {self.version} has no module {name}: {exc}") from None
            for line in out.splitlines():
                words = line.split()
                if words[:1] == ["insmod"] and Path(words[1]) not in found:
                    found.append(Path(words[1]))
        return found


def find_package(directory: Path = PACKAGE_DIR) -> Path:
    """The newest Debian kernel package (``linux-image-<abi>-amd64_<version>_amd64.deb``)
    in ``directory``; UsageError saying how to fetch one when there is none."""
    versions: dict[Path, tuple[int, ...]] = {}  # package → the numbers of its version
    for path in directory.glob("linux-image-*.deb"):
        if match := PACKAGE_RE.fullmatch(path.name):
            versions[path] = tuple(int(n) for n in re.findall(r"\d+", match["version"]))
    if not versions:
        raise UsageError(f"no Debian kernel package (linux-image-*-amd64_*.deb) in {directory}: {FETCH_HINT}")
    return max(versions, key=versions.__getitem__)


def _kernel_in(tree: Path) -> Kernel:
    """The kernel of an unpacked package tree; ImagingError when it holds none or several."""
    modules = tree / "lib" / "modules"
    versions = sorted(p.name for p in modules.iterdir()) if modules.is_dir() else []
    if len(versions) != 1:
        raise ImagingError(f"{tree} holds {len(versions)} kernel module trees, not one: is it a kernel package?")
    return Kernel(tree, versions[0])


async def unpack(deb: Path, cache_dir: Path) -> Kernel:
    """The kernel of package ``deb``, unpacked into ``cache_dir/kernel-<deb stem>/``
    (with a ``modules.dep``) the first time, reused afterwards.

    The tree is built in a temporary folder beside it and renamed into place,
    so a half-unpacked tree is never taken for a good one.
    """
    target = cache_dir / f"kernel-{deb.stem}"
    if target.is_dir():
        return _kernel_in(target)
    if not deb.is_file():
        raise UsageError(f"no kernel package {deb}: {FETCH_HINT}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".kernel-{deb.stem}-"))
    try:
        await run(tool(DPKG_DEB), "-x", str(deb), str(scratch))
        kernel = _kernel_in(scratch)
        await run(tool(DEPMOD), "-b", str(scratch), kernel.version)
        os.chmod(scratch, 0o755)  # mkdtemp made it 0700
        try:
            scratch.rename(target)
        except OSError:  # unpacked meanwhile by another builder: use theirs
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _kernel_in(target)
