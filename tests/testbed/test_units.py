"""Unit tests of the testbed's pieces that need no root: layout, faults,
fault rules, test images, product files."""

from __future__ import annotations

import asyncio
import configparser
import ipaddress
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from imaging.errors import UsageError
from imaging_testbed import files, images, network
from imaging_testbed.faults import Faults, parse_assignment
from imaging_testbed.layout import Layout

needs_mtools = pytest.mark.skipif(shutil.which("mkfs.vfat") is None or shutil.which("mtype") is None,
                                  reason="needs dosfstools and mtools")


def test_layout_names_and_addresses_are_unique_and_private() -> None:
    layout = Layout(Path("/x"), 3, 400)
    nodes = layout.nodes()
    for attr in ("name", "control_ip", "control_mac", "cmc_ip", "netns", "veth"):
        assert len({getattr(n, attr) for n in nodes}) == 400, attr
    for node in nodes:
        assert ipaddress.IPv4Address(node.control_ip) in layout.control_network
        assert ipaddress.IPv4Address(node.cmc_ip) in layout.cmc_network
        assert ipaddress.IPv4Address(node.control_ip).is_private
        first = int(node.control_mac.split(":")[0], 16)
        assert node.control_mac == node.control_mac.lower() and first & 2 and not first & 1
        assert len(node.veth) <= 15 and len(node.netns) < 32
    assert layout.node(1).name == "fit001" and layout.node(1).pxe_name == "01-02-69-03-01-00-01"
    assert Layout(Path("/x"), 0, 37).node(7).name == "fit07"
    assert layout.node_by_name("reboot12") == layout.node(12)
    assert Layout(Path("/x"), 4, 2).control_network != layout.control_network


def test_fault_specs() -> None:
    faults = Faults()
    for spec in ("cmc=blackhole", "reset=ignore", "boot=slow:2.5", "telnet=hang", "receiver=die:1000",
                 "disk=small:4", "ssh=never", "loss=10%"):
        faults = faults.apply(spec)
    assert faults.describe() == ["cmc=blackhole", "reset=ignore", "boot=slow:2.5", "telnet=hang",
                                 "receiver=die:1000", "disk=small:4", "ssh=never", "loss=10%"]
    assert faults.apply("cmc=ok").cmc == "ok"
    slow = Faults().apply("cmc=slow:50")
    assert slow.cmc_delay_ms == 50 and slow.describe() == ["cmc=slow:50"]
    assert slow.apply("cmc=ok").cmc_delay_ms == 0
    assert faults.apply("clear") == Faults()
    assert Faults().apply("boot=never").boot_never
    for bad in ("cmc=maybe", "cmc=slow:-1", "loss=200%", "disk=small:0", "boot=slow:x", "nothing"):
        with pytest.raises(UsageError):
            Faults().apply(bad)
    assert parse_assignment("fit03:cmc=garbage") == ("fit03", "cmc=garbage")
    with pytest.raises(UsageError):
        parse_assignment("cmc=garbage")


def test_fault_rules_name_the_faulty_nodes_only() -> None:
    layout = Layout(Path("/x"), 0, 3)
    rules = network.fault_rules(layout, {"fit02": Faults(cmc="blackhole", loss_percent=20)})
    assert "blackholed { 10.200.0.2 }" in rules
    assert "iifname v02 numgen random mod 1000 < 200 drop" in rules
    assert "oifname v01 drop" in network.fault_rules(layout, {"fit01": Faults(loss_percent=100)})
    assert "v01" not in rules and "v03" not in rules
    assert "add element" not in network.fault_rules(layout, {})


def test_product_files(tmp_path: Path) -> None:
    layout = Layout(tmp_path, 0, 5)
    files.write_product_files(layout, "/dev/sda")
    config = configparser.ConfigParser(interpolation=None)
    config.read(layout.config_path)
    assert config["testbed"]["all_scope"] == "1-5"
    assert config["pxelinux"]["config_dir"] == str(tmp_path / "tftp" / "pxelinux.cfg")
    assert config["transport"]["server_ip"] == layout.server_ip
    inventory = json.loads(layout.inventory_path.read_text())
    assert len(inventory) == 5
    assert inventory[2]["control"] == {"hostname": "fit03", "ip": "10.150.0.3", "mac": "02:69:00:01:00:03"}
    assert inventory[2]["cmc"]["hostname"] == "reboot03"


@needs_mtools
def test_make_image_raw_and_compressed(tmp_path: Path) -> None:
    raw = asyncio.run(images.make_image("foo", tmp_path, 2))
    assert raw.path == tmp_path / "foo.img" and raw.path.stat().st_size == 2 << 20
    assert raw.sha256 == raw.raw_sha256 == images.sha256_file(raw.path)
    assert raw.identity.startswith("imaging-test-image foo ")
    assert asyncio.run(images.read_identity(raw.path)) == raw.identity
    packed = asyncio.run(images.make_image("bar", tmp_path, 2, compressed=True, random_fill=True))
    assert packed.path.name == "bar.img.zst"
    unpacked = subprocess.run(["zstd", "-dc", str(packed.path)], capture_output=True, check=True).stdout
    assert len(unpacked) == 2 << 20 and len(set(unpacked[-4096:])) > 100  # random, not zeros
    import hashlib
    assert hashlib.sha256(unpacked).hexdigest() == packed.raw_sha256


@needs_mtools
def test_make_image_cache(tmp_path: Path) -> None:
    first = asyncio.run(images.make_image("c", tmp_path / "a", 1, cache_dir=tmp_path / "cache"))
    second = asyncio.run(images.make_image("c", tmp_path / "b", 1, cache_dir=tmp_path / "cache"))
    assert first.identity == second.identity and first.sha256 == second.sha256
    assert second.path == tmp_path / "b" / "c.img" and second.path.exists()
    other = asyncio.run(images.make_image("c", tmp_path / "b", 2, cache_dir=tmp_path / "cache"))
    assert other.identity != first.identity


@needs_mtools
def test_empty_disk_has_no_identity(tmp_path: Path) -> None:
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1 << 20))
    assert asyncio.run(images.read_identity(blank)) is None
