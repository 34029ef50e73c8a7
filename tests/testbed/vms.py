"""What the VM tier's test modules share: their testbed of three qemu machines, booting by BIOS
(``test_vm``) or by UEFI (``test_vm_uefi``), the repository's bootable default image, and checks."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging.errors import UsageError
from imaging_testbed import frisbee, lifecycle
from imaging_testbed.disks import inspect
from imaging_testbed.images import IDENTITY_FILE, IDENTITY_PREFIX, MTOOLS_ENV, TestImage, sha256_file
from imaging_testbed.vm import kernel, provision
from tests.testbed.conftest import Testbed, missing_requirements

VMS = 3
TIMEOUT = "240"  # the product's --timeout for a VM step (TCG on two cores)


def vm_unavailable(firmware: str = "bios") -> str | None:
    """Why VMs booting by ``firmware`` cannot run here, or None."""
    reason = missing_requirements() or provision.missing_requirements(firmware)
    if reason:
        return reason
    try:
        kernel.find_package()
    except UsageError as exc:
        return str(exc)
    return None


def processes_of(directory: Path) -> list[str]:
    """Command lines of the live processes naming ``directory`` (qemu, dnsmasq, senders…)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            line = " ".join(a.decode(errors="replace") for a in argv if a)
            if str(directory) in line and "pytest" not in line:
                found.append(line)
    return found


def vm_testbed(directory: Path, firmware: str) -> Iterator[Testbed]:
    """Three VMs booting by ``firmware`` in ``directory``, for a module's fixture; after ``down``, nothing
    of theirs may be left.  Skips the module where VMs cannot run."""
    reason = vm_unavailable(firmware)
    if reason:
        pytest.skip(f"no VM tier here: {reason}")
    asyncio.run(frisbee.build())  # Emulab's programs, which the imaging OS then carries (make frisbee built them)
    started = time.monotonic()
    record = asyncio.run(lifecycle.up(directory, VMS, vm=True, firmware=firmware))
    print(f"\nVM testbed up in {time.monotonic() - started:.1f} s ({record.accel}, {firmware})")
    try:
        yield Testbed(Path(record.directory), record.layout)
    finally:
        asyncio.run(lifecycle.down(directory))
    assert no_links(directory)
    assert processes_of(directory) == []


def default_image_of(vms: Testbed) -> TestImage:
    """The repository's bootable default image, as ``up`` made it."""
    path = vms.dir / "images" / "default.img"
    fat = asyncio.run(inspect(path)).partition(1)
    assert fat.fs == "vfat" and fat.clean and IDENTITY_FILE in fat.files
    identity = subprocess.run(["mtype", "-i", f"{path}@@{fat.start}", f"::{IDENTITY_FILE}"], capture_output=True,
                              text=True, check=True, env=MTOOLS_ENV).stdout.strip()
    assert identity.startswith(IDENTITY_PREFIX + " ")
    digest = sha256_file(path)
    return TestImage(path, digest, digest, path.stat().st_size, identity)


def disk_starts_with(vms: Testbed, number: int, image: TestImage) -> bool:
    """The machine's disk file starts with the image's bytes."""
    return sha256_file(vms.disk(number), limit=image.raw_size) == image.raw_sha256


def no_links(directory: Path) -> bool:
    """No per-MAC next-boot link is left, for pxelinux or for GRUB."""
    tftp = directory / "tftp"
    return not list((tftp / "pxelinux.cfg").glob("01-*")) and not list((tftp / "grub").glob("grub.cfg-01-*"))
