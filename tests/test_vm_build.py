"""The VM tier's builders: the kernel tree, the two initramfs and the bootable
test images.  No VM boots here (the VM tier's end-to-end tests do that); these
tests need Debian's kernel package and the builders' tools, and skip without them."""

from __future__ import annotations

import asyncio
import hashlib
import re
import subprocess
import time
from pathlib import Path

import pytest

from imaging.errors import ImagingError, UsageError
from imaging_testbed import frisbee
from imaging_testbed.disks import MBR_CODE, inspect
from imaging_testbed.images import IDENTITY_FILE, MTOOLS_ENV, new_identity, sha256_file
from imaging_testbed.vm.bootimage import SWAP_MIB, fat_mib, make_boot_image, smallest_mib
from imaging_testbed.vm.initramfs import (
    DHCP_HOOK,
    DHCP_HOOK_SCRIPT,
    DISK_OS_PROGRAMS,
    FAT_MODULES,
    IMAGING_OS_LINKS,
    IMAGING_OS_PROGRAMS,
    MODULE_LIST,
    NET_MODULES,
    PARTITION_PROGRAMS,
    build_disk_os,
    build_imaging_os,
    frisbee_files,
)
from imaging_testbed.vm.kernel import Kernel, find_package, missing_tools, tool, unpack

MIB = 1 << 20


@pytest.fixture(scope="session")
def vm_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache for the whole session: the kernel is unpacked once."""
    return tmp_path_factory.mktemp("vm-cache")


@pytest.fixture(scope="session")
def kernel(vm_cache: Path) -> Kernel:
    """Debian's kernel, unpacked; skips without the package or the tools."""
    try:
        deb = find_package()
    except UsageError as exc:
        pytest.skip(str(exc))
    if missing := missing_tools():
        pytest.skip(f"the VM builders need the Debian packages {' '.join(missing)}")
    return asyncio.run(unpack(deb, vm_cache))


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    """Two host key files and an authorized public key (the builders copy them, unread)."""
    folder = tmp_path_factory.mktemp("keys")
    host_keys = [folder / "dropbear_ed25519_host_key", folder / "dropbear_rsa_host_key"]
    for key in host_keys:
        key.write_bytes(b"host key " + key.name.encode())
    public = folder / "id_ed25519.pub"
    public.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample test\n")
    return host_keys, public


@pytest.fixture(scope="session")
def imaging_os(kernel: Kernel, vm_cache: Path) -> Path:
    """The imaging OS's initramfs."""
    return asyncio.run(build_imaging_os(kernel, vm_cache))


@pytest.fixture(scope="session")
def disk_os(kernel: Kernel, vm_cache: Path, keys: tuple[list[Path], Path]) -> Path:
    """The disk OS's initramfs."""
    return asyncio.run(build_disk_os(kernel, vm_cache, *keys))


def cpio(initramfs: Path, *options: str) -> bytes:
    """What GNU cpio says of (or extracts from) a compressed initramfs."""
    archive = subprocess.run([tool("zstd"), "-dc", str(initramfs)], capture_output=True, check=True).stdout
    return subprocess.run(["cpio", "--quiet", *options], input=archive, capture_output=True, check=True).stdout


def cpio_names(initramfs: Path) -> set[str]:
    """The paths a compressed initramfs holds."""
    return set(cpio(initramfs, "-t").decode().splitlines())


def cpio_modes(initramfs: Path) -> dict[str, str]:
    """The permissions (``ls -l`` style) of what a compressed initramfs holds, symbolic links aside."""
    lines = cpio(initramfs, "-tv").decode().splitlines()
    return {line.split()[-1]: line.split()[0] for line in lines if not line.startswith("l")}


def cpio_member(initramfs: Path, name: str) -> bytes:
    """The contents of one file of a compressed initramfs."""
    return cpio(initramfs, "-i", "--to-stdout", name)


def libraries(program: str) -> set[str]:
    """The libraries and loader ``ldd`` shows for host command ``program``, as paths in an initramfs."""
    out = subprocess.run([tool("ldd"), tool(program)], capture_output=True, text=True, check=False).stdout
    return {m[1].lstrip("/") for m in re.finditer(r"(/\S+) \(0x", out)}


def test_find_package_explains_how_to_fetch_one(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="make vm-packages"):
        find_package(tmp_path)
    with pytest.raises(UsageError, match="apt-get download linux-image"):
        find_package(tmp_path / "absent")


def test_find_package_takes_the_newest_generic_amd64_kernel(tmp_path: Path) -> None:
    for name in ("linux-image-6.1.0-9-amd64_6.1.27-1_amd64.deb",
                 "linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb",
                 "linux-image-6.1.0-10-amd64_6.1.38-2_amd64.deb",
                 "linux-image-6.1.0-60-cloud-amd64_6.1.200-1_amd64.deb",
                 "linux-image-6.1.0-60-rt-amd64_6.1.200-1_amd64.deb",
                 "linux-image-amd64_6.1.200-1_amd64.deb"):
        (tmp_path / name).touch()
    assert find_package(tmp_path).name == "linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb"


async def test_unpacked_tree_is_reused(kernel: Kernel, vm_cache: Path) -> None:
    assert kernel.vmlinuz.is_file()
    assert (kernel.tree / "lib" / "modules" / kernel.version / "modules.dep").is_file()
    started = time.monotonic()
    assert await unpack(find_package(), vm_cache) == kernel
    assert time.monotonic() - started < 0.5
    assert [p.name for p in vm_cache.iterdir() if p.name.startswith(".kernel")] == []  # no scratch left


def test_modules_come_dependencies_first_each_once(kernel: Kernel) -> None:
    wanted = [*NET_MODULES, *FAT_MODULES]
    files = asyncio.run(kernel.modules_for(wanted))
    names = [f.name.removesuffix(".ko").replace("-", "_") for f in files]
    assert len(names) == len(set(names))
    assert set(wanted) <= set(names)
    modules_dir = kernel.tree / "lib" / "modules" / kernel.version
    depends = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        name, _, deps = line.partition(":")
        depends[modules_dir / name] = [modules_dir / d for d in deps.split()]
    # the order is whatever this kernel's modules.dep says (it changes between bookworm kernel packages):
    # each module comes after every module it depends on, and some do depend on others
    assert any(depends[module] for module in files)
    for position, module in enumerate(files):
        assert set(depends[module]) <= set(files[:position]), f"{module.name} before its dependencies"
    with pytest.raises(ImagingError, match="no module"):
        asyncio.run(kernel.modules_for(["no_such_module"]))


def test_imaging_os_holds_init_programs_libraries_and_modules(kernel: Kernel, imaging_os: Path) -> None:
    names = cpio_names(imaging_os)
    expected = {"init", "dev/console", "bin/busybox", "sbin/udhcpc", "usr/sbin/telnetd", DHCP_HOOK, MODULE_LIST}
    expected |= set(IMAGING_OS_PROGRAMS)
    for program in ("busybox", *IMAGING_OS_PROGRAMS.values()):
        expected |= libraries(program)
    modules = asyncio.run(kernel.modules_for(NET_MODULES))
    expected |= {str(m.relative_to(kernel.tree)) for m in modules}
    assert expected <= names, f"missing: {sorted(expected - names)}"
    # the programs are Debian's, not busybox applets of the same name
    assert cpio_member(imaging_os, "usr/bin/nc") == Path(tool("nc.openbsd")).read_bytes()
    assert cpio_member(imaging_os, "bin/sh") == Path(tool("dash")).read_bytes()
    order = cpio_member(imaging_os, MODULE_LIST).decode().split()
    assert order == [str(m.relative_to(kernel.tree)) for m in modules]
    init = cpio_member(imaging_os, "init").decode()
    assert init.startswith("#!/bin/busybox sh") and not re.search(r"__[A-Z_]+__", init)
    assert "start 23 telnet telnetd -F -l /bin/sh -p 23" in init and "state dhcp" in init


def test_imaging_os_holds_the_partition_programs(imaging_os: Path) -> None:
    """What file-system-aware images run on a node: partclone, util-linux's and coreutils' programs
    (not busybox's applets of the same names), the folders partclone writes, and /etc/mtab."""
    listing = cpio(imaging_os, "-tv").decode().splitlines()
    links = {line.split()[-3]: line.split()[-1] for line in listing if line.startswith("l")}
    modes = cpio_modes(imaging_os)
    for path, program in PARTITION_PROGRAMS.items():
        assert modes[path] == "-rwxr-xr-x", path
        assert cpio_member(imaging_os, path) == Path(tool(program)).read_bytes(), path
    assert cpio_member(imaging_os, "usr/bin/head") == Path(tool("head")).read_bytes()
    assert cpio_member(imaging_os, "usr/bin/dd") == Path(tool("dd")).read_bytes()
    assert {"bin/head", "bin/dd", "sbin/mkswap", "usr/bin/head"} & set(links) == set()  # no busybox applet
    assert links["sbin/blockdev"] == links["bin/grep"] == "/bin/busybox"  # busybox's do as coreutils' do
    for path, target in IMAGING_OS_LINKS.items():
        assert links[path] == target and target.lstrip("/") in modes
    assert links["usr/sbin/partclone.fat"] == "/usr/sbin/partclone.vfat"
    assert links["usr/sbin/partclone.ext3"] == links["usr/sbin/partclone.ext2"] == "/usr/sbin/partclone.ext4"
    assert links["etc/mtab"] == "/proc/self/mounts"
    assert modes["var/log"] == "drwxr-xr-x" and modes["tmp"] == "drwxrwxrwt"
    names = cpio_names(imaging_os)
    for program in {*PARTITION_PROGRAMS.values()}:
        assert libraries(program) <= names, f"{program}'s libraries"
    libc = next(name for name in libraries("partclone.ext4") if name.endswith("/libc.so.6"))
    assert str(Path(libc).with_name("libgcc_s.so.1")) in names  # loaded by dlopen when partclone's threads end


def test_imaging_os_holds_emulabs_node_programs_when_built(kernel: Kernel, vm_cache: Path, imaging_os: Path) -> None:
    """With Emulab's programs built (``make frisbee``), the imaging OS carries the client and imagezip as
    they are (static: no library); without them, neither."""
    programs = asyncio.run(frisbee.build())
    with_frisbee = asyncio.run(build_imaging_os(kernel, vm_cache, programs))
    assert with_frisbee != imaging_os
    modes = cpio_modes(with_frisbee)
    for name in (frisbee.CLIENT, frisbee.IMAGEZIP):
        assert modes[f"usr/bin/{name}"] == "-rwxr-xr-x"
        assert cpio_member(with_frisbee, f"usr/bin/{name}") == (programs / name).read_bytes()
        ldd = subprocess.run([tool("ldd"), str(programs / name)], capture_output=True, text=True)
        assert "not a dynamic executable" in ldd.stdout + ldd.stderr, "built static: no library to carry"
    assert {"usr/bin/frisbee", "usr/bin/imagezip"} & cpio_names(imaging_os) == set()
    assert frisbee_files(None) == {}


def test_disk_os_holds_dropbear_keys_and_root_login(kernel: Kernel, disk_os: Path,
                                                    keys: tuple[list[Path], Path]) -> None:
    host_keys, public = keys
    listing = cpio_modes(disk_os)
    expected = {"init", "etc/passwd", "root/.ssh/authorized_keys", *DISK_OS_PROGRAMS}
    expected |= {f"etc/dropbear/{k.name}" for k in host_keys} | libraries("dropbear")
    expected |= {str(m.relative_to(kernel.tree)) for m in asyncio.run(kernel.modules_for([*NET_MODULES, *FAT_MODULES]))}
    assert expected <= set(listing), f"missing: {sorted(expected - set(listing))}"
    assert listing["root"] == "drwx------" and listing["root/.ssh"] == "drwx------"
    assert listing["root/.ssh/authorized_keys"] == "-rw-------"
    assert cpio_member(disk_os, "root/.ssh/authorized_keys") == public.read_bytes()
    assert cpio_member(disk_os, "etc/passwd").decode().startswith("root:x:0:0:root:/root:/bin/sh")
    init = cpio_member(disk_os, "init").decode()
    assert all(f"-r /etc/dropbear/{k.name}" in init for k in host_keys)
    assert "/etc/imaging-image" in init and "start 22 ssh dropbear" in init
    assert not re.search(r"__[A-Z_]+__", init)


def test_dhcp_hook_writes_no_file() -> None:
    """A udhcpc hook that wrote /etc/resolv.conf once cut a host off its registries."""
    assert set(re.findall(r">>?\s*([^\s&;]+)", DHCP_HOOK_SCRIPT)) <= {"/dev/null"}
    assert "broadcast" in DHCP_HOOK_SCRIPT


async def test_initramfs_rebuilt_only_when_an_input_changes(kernel: Kernel, vm_cache: Path, imaging_os: Path,
                                                           disk_os: Path, keys: tuple[list[Path], Path],
                                                           tmp_path: Path) -> None:
    made = imaging_os.stat().st_mtime_ns
    assert await build_imaging_os(kernel, vm_cache) == imaging_os
    assert imaging_os.stat().st_mtime_ns == made
    host_keys, public = keys
    assert await build_disk_os(kernel, vm_cache, host_keys, public) == disk_os
    other = tmp_path / "other.pub"
    other.write_text(public.read_text().replace("test", "another"))
    rebuilt = await build_disk_os(kernel, vm_cache, host_keys, other)
    assert rebuilt != disk_os and rebuilt.exists() and disk_os.exists()
    assert cpio_member(rebuilt, "root/.ssh/authorized_keys") == other.read_bytes()
    assert [p.name for p in vm_cache.iterdir() if p.name.startswith(".")] == []  # no scratch left


async def test_boot_image_is_a_partitioned_disk_syslinux_boots(kernel: Kernel, disk_os: Path,
                                                                tmp_path: Path) -> None:
    identity = new_identity("vm-test")
    target = tmp_path / "boot.img"
    image = await make_boot_image(kernel, disk_os, target, 32, identity)
    assert image.path == target and image.identity == identity and image.raw_size == 32 * MIB
    assert target.stat().st_size == 32 * MIB
    assert image.sha256 == image.raw_sha256 == sha256_file(target)
    # the MBR: syslinux's boot code, a dos table whose partition 1 (the FAT) is active
    mbr = target.read_bytes()[:512]
    assert mbr[:440] == MBR_CODE.read_bytes()[:440] and mbr[510:] == b"\x55\xaa"
    report = await inspect(target)
    assert "label: dos" in report.table and ", bootable" in report.table.splitlines()[-3]
    assert [(p.number, p.fs, p.clean) for p in report.partitions] == [(1, "vfat", True), (2, "ext4", True),
                                                                      (3, "swap", True)]
    fat = report.partition(1)
    assert fat.start == MIB and fat.size == fat_mib(kernel, disk_os) * MIB
    boot_sector = target.read_bytes()[fat.start:fat.start + 512]
    assert boot_sector[510:] == b"\x55\xaa" and b"SYSLINUX" in boot_sector  # the partition's own boot code
    at = f"{target}@@{fat.start}"
    listing = subprocess.run([tool("mdir"), "-a", "-b", "-i", at, "::/"], capture_output=True, text=True,
                             check=True, env=MTOOLS_ENV).stdout.split()
    assert {"::/vmlinuz", "::/initrd.img", "::/syslinux.cfg", "::/ldlinux.sys", "::/ldlinux.c32"} <= set(listing)
    config = subprocess.run([tool("mtype"), "-i", at, "::/syslinux.cfg"], capture_output=True, text=True,
                            check=True, env=MTOOLS_ENV).stdout
    assert "KERNEL /vmlinuz" in config and "INITRD /initrd.img" in config and "console=ttyS0" in config
    # UEFI's loader: GRUB, an EFI program (PE: MZ), whose config starts the same kernel with the same line
    loader = subprocess.run([tool("mtype"), "-i", at, "::/EFI/BOOT/BOOTX64.EFI"], capture_output=True,
                            check=True, env=MTOOLS_ENV).stdout
    assert loader[:2] == b"MZ" and b"GRUB" in loader
    assert fat.files["/EFI/BOOT/BOOTX64.EFI"] == hashlib.sha256(loader).hexdigest()
    grub_cfg = subprocess.run([tool("mtype"), "-i", at, "::/EFI/BOOT/grub.cfg"], capture_output=True, text=True,
                              check=True, env=MTOOLS_ENV).stdout
    append = next(line for line in config.splitlines() if "APPEND" in line).split(None, 1)[1]
    assert f"linux /vmlinuz {append}" in grub_cfg and "initrd /initrd.img" in grub_cfg
    assert fat.files["/initrd.img"] == sha256_file(disk_os) and fat.files["/vmlinuz"] == sha256_file(kernel.vmlinuz)
    read = subprocess.run([tool("mtype"), "-i", at, f"::{IDENTITY_FILE}"], capture_output=True, text=True,
                          check=True, env=MTOOLS_ENV).stdout
    assert read.strip() == identity
    root = report.partition(2)
    assert IDENTITY_FILE in root.files and len(root.files) > 3 and root.links  # files, some of them random
    assert [p.name for p in tmp_path.iterdir()] == ["boot.img"]  # made beside it, renamed
    # made alike from one identity, and another identity gets other random files
    again = await make_boot_image(kernel, disk_os, tmp_path / "again.img", 32, identity)
    assert await inspect(again.path) == report
    other = await make_boot_image(kernel, disk_os, tmp_path / "other.img", 32, new_identity("vm-test"))
    assert (await inspect(other.path)).partition(2).files != root.files


async def test_boot_image_refuses_a_bad_identity_or_size(kernel: Kernel, disk_os: Path, tmp_path: Path) -> None:
    smallest = smallest_mib(kernel, disk_os)
    assert smallest > 1 + fat_mib(kernel, disk_os) + SWAP_MIB  # the table, a FAT, a swap area and an ext4
    with pytest.raises(ValueError, match="identity"):
        await make_boot_image(kernel, disk_os, tmp_path / "a.img", 32, "not an identity")
    with pytest.raises(ValueError, match=f"at least {smallest} MiB"):
        await make_boot_image(kernel, disk_os, tmp_path / "b.img", smallest - 1, new_identity("small"))
    assert list(tmp_path.iterdir()) == []
    made = await make_boot_image(kernel, disk_os, tmp_path / "c.img", smallest, new_identity("smallest"))
    assert [p.clean for p in (await inspect(made.path)).partitions] == [True, True, True]
