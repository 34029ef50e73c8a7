"""The VM tier end to end: three qemu machines booting over PXE (iPXE → pxelinux
→ the imaging OS or the local disk), driven by the unchanged product.

Everything here is real: SeaBIOS and iPXE, dnsmasq's DHCP and TFTP, Debian's
pxelinux, a Debian kernel, busybox telnetd, udp-sender/udp-receiver, zstd,
nc and dropbear.  Under TCG (no working KVM) a test takes a minute or two;
it is skipped, with the reason, only where qemu or the kernel package is
missing (``make vm-packages`` installs them).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imaging.errors import UsageError
from imaging.testbed import lifecycle
from imaging.testbed.images import TestImage, read_identity, sha256_file
from imaging.testbed.procs import tracked
from imaging.testbed.vm import kernel, provision
from tests.testbed.conftest import Testbed, missing_requirements
from tests.testbed.product import BIN, product

VMS = 3
MARK_OFFSET = 20 << 20  # beyond the 16 MiB image, inside the 32 MiB disks
TIMEOUT = "240"  # the product's --timeout for a VM step (TCG on two cores)


def vm_unavailable() -> str | None:
    """Why VMs cannot run here, or None."""
    reason = missing_requirements() or provision.missing_requirements()
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


@pytest.fixture(scope="module")
def vms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """Three VMs, for this module; after ``down``, nothing of theirs may be left."""
    reason = vm_unavailable()
    if reason:
        pytest.skip(f"no VM tier here: {reason}")
    directory = tmp_path_factory.mktemp("vms")
    started = time.monotonic()
    record = asyncio.run(lifecycle.up(directory, VMS, vm=True))
    print(f"\nVM testbed up in {time.monotonic() - started:.1f} s ({record.accel})")
    try:
        yield Testbed(Path(record.directory), record.layout)
    finally:
        asyncio.run(lifecycle.down(directory))
    assert not list((directory / "tftp" / "pxelinux.cfg").glob("01-*"))
    assert processes_of(directory) == []


@pytest.fixture(scope="module")
def default_image(vms: Testbed) -> TestImage:
    """The repository's bootable default image, as ``up`` made it."""
    path = vms.dir / "images" / "default.img"
    identity = asyncio.run(read_identity(path))
    assert identity is not None
    digest = sha256_file(path)
    return TestImage(path, digest, digest, path.stat().st_size, identity)


def disk_starts_with(vms: Testbed, number: int, image: TestImage) -> bool:
    """The machine's disk file starts with the image's bytes."""
    return sha256_file(vms.disk(number), limit=image.raw_size) == image.raw_sha256


def no_links(vms: Testbed) -> bool:
    """No per-MAC next-boot link is left."""
    return not list((vms.dir / "tftp" / "pxelinux.cfg").glob("01-*"))


def test_load_wait_save_and_load_the_save_elsewhere(vms: Testbed, default_image: TestImage) -> None:
    timings: dict[str, float] = {}
    load = product(vms, "load", "-a", "-t", TIMEOUT, timeout=300)
    timings["load of 3"] = load.seconds
    assert load.code == 0, load.out + load.err
    assert "3 ok, 0 failed" in load.out
    assert no_links(vms)
    for number in range(1, VMS + 1):
        assert disk_starts_with(vms, number, default_image), f"fit0{number}'s disk"
    wait = product(vms, "wait", "-a", "-t", "180", timeout=200)
    timings["reset to ssh"] = wait.seconds
    assert wait.code == 0, wait.out + wait.err
    for number in range(1, VMS + 1):
        assert vms.ssh(number, "cat /etc/imaging-image", timeout=20).stdout.strip() == default_image.identity

    # mark fit01's disk beyond the image, then save it and load the save onto fit03
    mark = f"IMAGING-MARK-{time.time_ns()}"
    written = vms.ssh(1, f"printf {mark} | dd of=/dev/vda bs=1M seek={MARK_OFFSET >> 20} conv=notrunc"
                         f" 2>/dev/null && sync", timeout=20)
    assert written.returncode == 0, written.stderr
    save = product(vms, "save", "fit01", "-o", "vmsave", "--repo", "-t", TIMEOUT, timeout=300)
    timings["save of 1"] = save.seconds
    assert save.code == 0, save.out + save.err
    saved = sorted((vms.dir / "images").glob("saving__fit01__*__vmsave.img.zst"))
    assert len(saved) == 1 and saved[0].with_name(saved[0].name + ".sha256").exists()
    raw = subprocess.run(["zstd", "-dc", str(saved[0])], capture_output=True, check=True).stdout
    assert raw == vms.disk(1).read_bytes(), "the save is fit01's whole disk"
    assert raw[MARK_OFFSET:MARK_OFFSET + len(mark)] == mark.encode()

    again = product(vms, "load", "-i", saved[0].name, "fit03", "-t", TIMEOUT, timeout=300)
    timings["load of the save on 1"] = again.seconds
    assert again.code == 0, again.out + again.err
    assert vms.disk(3).read_bytes() == raw
    assert product(vms, "wait", "fit03", "-t", "180", timeout=200).code == 0
    assert vms.ssh(3, "cat /etc/imaging-image", timeout=20).stdout.strip() == default_image.identity
    assert vms.ssh(3, f"dd if=/dev/vda bs=1M skip={MARK_OFFSET >> 20} count=1 2>/dev/null | head -c {len(mark)}",
                   timeout=20).stdout == mark
    assert no_links(vms)
    # every reset was QMP's system_reset: none fell back to killing and restarting qemu
    controller_log = (vms.dir / "logs" / "controller.log").read_text()
    assert "power-cycling qemu" not in controller_log and "killing qemu" not in controller_log
    for number in range(1, VMS + 1):
        assert "--- reset ---" in vms.layout.console_log(vms.node(number)).read_text()
    statuses = vms.status()
    assert all(statuses[f"fit0{n}"].stage == "ssh" and statuses[f"fit0{n}"].boot_seconds for n in (1, 2, 3))
    print("VM timings: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))


def test_small_disk_and_machine_killed_mid_transfer(vms: Testbed, default_image: TestImage) -> None:
    vms.fault(3, "disk=small:8")  # from its next power-on
    assert vms.cmc(3, "off").stdout.strip() == "ok"
    assert vms.cmc(3, "on").stdout.strip() == "ok"
    assert vms.disk(3).stat().st_size == 8 << 20
    started = time.monotonic()
    process = vms.popen(str(BIN / "imaging-load"), "--json", "-a", "-t", TIMEOUT)
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
    assert summary["fit03"]["detail"].startswith("disk too small: fit03 has 8.0 MiB, the image needs 16.0 MiB")
    assert summary["fit02"]["detail"] != summary["fit03"]["detail"]
    assert event["retry"].endswith(" 2-3")
    assert time.monotonic() - started < int(TIMEOUT) + 2
    assert no_links(vms)
    off = vms.status()["fit02"]
    assert off.power == "off" and off.stage == "off"
    assert "fit02" not in [p.name for p in tracked(vms.dir / "run") if p.alive()], "fit02's qemu is gone"
    print(f"fit02: {summary['fit02']['detail']}")
    vms.fault(3, "clear")
