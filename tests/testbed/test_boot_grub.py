"""The grub boot backend on the emulated testbed (``imaging-testbed up --firmware uefi``).

The nodes' firmware reads GRUB's configs from the TFTP tree as GRUB's network image does:
``grub/grub.cfg-01-<mac>`` first, else ``grub/grub.cfg`` (which boots the disk); the product, configured
with ``[nodes] boot = grub``, flips the per-MAC GRUB files instead of pxelinux's.  A load and a save go
through, an interrupted load restores every GRUB link, and a node an admin pointed at another GRUB config
gets that link back.  (Real GRUB under UEFI firmware is the VM tier's to run.)
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from imaging_testbed import pxe
from tests.testbed.conftest import Testbed, started_testbed
from tests.testbed.product import BIN, product

NODES = 3


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """Three nodes booting through GRUB's configs."""
    with started_testbed(tmp_path_factory.mktemp("grubbed"), NODES, firmware="uefi") as testbed:
        assert "boot = grub" in testbed.config.read_text()
        for number in range(1, NODES + 1):
            testbed.wait_stage(number, "ssh")
        yield testbed


def grub_links(bed: Testbed) -> list[str]:
    """The per-MAC GRUB files in the TFTP tree."""
    return sorted(p.name for p in pxe.grub_dir(bed.layout).glob("grub.cfg-01-*"))


def test_load_boots_through_grubs_per_mac_file(bed: Testbed) -> None:
    load = product(bed, "load", "-a", "-t", "30", timeout=60)
    assert load.code == 0 and f"{NODES} ok, 0 failed" in load.out, load.out + load.err
    assert grub_links(bed) == []
    assert product(bed, "wait", "-a", "-t", "15").code == 0
    console = bed.layout.console_log(bed.node(2)).read_text()
    mac = bed.node(2).pxe_name
    assert f"grub config: grub/grub.cfg-{mac}" in console and "boot choice: kernel imaging-os/vmlinuz" in console
    assert console.rindex("grub config: grub/grub.cfg\n") > console.rindex(f"grub/grub.cfg-{mac}")
    assert not list(bed.layout.pxe_dir.glob("01-*")), "pxelinux's folder is not touched"


def test_save_through_grub(bed: Testbed) -> None:
    save = product(bed, "save", "--raw", "-o", "grubsave", "--repo", "1", "-t", "60", timeout=90)
    assert save.code == 0, save.out + save.err
    assert len(list((bed.dir / "images").glob("saving__fit01__*__grubsave.img.zst"))) == 1
    assert grub_links(bed) == []


def test_interruption_restores_grub_links(bed: Testbed) -> None:
    mine = pxe.grub_dir(bed.layout) / f"grub.cfg-{bed.node(3).pxe_name}"
    (pxe.grub_dir(bed.layout) / "rescue.cfg").write_text("menuentry rescue {\n  linux /rescue/vmlinuz\n}\n")
    mine.symlink_to("rescue.cfg")  # an admin set fit03 to boot something else
    process = bed.popen(str(BIN / "imaging-load"), "--json", "-t", "60", "2-3")
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("{") and json.loads(line).get("phase") == "resetting":
            break
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=15)
    assert process.returncode == 130
    assert grub_links(bed) == [mine.name] and os.readlink(mine) == "rescue.cfg"
    mine.unlink()
    for number in (2, 3):
        bed.boot(number, imaging_os=False)
