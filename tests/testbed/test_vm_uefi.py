"""The VM tier end to end, booting by UEFI: three qemu machines running OVMF, whose PXE (iPXE's EFI
driver) is handed GRUB's network image by dnsmasq, which reads the per-MAC ``grub.cfg-01-<mac>`` the
product's ``grub`` boot backend writes (``[nodes] boot = grub``) and boots the imaging OS, or chain-loads
the disk's ``\\EFI\\BOOT\\BOOTX64.EFI`` (GRUB again, which starts the installed OS).  The product is the
same as for BIOS machines; only its boot backend differs.  The cycle is the BIOS tier's: load all,
wait, save one (file-system-aware) and load the save elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator

import pytest

from imaging_testbed.disks import inspect
from imaging_testbed.images import TestImage
from tests.testbed.conftest import Testbed
from tests.testbed.product import product
from tests.testbed.vms import TIMEOUT, VMS, default_image_of, disk_starts_with, no_links, vm_testbed

MARK_FILE = "/MARK.TXT"  # a file the installed OS writes in its FAT, that a save must carry


@pytest.fixture(scope="module")
def vms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """Three UEFI VMs, for this module."""
    yield from vm_testbed(tmp_path_factory.mktemp("uefivms"), "uefi")


@pytest.fixture(scope="module")
def default_image(vms: Testbed) -> TestImage:
    """The repository's bootable default image, as ``up`` made it (it boots by BIOS and by UEFI)."""
    return default_image_of(vms)


def test_the_product_runs_the_grub_backend(vms: Testbed) -> None:
    config = vms.config.read_text()
    assert "boot = grub" in config and f"config_dir = {vms.dir / 'tftp' / 'grub'}" in config


def test_load_wait_save_and_load_the_save_elsewhere_by_uefi(vms: Testbed, default_image: TestImage) -> None:
    timings: dict[str, float] = {}
    load = product(vms, "load", "-a", "-t", TIMEOUT, timeout=300)
    timings["load of 3"] = load.seconds
    assert load.code == 0, load.out + load.err
    assert "3 ok, 0 failed" in load.out
    assert no_links(vms.dir)
    for number in range(1, VMS + 1):
        assert disk_starts_with(vms, number, default_image), f"fit0{number}'s disk"
    # every machine booted GRUB's network image, which read the product's link, then the disk's GRUB
    dnsmasq = (vms.dir / "logs" / "dnsmasq.log").read_text()
    assert "pxelinux.0 to" not in dnsmasq
    for number in range(1, VMS + 1):
        node = vms.node(number)
        assert f"sent {vms.dir}/tftp/grubx64.efi to {node.control_ip}" in dnsmasq
        assert f"sent {vms.dir}/tftp/grub/grub.cfg-{node.pxe_name} to {node.control_ip}" in dnsmasq
        assert "Booting `imaging OS'" in vms.layout.console_log(node).read_text(errors="replace")
    wait = product(vms, "wait", "-a", "-t", "180", timeout=200)
    timings["reset to ssh"] = wait.seconds
    assert wait.code == 0, wait.out + wait.err
    for number in range(1, VMS + 1):
        assert vms.ssh(number, "cat /etc/imaging-image", timeout=20).stdout.strip() == default_image.identity
        # the network GRUB found no link: it chain-loaded the disk's \EFI\BOOT\BOOTX64.EFI
        console = vms.layout.console_log(vms.node(number)).read_text(errors="replace")
        assert "Booting `local disk'" in console.split("Booting `imaging OS'")[-1]
    boots = [vms.status()[f"fit0{n}"].boot_seconds or 0.0 for n in range(1, VMS + 1)]
    timings["reset to ssh, slowest machine"] = max(boots)
    assert " vda1" in vms.ssh(1, "cat /proc/partitions", timeout=20).stdout  # the disk OS read the table

    # the installed OS writes a file in its FAT; fit01 is saved (the partition table and each
    # partition: .ptcl.zst) and the save loaded onto fit03
    mark = f"IMAGING-MARK-{time.time_ns()}"
    written = vms.ssh(1, f"mount -t vfat /dev/vda1 /mnt/disk && printf {mark} > /mnt/disk{MARK_FILE}"
                         " && umount /mnt/disk && sync", timeout=20)
    assert written.returncode == 0, written.stderr
    before = asyncio.run(inspect(vms.disk(1)))
    assert before.partition(1).files[MARK_FILE] == hashlib.sha256(mark.encode()).hexdigest()
    save = product(vms, "save", "fit01", "-o", "vmsave", "--repo", "-t", TIMEOUT, timeout=300)
    timings["save of 1"] = save.seconds
    assert save.code == 0, save.out + save.err
    saved = sorted((vms.dir / "images").glob("saving__fit01__*__vmsave.ptcl.zst"))
    assert len(saved) == 1 and saved[0].with_name(saved[0].name + ".sha256").exists()
    assert saved[0].stat().st_size < default_image.raw_size // 2, "the save holds the used blocks only"

    again = product(vms, "load", "-i", saved[0].name, "fit03", "-t", TIMEOUT, timeout=300)
    timings["load of the save on 1"] = again.seconds
    assert again.code == 0, again.out + again.err
    after = asyncio.run(inspect(vms.disk(3)))
    assert after == before, "fit03 holds what fit01 held: table, file systems (clean), files"
    assert all(part.clean for part in after.partitions)
    assert product(vms, "wait", "fit03", "-t", "180", timeout=200).code == 0
    assert vms.ssh(3, "cat /etc/imaging-image", timeout=20).stdout.strip() == default_image.identity
    assert vms.ssh(3, f"mount -t vfat -o ro /dev/vda1 /mnt/disk && cat /mnt/disk{MARK_FILE}; umount /mnt/disk",
                   timeout=20).stdout == mark
    assert no_links(vms.dir)
    # every reset was QMP's system_reset: none fell back to killing and restarting qemu
    controller_log = (vms.dir / "logs" / "controller.log").read_text()
    assert "power-cycling qemu" not in controller_log and "killing qemu" not in controller_log
    for number in range(1, VMS + 1):
        assert "--- reset ---" in vms.layout.console_log(vms.node(number)).read_text()
    statuses = vms.status()
    assert all(statuses[f"fit0{n}"].stage == "ssh" and statuses[f"fit0{n}"].boot_seconds for n in (1, 2, 3))
    print("VM timings: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))


