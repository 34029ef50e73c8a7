"""The VM tier end to end, booting by BIOS: three qemu machines booting over PXE (SeaBIOS, iPXE →
pxelinux → the imaging OS or the local disk), driven by the unchanged product.  The same machines
booting by UEFI (OVMF, GRUB) are ``test_vm_uefi``'s.

Everything here is real: SeaBIOS and iPXE, dnsmasq's DHCP and TFTP, Debian's
pxelinux, a Debian kernel, busybox telnetd, udp-sender/udp-receiver, zstd,
nc, partclone, sfdisk, blkid, Emulab's frisbee and imagezip, and dropbear; the disks are partitioned (a FAT
syslinux boots, an ext4 with files, a swap area).  Under TCG (no working KVM) a test takes a minute or two;
it is skipped, with the reason, only where qemu or the kernel package is
missing (``make vm-packages`` installs them).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging_testbed import frisbee
from imaging_testbed.disks import inspect
from imaging_testbed.images import MIB, TestImage
from imaging_testbed.procs import tracked
from tests.testbed.conftest import Testbed
from tests.testbed.product import BIN, product
from tests.testbed.vms import TIMEOUT, default_image_of, disk_starts_with, no_links, vm_testbed

STALL_TIMEOUT = 12  # [nodes] stall_timeout of the load that kills a machine (the VMs' profile says 30)
# what the file-system-aware images run on a node, each asked its version in the imaging OS
VERSIONS = {"partclone.ext4 -v": "Partclone", "partclone.ext3 -v": "Partclone", "partclone.vfat -v": "Partclone",
            "partclone.fat -v": "Partclone", "partclone.dd -v": "Partclone", "sfdisk --version": "util-linux",
            "blkid -V": "util-linux", "mkswap -V": "util-linux", "head --version": "coreutils",
            "dd --version": "coreutils"}


@pytest.fixture(scope="module")
def vms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """Three BIOS VMs, for this module."""
    yield from vm_testbed(tmp_path_factory.mktemp("vms"), "bios")


@pytest.fixture(scope="module")
def default_image(vms: Testbed) -> TestImage:
    """The repository's bootable default image, as ``up`` made it."""
    return default_image_of(vms)


def test_imaging_os_runs_what_partitioned_images_need(vms: Testbed) -> None:
    """The imaging OS sees its disk's partitions, and partclone, sfdisk, blkid, mkswap and head run there as
    the product runs them (a save of each file system to a pipe, blkid at an offset, head -c in a pipe)."""
    vms.set_next_boot(1, imaging_os=True)
    assert vms.cmc(1, "reset").stdout.strip() == "ok"
    status = vms.wait_stage(1, "telnet", timeout=180)
    print(f"\nfit01: reset to telnet (imaging OS) in {status.boot_seconds} s")
    disk = vms.disk(1)
    for command, word in VERSIONS.items():
        done = vms.telnet(1, command, timeout=20)
        assert done.returncode == 0 and word in done.stdout, f"{command}: {done.stdout} {done.stderr}"
    report = asyncio.run(inspect(disk))
    assert vms.telnet(1, "blockdev --getsize64 /dev/vda").stdout.split() == [str(disk.stat().st_size)]
    partitions = vms.telnet(1, "cat /proc/partitions").stdout
    for part in report.partitions:
        assert f" {part.size // 1024} vda{part.number}" in partitions, partitions
    table = json.loads(vms.telnet(1, "sfdisk --json /dev/vda").stdout)["partitiontable"]
    assert [(int(p["start"]) * 512, p["node"]) for p in table["partitions"]] == \
        [(p.start, f"/dev/vda{p.number}") for p in report.partitions]
    for part in report.partitions:
        found = vms.telnet(1, f"blkid -p -o export -O {part.start} -S {part.size} /dev/vda").stdout
        assert f"TYPE={part.fs}" in found.split() and f"UUID={part.uuid}" in found.split(), found
    for number, program in ((1, "partclone.vfat -c"), (2, "partclone.ext4 -c"), (3, "partclone.dd")):
        saved = vms.telnet(1, f"{{ {program} -s /dev/vda{number} -o - -L /dev/null -B 2>/tmp/log; echo $? >/tmp/rc; }}"
                              " | wc -c; echo status $(cat /tmp/rc); tail -n 3 /tmp/log", timeout=90)
        words = saved.stdout.split()
        assert int(words[0]) > 4096 and "status 0" in saved.stdout, f"{program}: {saved.stdout}"
        assert "must be installed" not in saved.stdout, saved.stdout
    # head -c in a pipe reads no further than its count: what follows is the next step's; dd writes at a
    # byte offset and says how many bytes it copied
    assert vms.telnet(1, "printf abcdef | { head -c 2 >/dev/null; cat; }").stdout.strip() == "cdef"
    done = vms.telnet(1, "printf abcdef | { head -c 4 | dd of=/tmp/dd bs=1M seek=3 oflag=seek_bytes conv=notrunc"
                         " 2>&1 | grep bytes; cat; echo; }; od -c /tmp/dd | head -n 1; rm -f /tmp/dd")
    copied = done.stdout.splitlines()
    assert copied[0].startswith("4 bytes") and copied[1].strip() == "ef", copied
    assert copied[2].split() == ["0000000", "\\0", "\\0", "\\0", "a", "b", "c", "d"], copied
    swap = vms.telnet(1, "dd if=/dev/zero of=/tmp/swap bs=1M count=0 seek=4 2>/dev/null &&"
                         " mkswap -U 0b7fd4cf-8e5c-4a44-a2e9-6bd1a6b7a1f0 -L vmswap /tmp/swap >/dev/null &&"
                         " blkid -p -o export /tmp/swap; rm -f /tmp/swap").stdout.split()
    assert {"TYPE=swap", "UUID=0b7fd4cf-8e5c-4a44-a2e9-6bd1a6b7a1f0", "LABEL=vmswap"} <= set(swap), swap


def test_frisbee_save_and_load_on_the_others(vms: Testbed, default_image: TestImage) -> None:
    """The same cycle with Emulab's programs in the imaging OS: fit01 saved by imagezip (file-system-aware:
    the table, the FAT and ext4 by their used blocks, the swap by its header), the ``.ndz`` multicast by
    frisbeed to the frisbee client of fit02, whose disk then holds what fit01's held and boots."""
    assert f"imagezip = {frisbee.IMAGEZIP}" in vms.config.read_text(), "the VMs run their own imagezip"
    before = asyncio.run(inspect(vms.disk(1)))
    assert [part.fs for part in before.partitions] == ["vfat", "ext4", "swap"]
    timings: dict[str, float] = {}
    save = product(vms, "save", "--transport", "frisbee", "fit01", "-o", "vmfrisbee", "--repo", "-t", TIMEOUT,
                   timeout=300)
    timings["frisbee save of 1"] = save.seconds
    assert save.code == 0, save.out + save.err
    saved = sorted((vms.dir / "images").glob("saving__fit01__*__vmfrisbee.ndz"))
    assert len(saved) == 1 and saved[0].with_name(saved[0].name + ".sha256").exists()
    assert saved[0].stat().st_size < default_image.raw_size // 2, "imagezip saved the used blocks only"

    load = product(vms, "load", "--transport", "frisbee", "-i", saved[0].name, "fit02", "-t", TIMEOUT,
                   timeout=300)
    timings["frisbee load of 1"] = load.seconds
    assert load.code == 0, load.out + load.err
    assert "1 ok, 0 failed" in load.out
    assert asyncio.run(inspect(vms.disk(2))) == before, "fit02 holds what fit01 held: table, clean file systems, files"
    assert product(vms, "wait", "fit01", "fit02", "-t", "180", timeout=200).code == 0
    identity = vms.ssh(1, "cat /etc/imaging-image", timeout=20).stdout.strip()
    assert identity and vms.ssh(2, "cat /etc/imaging-image", timeout=20).stdout.strip() == identity
    assert no_links(vms.dir)
    print("VM frisbee timings: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))


def test_small_disk_and_machine_killed_mid_transfer(vms: Testbed, default_image: TestImage,
                                                     tmp_path: Path) -> None:
    vms.fault(3, "disk=small:8")  # from its next power-on
    assert vms.cmc(3, "off").stdout.strip() == "ok"
    assert vms.cmc(3, "on").stdout.strip() == "ok"
    assert vms.disk(3).stat().st_size == 8 << 20
    extra = tmp_path / "stall.conf"  # a machine killed mid-transfer is told by its lack of progress: sooner
    extra.write_text(f"[nodes]\nstall_timeout = {STALL_TIMEOUT}\n")
    started = time.monotonic()
    process = vms.popen(str(BIN / "imaging-load"), "--json", "-a", "-t", TIMEOUT, "--config", str(extra))
    assert process.stdout is not None
    killed = False
    for line in process.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        if not killed and event.get("node") == "fit02" and event.get("phase") == "receiving" \
                and (event.get("percent") or 0) > 0:
            assert vms.cmc(2, "off").stdout.strip() == "ok"  # QMP quit: the machine is gone
            killed = True
        if "summary" in event:
            break
    process.wait(timeout=30)
    assert killed, "fit02 never reached the transfer"
    assert process.returncode == 1
    summary = {r["node"]: r for r in event["summary"]}
    assert summary["fit01"]["ok"] and disk_starts_with(vms, 1, default_image)
    assert not summary["fit02"]["ok"] and not summary["fit03"]["ok"]
    assert summary["fit03"]["detail"].startswith(f"disk too small: fit03 has 8.0 MiB, the image needs"
                                                 f" {default_image.raw_size / MIB:.1f} MiB")
    assert summary["fit02"]["detail"] != summary["fit03"]["detail"]
    assert event["retry"].endswith(" 2-3")
    assert time.monotonic() - started < int(TIMEOUT) + 2
    assert no_links(vms.dir)
    off = vms.status()["fit02"]
    assert off.power == "off" and off.stage == "off"
    assert "fit02" not in [p.name for p in tracked(vms.dir / "run") if p.alive()], "fit02's qemu is gone"
    print(f"fit02: {summary['fit02']['detail']}")
    vms.fault(3, "clear")
