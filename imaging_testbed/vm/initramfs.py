"""The two initramfs the testbed's virtual machines boot, built from Debian's programs.

* The **imaging OS** (pxelinux boots it with ``APPEND console=ttyS0 imaging-os``):
  busybox, ``udp-receiver``, ``zstd`` and netcat-openbsd's ``nc``, and for
  the file-system-aware images partclone (``partclone.ext2/3/4``, ``.vfat``,
  ``.fat``, ``.dd``), util-linux's ``sfdisk``, ``blkid`` and ``mkswap`` and
  coreutils' ``head`` and ``dd``, and Emulab's ``frisbee`` client and ``imagezip``
  when they are built (``make frisbee``); its init gets an address by DHCP and serves a root
  shell on telnet (busybox ``telnetd -l /bin/sh``), as the product expects of
  a real testbed's imaging OS.  The kernel reads the disk's partition table
  itself (dos and GPT support are built in): ``/dev/vda1``… exist.
* The **disk OS**, the "installed OS" of the bootable test images
  (:mod:`imaging_testbed.vm.bootimage`): busybox and ``dropbear``; its init
  copies the identity line of the disk it booted from (``/etc/imaging-image``
  on the FAT of partition 1, ``/dev/vda1``, or of the whole disk for an
  unpartitioned image) to its own ``/etc/imaging-image``, gets an address by
  DHCP and serves ssh to root with the given key.

Both inits print ``@state dhcp`` then ``@state telnet`` or ``@state ssh`` on the
console (ttyS0), or ``@state failed <why>``; PID 1 never exits.

An initramfs is a newc cpio written here (owners root, times zero, device
node ``/dev/console`` included: no root needed), compressed with zstd, and
cached under ``cache_dir`` as ``<name>-<key>.cpio.zst`` where ``<key>`` is a
hash of the whole uncompressed archive: every input (kernel version, modules,
binaries and libraries, scripts, keys) is in it, so a changed input gives a
new file and an unchanged one the cached file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imaging.errors import ImagingError

from ..frisbee import CLIENT, IMAGEZIP
from ..images import IDENTITY_FILE
from ..procs import run
from ..programs import (
    BLKID,
    BUSYBOX,
    DASH,
    DD,
    DROPBEAR,
    LDD,
    MKSWAP,
    NC_OPENBSD,
    PARTCLONE_DD,
    PARTCLONE_EXT4,
    PARTCLONE_VFAT,
    SFDISK,
    UDP_RECEIVER,
    ZSTD,
)
from .kernel import HEAD, Kernel, tool

IMAGING_OS = "imaging-os"
DISK_OS = "disk-os"
NET_MODULES = ("virtio_pci", "virtio_net", "virtio_blk", "virtio_rng")  # NIC, disk, entropy for dropbear
FAT_MODULES = ("vfat", "nls_cp437", "nls_ascii")  # the FAT's default codepage and iocharset
# Programs copied in with their libraries: path in the initramfs → host command.  A busybox
# applet of the same name is left out: Debian's busybox sh runs its applets before any program
# in PATH ("nc -q 0" would be busybox's nc, which has no -q), so the shell of telnet and ssh
# sessions, /bin/sh, is Debian's dash (as on the emulated nodes); the scripts written here run
# in busybox sh.
SHELL_PROGRAM = {"bin/sh": DASH}
# What the file-system-aware images run besides udp-receiver and zstd.  busybox's applets do not do:
# its head -c reads its input through stdio buffers, past the count (the restore's partitions that
# follow in the same pipe are lost); its dd does not say "N bytes (…) copied" (the restore checks that
# a step got all its bytes by it); its mkswap has no -U, it has no sfdisk, and its blkid no -p -o -O
# -S.  Its blockdev (--getsize64), cat, rm, grep, [ and echo behave as coreutils' do.
PARTITION_PROGRAMS = {"usr/sbin/partclone.ext4": PARTCLONE_EXT4, "usr/sbin/partclone.vfat": PARTCLONE_VFAT,
                      "usr/sbin/partclone.dd": PARTCLONE_DD, "usr/sbin/sfdisk": SFDISK, "usr/sbin/blkid": BLKID,
                      "usr/sbin/mkswap": MKSWAP, "usr/bin/head": HEAD, "usr/bin/dd": DD}
# Other names of a program copied in, as Debian's links (one engine for FAT, one for ext2/3/4): path → target
IMAGING_OS_LINKS = {"usr/sbin/partclone.fat": "/usr/sbin/partclone.vfat",
                    "usr/sbin/partclone.ext2": "/usr/sbin/partclone.ext4",
                    "usr/sbin/partclone.ext3": "/usr/sbin/partclone.ext4"}
FRISBEE_NODE_PROGRAMS = (CLIENT, IMAGEZIP)  # Emulab's, when built or installed: static, so no libraries
IMAGING_OS_PROGRAMS = {**SHELL_PROGRAM, "usr/bin/udp-receiver": UDP_RECEIVER, "usr/bin/zstd": ZSTD,
                       "usr/bin/nc": NC_OPENBSD, **PARTITION_PROGRAMS}
DISK_OS_PROGRAMS = {**SHELL_PROGRAM, "usr/sbin/dropbear": DROPBEAR}
# The C library loads libgcc_s by dlopen, unseen by ldd, when a thread exits or is cancelled; without
# it partclone (threads) aborts at its end, image written, with "libgcc_s.so.1 must be installed".
LIBC = "libc.so.6"
DLOPENED = ("libgcc_s.so.1",)  # beside libc
MODULE_LIST = "etc/modules"  # the .ko files the init loads, in order
DHCP_HOOK = "usr/share/udhcpc/default.script"
DISK = "/dev/vda"  # the VM's virtio-blk disk, which the disk OS booted from
ZSTD_LEVEL = 9  # 2.6 MB in 0.2 s; 19 saves 10 % in 4 s (the kernel decompresses any level fast)

DHCP_HOOK_SCRIPT = r"""#!/bin/busybox sh
# udhcpc hook of the testbed's virtual machines: sets the address WITH its
# broadcast address (without one udpcast never connects), the default route
# and the hostname.  Writes no file.
case "$1" in
deconfig)
    ifconfig "$interface" 0.0.0.0 up
    ;;
bound|renew)
    ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" broadcast "${broadcast:-+}" up
    if [ -n "${router:-}" ]; then
        while route del default dev "$interface" 2>/dev/null; do :; done
        for gateway in $router; do
            route add default gw "$gateway" dev "$interface" && break
        done
    fi
    [ -n "${hostname:-}" ] && hostname "$hostname"
    echo "init: lease $ip netmask ${subnet:-?} broadcast ${broadcast:-+} router ${router:-none}" \
        "hostname ${hostname:-none}"
    ;;
esac
exit 0
"""

INIT_HEAD = r"""#!/bin/busybox sh
# PID 1 of the __NAME__ of the imaging testbed's virtual machines.  It never exits.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts
mount -t devpts -o mode=620,ptmxmode=666 devpts /dev/pts

say() { echo "init: $*"; }
state() { echo "@state $*"; }
# idle: PID 1's last task, for ever: wait (which reaps orphans too)
idle() { while :; do wait; sleep 60; done; }
stuck() { state failed "$*"; say "$*: the machine stays up, nothing answers"; idle; }
# waitfor PATH: wait up to 10 s for PATH to exist
waitfor() { n=0; until [ -e "$1" ]; do [ $n -ge 100 ] && return 1; sleep 0.1; n=$((n + 1)); done; }
# listening PORT: whether a TCP socket listens on PORT
listening() {
    grep -qs "^ *[0-9]*: [0-9A-F]*:$(printf %04X "$1") [0-9A-F]*:0000 0A " /proc/net/tcp /proc/net/tcp6
}
# serve COMMAND...: run a server in the foreground, for ever (restarted if it exits)
serve() { while :; do "$@"; say "$1 exited (status $?); restarting it"; sleep 1; done; }
# start PORT STATE COMMAND...: serve COMMAND in the background, say STATE once it listens on PORT
start() {
    port=$1 word=$2
    shift 2
    serve "$@" &
    n=0
    until listening "$port" || [ $n -ge 50 ]; do sleep 0.1; n=$((n + 1)); done
    if listening "$port"; then state "$word"; else state failed "$1 does not listen on port $port"; fi
}

hostname __NAME__
ifconfig lo 127.0.0.1 up
while read -r module; do
    insmod "/$module" || say "cannot load /$module"
done < /__MODULE_LIST__
waitfor /sys/class/net/eth0 || stuck "no network interface eth0"
ifconfig eth0 up
"""

INIT_DHCP = r"""
state dhcp
until udhcpc -i eth0 -f -q -n -t 5 -T 2 -s /__DHCP_HOOK__; do
    say "no DHCP lease yet; trying again"
done
"""

IMAGING_OS_INIT = INIT_HEAD + INIT_DHCP + r"""
# the imaging OS: a root shell on telnet, no login
cd /
start 23 telnet telnetd -F -l /bin/sh -p 23
idle
"""

DISK_OS_INIT = INIT_HEAD + r"""
# the installed OS of a test image: it is what its disk says it is, in the FAT of partition 1
# (the kernel has read the table when the disk appears), or of the whole disk (a "superfloppy")
waitfor __DISK__ || say "no disk __DISK__"
mkdir -p /mnt/disk
for fat in __DISK__1 __DISK__ none; do
    [ -b "$fat" ] && mount -t vfat -o ro "$fat" /mnt/disk 2>/dev/null && break
done
if [ "$fat" != none ]; then
    head -n 1 /mnt/disk__IDENTITY_FILE__ > __IDENTITY_FILE__ || say "$fat holds no __IDENTITY_FILE__"
    umount /mnt/disk
else
    say "no FAT on __DISK__1 nor __DISK__"
fi
say "booted $(cat __IDENTITY_FILE__ 2>/dev/null) (from $fat)"
""" + INIT_DHCP + r"""
cd /
start 22 ssh dropbear -F -E -s -j -k -p 22 __HOST_KEYS__ -P /run/dropbear.pid
idle
"""

PASSWD = "root:x:0:0:root:/root:/bin/sh\n"
GROUP = "root:x:0:\n"
SHELLS = "/bin/sh\n"

_LIBRARY_RE = re.compile(r"(/\S+) \(0x[0-9a-f]+\)$")


def _fill(script: str, **values: str) -> str:
    """``script`` with each placeholder ``__KEY__`` replaced by ``values[KEY]``."""
    for key, value in values.items():
        script = script.replace(f"__{key}__", value)
    return script


@dataclass(frozen=True)
class _Entry:
    """One member of a cpio archive."""

    mode: int  # type and permission bits
    data: bytes = b""  # a file's contents, a symlink's target
    rdev: tuple[int, int] = (0, 0)  # a device node's major and minor


@dataclass
class _Tree:
    """The contents of an initramfs being assembled: path inside (no leading /) → entry."""

    entries: dict[str, _Entry] = field(default_factory=dict)

    def add(self, path: str, entry: _Entry) -> None:
        """Add ``entry`` at ``path``, and any missing parent folder (mode 755)."""
        parts = path.split("/")
        for depth in range(1, len(parts)):
            self.entries.setdefault("/".join(parts[:depth]), _Entry(stat.S_IFDIR | 0o755))
        self.entries[path] = entry

    def folder(self, path: str, mode: int = 0o755) -> None:
        """Add a folder."""
        self.add(path, _Entry(stat.S_IFDIR | mode))

    def file(self, path: str, data: str | bytes, mode: int = 0o644) -> None:
        """Add a file holding ``data``."""
        self.add(path, _Entry(stat.S_IFREG | mode, data.encode() if isinstance(data, str) else data))

    def copy(self, path: str, source: Path, mode: int | None = None) -> None:
        """Add a copy of host file ``source`` (symlinks followed), with its mode unless ``mode``."""
        self.file(path, source.read_bytes(), stat.S_IMODE(source.stat().st_mode) if mode is None else mode)

    def symlink(self, path: str, target: str) -> None:
        """Add a symbolic link to ``target``."""
        self.add(path, _Entry(stat.S_IFLNK | 0o777, target.encode()))

    def char_device(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        """Add a character device node."""
        self.add(path, _Entry(stat.S_IFCHR | mode, rdev=(major, minor)))

    def archive(self) -> bytes:
        """The tree as a newc cpio archive (owner root, time 0: the same tree gives the same bytes)."""
        members = [_newc(ino, e.mode, name, e.data, e.rdev)
                   for ino, (name, e) in enumerate(sorted(self.entries.items()), start=1)]
        return b"".join([*members, _newc(0, 0, "TRAILER!!!")])


def _newc(ino: int, mode: int, name: str, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> bytes:
    """One member of a newc ("070701") cpio archive, padded to 4 bytes."""
    path = name.encode() + b"\0"
    links = 2 if stat.S_ISDIR(mode) else 1
    fields = (ino, mode, 0, 0, links, 0, len(data), 0, 0, *rdev, len(path), 0)
    header = b"070701" + b"".join(b"%08X" % value for value in fields) + path
    return header + bytes(-len(header) % 4) + data + bytes(-len(data) % 4)


async def _libraries(binary: str) -> list[str]:
    """The shared libraries ``binary`` loads, and the loader, as ``ldd`` finds them."""
    out = await run(tool(LDD), binary, check=False)
    if "not found" in out:
        raise ImagingError(f"{binary} needs libraries this host lacks: {out.strip()}")
    return [m[1] for line in out.splitlines() if (m := _LIBRARY_RE.search(line.strip()))]


async def _add_programs(tree: _Tree, programs: dict[str, str], links: dict[str, str],
                        files: dict[str, Path] | None = None) -> None:
    """Add busybox (with a link for each applet), ``programs`` (path inside →
    host command, replacing busybox's applet of that name), ``files`` (path inside
    → a host program given by its path) and ``links`` (path inside → target), with
    the libraries each needs at the paths ``ldd`` shows (none for a static
    program), and what the C library loads unseen (:data:`DLOPENED`)."""
    busybox = tool(BUSYBOX)
    hosts = {path: tool(command) for path, command in programs.items()}
    hosts.update({path: str(source) for path, source in (files or {}).items()})
    names = {Path(path).name for path in [*programs, *links]}
    for applet in (await run(busybox, "--list-full")).split():
        if Path(applet).name not in names:
            tree.symlink(applet, "/bin/busybox")
    tree.copy("bin/busybox", Path(busybox), 0o755)  # after the links: it lists itself as an applet
    for path, host in hosts.items():
        tree.copy(path, Path(host), 0o755)
    for path, target in links.items():
        tree.symlink(path, target)
    for libraries in await asyncio.gather(*(_libraries(b) for b in [busybox, *hosts.values()])):
        for library in libraries:
            if library.lstrip("/") not in tree.entries:  # libc and the loader: once
                tree.copy(library.lstrip("/"), Path(library), 0o755)
            for loaded in (Path(library).with_name(name) for name in DLOPENED if Path(library).name == LIBC):
                if not loaded.is_file():
                    raise ImagingError(f"{loaded} is missing: the C library loads it (install libgcc-s1)")
                tree.entries.setdefault(str(loaded).lstrip("/"), _Entry(stat.S_IFREG | 0o755, loaded.read_bytes()))


async def _base_tree(kernel: Kernel, name: str, modules: Sequence[str], programs: dict[str, str],
                     init: str, links: dict[str, str] | None = None,
                     host_files: dict[str, Path] | None = None) -> _Tree:
    """What both initramfs hold: folders, the console, ``/etc/mtab``, the
    programs (and ``links``, and the host programs ``host_files``), the modules (and
    their list, in load order), the DHCP hook and ``init``."""
    tree = _Tree()
    for folder in ("proc", "sys", "dev", "run", "mnt", "etc", "var/log"):  # partclone logs in /var/log
        tree.folder(folder)
    tree.folder("tmp", 0o1777)
    tree.char_device("dev/console", 5, 1)
    tree.symlink("var/run", "/run")
    tree.symlink("etc/mtab", "/proc/self/mounts")  # partclone refuses a mounted partition by /etc/mtab
    await _add_programs(tree, programs, links or {}, host_files)
    files = await kernel.modules_for(modules)
    listed = [str(f.relative_to(kernel.tree)) for f in files]
    for path, source in zip(listed, files, strict=True):
        tree.copy(path, source, 0o644)
    tree.file(MODULE_LIST, "".join(f"{path}\n" for path in listed))
    tree.file(DHCP_HOOK, DHCP_HOOK_SCRIPT, 0o755)
    tree.file("init", _fill(init, NAME=name, MODULE_LIST=MODULE_LIST, DHCP_HOOK=DHCP_HOOK), 0o755)
    return tree


async def _build(name: str, tree: _Tree, cache_dir: Path) -> Path:
    """The compressed initramfs of ``tree``: ``cache_dir/<name>-<key>.cpio.zst``,
    made unless there already (written beside it, then renamed: never half-made)."""
    archive = tree.archive()
    target = cache_dir / f"{name}-{hashlib.sha256(archive).hexdigest()[:16]}.cpio.zst"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f".{name}-") as scratch:
        raw = Path(scratch) / "initramfs.cpio"
        raw.write_bytes(archive)
        made = Path(scratch) / target.name
        await run(tool(ZSTD), "-q", f"-{ZSTD_LEVEL}", "-o", str(made), str(raw))
        os.chmod(made, 0o644)
        made.replace(target)
    return target


def frisbee_files(folder: Path | None) -> dict[str, Path]:
    """Emulab's node programs (the ``frisbee`` client, ``imagezip``) in ``folder``, by their path in the
    imaging OS; none without a folder (the testbed's config then names no frisbee programs either)."""
    if folder is None:
        return {}
    return {f"usr/bin/{name}": folder / name for name in FRISBEE_NODE_PROGRAMS}


async def build_imaging_os(kernel: Kernel, cache_dir: Path, frisbee_programs: Path | None = None) -> Path:
    """The imaging OS's initramfs for ``kernel`` (cached in ``cache_dir``), with Emulab's node programs
    from the folder ``frisbee_programs`` (:func:`imaging_testbed.frisbee.locate`) when one is given."""
    tree = await _base_tree(kernel, IMAGING_OS, NET_MODULES, IMAGING_OS_PROGRAMS, IMAGING_OS_INIT,
                            IMAGING_OS_LINKS, frisbee_files(frisbee_programs))
    return await _build(IMAGING_OS, tree, cache_dir)


async def build_disk_os(kernel: Kernel, cache_dir: Path, host_keys: Sequence[Path], authorized_key: Path) -> Path:
    """The initramfs of the test images' installed OS for ``kernel`` (cached in
    ``cache_dir``): dropbear serving ``host_keys`` (dropbear format) and letting
    root in with the key whose public half (OpenSSH format) is ``authorized_key``."""
    keys = {f"etc/dropbear/{key.name}": key for key in host_keys}
    if len(keys) != len(host_keys) or not keys:
        raise ValueError(f"host keys must be one or more files of distinct names, not {list(host_keys)}")
    init = _fill(DISK_OS_INIT, DISK=DISK, IDENTITY_FILE=IDENTITY_FILE,
                 HOST_KEYS=" ".join(f"-r /{path}" for path in keys))
    tree = await _base_tree(kernel, DISK_OS, NET_MODULES + FAT_MODULES, DISK_OS_PROGRAMS, init)
    for path, key in keys.items():
        tree.copy(path, key, 0o600)
    tree.file("etc/passwd", PASSWD)
    tree.file("etc/group", GROUP)
    tree.file("etc/shells", SHELLS)
    tree.folder("root", 0o700)
    tree.folder("root/.ssh", 0o700)
    tree.copy("root/.ssh/authorized_keys", authorized_key, 0o600)
    return await _build(DISK_OS, tree, cache_dir)
