"""Next-boot links in a boot loader's config folder: pxelinux (BIOS), GRUB (UEFI), or both on one site."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imaging.boot.grub import Grub
from imaging.boot.nextboot import NextBoot, Place
from imaging.boot.pxelinux import Pxelinux, config_name
from imaging.errors import UsageError
from imaging.inventory import Inventory
from tests.helpers import SAMPLE_INVENTORY


@pytest.fixture
def nodes():
    inventory = Inventory.load(SAMPLE_INVENTORY)
    return [inventory.by_number(n) for n in (1, 2, 3)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "imaging-os").write_text("DEFAULT imaging\n")
    (tmp_path / "other-os").write_text("DEFAULT other\n")
    return tmp_path


def test_config_name() -> None:
    assert config_name("02:00:00:03:00:0A") == "01-02-00-00-03-00-0a"


def test_links_are_relative_and_restored(folder: Path, nodes) -> None:
    boot = NextBoot.single(folder, {1: "imaging-os", 2: "imaging-os", 3: "other-os"})
    boot.check(nodes)
    for node in nodes:
        boot.boot_imaging_os(node)
    link = folder / "01-02-00-00-03-00-01"
    assert os.readlink(link) == "imaging-os" and link.read_text() == "DEFAULT imaging\n"
    assert os.readlink(folder / "01-02-00-00-03-00-03") == "other-os"
    boot.boot_disk(nodes[0])
    assert not link.exists() and not link.is_symlink()
    removed = boot.restore_all()
    assert sorted(p.name for p in removed) == ["01-02-00-00-03-00-02", "01-02-00-00-03-00-03"]
    assert sorted(p.name for p in folder.iterdir()) == ["imaging-os", "other-os"]
    assert boot.restore_all() == []


def test_stale_link_is_replaced(folder: Path, nodes) -> None:
    (folder / "01-02-00-00-03-00-01").symlink_to("other-os")
    boot = NextBoot.single(folder, {1: "imaging-os"})
    boot.check(nodes[:1])
    boot.boot_imaging_os(nodes[0])
    assert os.readlink(folder / "01-02-00-00-03-00-01") == "imaging-os"
    assert not any(p.name.startswith(".") for p in folder.iterdir())


def test_a_link_someone_made_is_put_back_on_interruption(folder: Path, nodes) -> None:
    """A node an admin set to boot another OS, or left in the imaging OS by ``imaging-rescue``: an
    interrupted run puts that back; a finished one leaves the node on its (new) disk."""
    first, second, third = (folder / config_name(n.control.mac) for n in nodes)
    first.symlink_to("other-os")
    second.symlink_to("other-os")
    third.symlink_to("imaging-os")  # left in rescue
    boot = NextBoot.single(folder, {1: "imaging-os", 2: "imaging-os", 3: "imaging-os"})
    for node in nodes:
        boot.boot_imaging_os(node)
    boot.boot_imaging_os(nodes[0])  # again (a retried boot): still restores the admin's link
    boot.boot_disk(nodes[1])  # this one got through: its next boot is its disk
    assert sorted(p.name for p in boot.restore_all()) == [first.name, third.name]
    assert os.readlink(first) == "other-os" and os.readlink(third) == "imaging-os"
    assert not second.is_symlink()
    assert not any(p.name.startswith(".") for p in folder.iterdir())


def test_checks_before_touching(folder: Path, nodes, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"fit02: imaging-OS pxelinux file .*/missing does not exist"):
        NextBoot.single(folder, {1: "imaging-os", 2: "missing"}).check(nodes[:2])
    with pytest.raises(UsageError, match=r"pxelinux folder .* does not exist"):
        NextBoot.single(tmp_path / "nope", {1: "imaging-os"}).check(nodes[:1])
    (folder / "01-02-00-00-03-00-01").write_text("an admin's own config\n")
    with pytest.raises(UsageError, match="is a regular file"):
        NextBoot.single(folder, {1: "imaging-os"}).check(nodes[:1])
    assert (folder / "01-02-00-00-03-00-01").read_text() == "an admin's own config\n"


def test_grub_asks_for_its_own_per_mac_file() -> None:
    assert Grub().link_name("02:00:00:03:00:0A") == "grub.cfg-01-02-00-00-03-00-0a"
    assert Grub() == Grub() and Grub() != Pxelinux()


def test_a_site_of_bios_and_uefi_nodes(folder: Path, nodes, tmp_path: Path) -> None:
    """Each node's link goes where its own loader looks, and is undone there."""
    grub = tmp_path / "grub"
    grub.mkdir()
    (grub / "imaging-os.cfg").write_text("menuentry imaging {\n}\n")
    boot = NextBoot({1: Place(Pxelinux(), folder, "imaging-os"), 2: Place(Grub(), grub, "imaging-os.cfg")})
    boot.check(nodes[:2])
    for node in nodes[:2]:
        boot.boot_imaging_os(node)
    assert os.readlink(folder / "01-02-00-00-03-00-01") == "imaging-os"
    assert os.readlink(grub / "grub.cfg-01-02-00-00-03-00-02") == "imaging-os.cfg"
    assert not (folder / "grub.cfg-01-02-00-00-03-00-02").exists() and not (grub / "01-02-00-00-03-00-01").exists()
    boot.boot_disk(nodes[1])
    assert sorted(p.name for p in grub.iterdir()) == ["imaging-os.cfg"]
    assert [p.name for p in boot.restore_all()] == ["01-02-00-00-03-00-01"]
    assert sorted(p.name for p in folder.iterdir()) == ["grub", "imaging-os", "other-os"]  # grub/ is in it


def test_grub_checks_name_its_own_keys(folder: Path, nodes, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"fit01: imaging-OS grub file .*/absent.cfg does not exist;"
                                         r" set \[grub\] imaging_config \(or imaging_config.fit01\)"):
        NextBoot.single(folder, {1: "absent.cfg"}, Grub()).check(nodes[:1])
    with pytest.raises(UsageError, match=r"grub folder .* does not exist; set \[grub\] config_dir"):
        NextBoot.single(tmp_path / "nope", {1: "imaging-os"}, Grub()).check(nodes[:1])


def test_the_config_chooses_each_nodes_loader(tmp_path: Path, nodes) -> None:
    from imaging.cli.settings import next_boot
    from imaging.config import Config

    conf = tmp_path / "site.conf"
    conf.write_text(f"[nodes]\nboot.fit02 = grub\n[pxelinux]\nconfig_dir = {tmp_path}/pxe\n"
                    f"[grub]\nconfig_dir = {tmp_path}/grub\nimaging_config.fit02 = other.cfg\n")
    places = next_boot(Config.load([conf]), nodes).places
    assert places[1] == Place(Pxelinux(), tmp_path / "pxe", "pxefrisbee")
    assert places[2] == Place(Grub(), tmp_path / "grub", "other.cfg")
    assert places[3] == Place(Pxelinux(), tmp_path / "pxe", "pxefrisbee")
