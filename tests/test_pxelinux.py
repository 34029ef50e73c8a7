"""Next-boot links in a pxelinux config folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imaging.errors import UsageError
from imaging.inventory import Inventory
from imaging.pxelinux import NextBoot, config_name
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
    boot = NextBoot(folder, {1: "imaging-os", 2: "imaging-os", 3: "other-os"})
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
    boot = NextBoot(folder, {1: "imaging-os"})
    boot.check(nodes[:1])
    boot.boot_imaging_os(nodes[0])
    assert os.readlink(folder / "01-02-00-00-03-00-01") == "imaging-os"
    assert not any(p.name.startswith(".") for p in folder.iterdir())


def test_a_link_someone_made_is_put_back_on_interruption(folder: Path, nodes) -> None:
    """A node an admin set to boot another OS: an interrupted run puts that back;
    a finished one leaves the node on its (new) disk; a stale imaging-OS link is not kept."""
    first, second, third = (folder / config_name(n.control.mac) for n in nodes)
    first.symlink_to("other-os")
    second.symlink_to("other-os")
    third.symlink_to("imaging-os")  # left by a crash
    boot = NextBoot(folder, {1: "imaging-os", 2: "imaging-os", 3: "imaging-os"})
    for node in nodes:
        boot.boot_imaging_os(node)
    boot.boot_imaging_os(nodes[0])  # again (a retried boot): still restores the admin's link
    boot.boot_disk(nodes[1])  # this one got through: its next boot is its disk
    assert sorted(p.name for p in boot.restore_all()) == [first.name, third.name]
    assert os.readlink(first) == "other-os"
    assert not second.is_symlink() and not third.is_symlink()
    assert not any(p.name.startswith(".") for p in folder.iterdir())


def test_checks_before_touching(folder: Path, nodes, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"fit02: imaging-OS pxelinux file .*/missing does not exist"):
        NextBoot(folder, {1: "imaging-os", 2: "missing"}).check(nodes[:2])
    with pytest.raises(UsageError, match=r"pxelinux folder .* does not exist"):
        NextBoot(tmp_path / "nope", {1: "imaging-os"}).check(nodes[:1])
    (folder / "01-02-00-00-03-00-01").write_text("an admin's own config\n")
    with pytest.raises(UsageError, match="is a regular file"):
        NextBoot(folder, {1: "imaging-os"}).check(nodes[:1])
    assert (folder / "01-02-00-00-03-00-01").read_text() == "an admin's own config\n"
