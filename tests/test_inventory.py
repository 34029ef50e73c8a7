"""The JSON inventory and the site-description generator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imaging.errors import InventoryError
from imaging.inventory import Inventory, parse_entries

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "inventory" / "sample-inventory.json"
CONFIGURE = ROOT / "inventory" / "configure.py"


def entry(number: int, data: bool = True) -> dict:
    result = {
        "cmc": {"hostname": f"reboot{number:02d}", "ip": f"127.0.1.{number}", "mac": f"02:00:00:01:00:{number:02x}"},
        "control": {"hostname": f"fit{number:02d}", "ip": f"127.0.3.{number}", "mac": f"02:00:00:03:00:{number:02X}"},
    }
    if data:
        result["data"] = {"hostname": f"data{number:02d}", "ip": f"127.0.2.{number}",
                          "mac": f"02-00-00-02-00-{number:02x}"}
    return result


def test_sample_inventory_loads() -> None:
    inventory = Inventory.load(SAMPLE)
    assert len(inventory) == 37
    assert inventory.numbers() == frozenset(range(1, 38))
    node = inventory.by_number(7)
    assert node.hostname == "fit07" and node.cmc.hostname == "reboot07"
    assert node.control.ip.startswith("127.")
    assert inventory.by_hostname("reboot07") is node
    assert inventory.by_hostname("FIT07.example.org") is node
    assert inventory.by_mac("02-00-00-03-00-07") is node
    assert inventory.by_mac("nonsense") is None
    assert [n.number for n in inventory][:3] == [1, 2, 3]


def test_macs_normalized_and_data_optional() -> None:
    nodes = parse_entries([entry(1), entry(2, data=False)], "x")
    assert nodes[0].control.mac == "02:00:00:03:00:01"
    assert nodes[0].data is not None and nodes[0].data.mac == "02:00:00:02:00:01"
    assert nodes[1].data is None
    assert list(nodes[1].interfaces()) == [nodes[1].cmc, nodes[1].control]


def broken(change) -> list[dict]:
    entries = [entry(1), entry(2), entry(3)]
    change(entries)
    return entries


@pytest.mark.parametrize(("change", "words"), [
    (lambda e: e[1]["control"].update(mac="zz:00:00:00:00:01"), "entry 1: 'control' mac 'zz:00"),
    (lambda e: e[2]["cmc"].update(ip="300.1.1.1"), "entry 2: 'cmc' ip '300.1.1.1'"),
    (lambda e: e[2]["control"].update(hostname="fit01"), "entry 2: node number 1 appears twice"),
    (lambda e: e[1]["data"].update(mac=e[0]["data"]["mac"]), "entry 1: MAC .* appears twice"),
    (lambda e: e[1]["cmc"].update(hostname="reboot01"), "entry 1: hostname reboot01 appears twice"),
    (lambda e: e[0].pop("cmc"), "entry 0: 'cmc' must be an object"),
    (lambda e: e[0]["control"].pop("ip"), "entry 0: 'control' lacks 'ip'"),
    (lambda e: e[0]["control"].update(hostname="server"), "entry 0: control hostname 'server'"),
    (lambda e: e.append(3), "entry 3: must be an object"),
])
def test_validation_names_the_entry(tmp_path: Path, change, words: str) -> None:
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(broken(change)))
    with pytest.raises(InventoryError, match=words):
        Inventory.load(path)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="does not exist"):
        Inventory.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(InventoryError, match="not valid JSON"):
        Inventory.load(tmp_path / "bad.json")
    (tmp_path / "dict.json").write_text("{}")
    with pytest.raises(InventoryError, match="must be a JSON list"):
        Inventory.load(tmp_path / "dict.json")


def configure(tmp_path: Path, site: str, *options: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "site.txt").write_text(site)
    return subprocess.run([sys.executable, str(CONFIGURE), *options, str(tmp_path / "site.txt"),
                           "-o", str(tmp_path / "out.json")], capture_output=True, text=True)


def test_configure_builds_r2lab_format_with_replacement_slot(tmp_path: Path) -> None:
    site = ("# slot control data cmc\n"
            "1 00:03:1D:0E:03:19 00:03:1d:0e:03:18 02:00:00:00:00:01\n"
            "15 00:03:1d:0e:63:2c - 02:00:00:00:00:0f 41   # node 41 sits in slot 15\n")
    done = configure(tmp_path, site, "--control-ip", "10.0.3.%d")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out.json").read_text())
    assert result[0]["control"] == {"hostname": "fit01", "ip": "10.0.3.1", "mac": "00:03:1d:0e:03:19"}
    assert result[0]["cmc"] == {"hostname": "reboot01", "ip": "192.168.1.1", "mac": "02:00:00:00:00:01"}
    assert result[1]["control"]["hostname"] == "fit41" and result[1]["cmc"]["ip"] == "192.168.1.41"
    assert "data" not in result[1]
    inventory = Inventory.load(tmp_path / "out.json")
    assert inventory.numbers() == frozenset({1, 41})


@pytest.mark.parametrize(("site", "options", "words"), [
    ("1 00:03:1d:0e:03:19 02:00:00:00:00:01\n", (), "site.txt:1: want"),
    ("1 nomac 00:03:1d:0e:03:18 02:00:00:00:00:01\n", (), "malformed MAC"),
    ("1 00:03:1d:0e:03:19 - 02:00:00:00:00:01\n2 00:03:1d:0e:03:19 - 02:00:00:00:00:02\n", (),
     "appears twice"),
    ("1 00:03:1d:0e:03:19 - 02:00:00:00:00:01\n", ("--control-ip", "10.0.0.1"), "must hold one %d"),
])
def test_configure_errors(tmp_path: Path, site: str, options: tuple[str, ...], words: str) -> None:
    done = configure(tmp_path, site, *options)
    assert done.returncode == 2
    assert words in done.stderr and done.stderr.count("\n") == 1


def test_committed_sample_matches_its_site_description(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(CONFIGURE), "--control-ip", "127.0.3.%d", "--cmc-ip",
                           "127.0.1.%d", "--data-ip", "127.0.2.%d", str(ROOT / "inventory" / "sample-site.txt")],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == json.loads(SAMPLE.read_text())
    addresses = [i["ip"] for e in json.loads(SAMPLE.read_text()) for i in e.values()]
    assert all(a.startswith("127.") for a in addresses)  # the sample never points at a real network

