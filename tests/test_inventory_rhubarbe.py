"""Coming from rhubarbe: its inventories read as they are, rhubarbe 9.5's YAML (``inventory-nodes.yaml``,
``nodes:`` then the records) and 9.0's JSON (``inventory-nodes.json``, the list of records), chosen by
the file's name or its content; the names of a 400-node site (``fit001``) kept, and ``fit1``, ``fit01``,
``fit001`` all naming node 1; ``imaging-main inventory`` printing them.  The files are written here in
those formats, as rhubarbe's own templates and R2lab's files write them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from imaging.errors import InventoryError
from imaging.inventory import Inventory
from tests.conftest import Result

Cli = Callable[..., Result]
SITE = 400  # a site of fit001…fit400


def mac(role: int, number: int) -> str:
    return f"02:00:{role:02x}:00:{number >> 8:02x}:{number & 0xFF:02x}"


def rhubarbe_yaml(count: int, quote_macs: bool = True) -> str:
    """rhubarbe 9.5's inventory-nodes.yaml: a comment, then ``nodes:`` and one block per node, the MACs
    quoted as its template quotes them."""
    q = '"' if quote_macs else ""
    lines = ["# rhubarbe inventory of the nodes", "---", "nodes:"]
    for n in range(1, count + 1):
        lines += ["  - cmc:", f"      hostname: reboot{n:03d}", f"      ip: 10.1.{n >> 8}.{n & 0xFF}",
                  f"      mac: {q}{mac(1, n)}{q}"]
        lines += ["    control:", f"      hostname: fit{n:03d}", f"      ip: 10.3.{n >> 8}.{n & 0xFF}",
                  f"      mac: {q}{mac(3, n)}{q}"]
        lines += ["    data:", f"      hostname: data{n:03d}", f"      ip: 10.2.{n >> 8}.{n & 0xFF}",
                  f"      mac: {q}{mac(2, n)}{q}"]
    return "\n".join(lines) + "\n"


def rhubarbe_json(count: int) -> str:
    """rhubarbe 9.0's inventory-nodes.json: the same records, a JSON list."""
    records = [{role: {"hostname": f"{prefix}{n:03d}", "ip": f"10.{index}.{n >> 8}.{n & 0xFF}",
                       "mac": mac(index, n)}
                for role, prefix, index in (("cmc", "reboot", 1), ("control", "fit", 3), ("data", "data", 2))}
               for n in range(1, count + 1)]
    return json.dumps(records, indent=4)


@pytest.mark.parametrize("name", ["inventory-nodes.yaml", "inventory-nodes.yml", "inventory-nodes"])
def test_rhubarbe_95_yaml_is_read_as_it_is(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(rhubarbe_yaml(SITE))
    inventory = Inventory.load(path)
    assert len(inventory) == SITE and inventory.numbers() == frozenset(range(1, SITE + 1))
    node = inventory.by_number(258)
    assert (node.hostname, node.cmc.hostname, node.control.ip, node.control.mac) == \
        ("fit258", "reboot258", "10.3.1.2", "02:00:03:00:01:02")
    assert node.data is not None and node.data.hostname == "data258"


@pytest.mark.parametrize("name", ["inventory-nodes.json", "inventory-nodes"])
def test_rhubarbe_90_json_is_read_as_it_is_and_gives_the_same_nodes(tmp_path: Path, name: str) -> None:
    (tmp_path / "yaml").mkdir()
    (tmp_path / "yaml" / "inventory-nodes.yaml").write_text(rhubarbe_yaml(SITE))
    (tmp_path / name).write_text(rhubarbe_json(SITE))
    assert list(Inventory.load(tmp_path / name)) == list(Inventory.load(tmp_path / "yaml" / "inventory-nodes.yaml"))


def test_the_name_chooses_before_the_content(tmp_path: Path) -> None:
    path = tmp_path / "inventory-nodes.json"
    path.write_text(rhubarbe_yaml(2))
    with pytest.raises(InventoryError, match=f"inventory {path} is not valid JSON"):
        Inventory.load(path)


@pytest.mark.parametrize(("text", "words"), [
    ("nodes:\n  - cmc: [\n", r"is not valid YAML: .* at line 3"),
    ("nodes:\n\t- cmc: {}\n", r"is not valid YAML: found character '\\t' .* at line 2"),
    ("hosts: []\n", r"must be a list of nodes \(JSON\), or a mapping whose 'nodes' is that list \(YAML\)"),
    ("nodes: 3\n", r"must be a list of nodes"),
    ("- !!python/object:os.system {}\n", r"is not valid YAML: could not determine a constructor"),
    ("nodes: " + "[" * 100_000 + "]" * 100_000 + "\n", "nests too deeply to be an inventory"),
    # YAML 1.1 reads an unquoted 10:20:30:40:50:59 as a number (base 60): the fix is to quote it, the MAC given back
    (rhubarbe_yaml(1, quote_macs=False).replace(mac(3, 1), "10:20:30:40:50:59"),
     r"entry 0: 'control' mac is a number, not a string \(YAML reads an unquoted 10:20:30:40:50:59 as a number"
     r" in base 60\): quote it, \"10:20:30:40:50:59\""),
    (rhubarbe_yaml(1).replace('ip: 10.3.0.1', "ip: 2026-12-07"),
     r"entry 0: 'control' ip is a date, not a string: write it \"192.168.3.7\""),
])
def test_a_broken_yaml_inventory_is_one_line_naming_the_fix(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "inventory-nodes.yaml"
    path.write_text(text)
    with pytest.raises(InventoryError, match=words) as caught:
        Inventory.load(path)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(f"inventory {path}")


def test_unquoted_macs_that_yaml_reads_as_text_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "inventory-nodes.yaml"
    path.write_text(rhubarbe_yaml(3, quote_macs=False))
    assert Inventory.load(path).by_number(2).control.mac == mac(3, 2)


def site_config(sandbox: Path, text: str, name: str = "inventory-nodes.yaml") -> str:
    (sandbox / name).write_text(text)
    config = sandbox / "site.conf"
    config.write_text(f"[testbed]\ninventory = {sandbox / name}\nall_scope = 1-{SITE}\n")
    return str(config)


@pytest.mark.parametrize("spec", ["1", "fit1", "fit01", "fit001", "FIT001", "reboot1", "reboot001", "fit[001]"])
def test_every_spelling_of_node_1_names_fit001(cli: Cli, sandbox: Path, spec: str) -> None:
    config = site_config(sandbox, rhubarbe_yaml(SITE))
    result = cli("imaging-main", "nodes", "--config", config, spec)
    assert (result.code, result.out, result.err) == (0, "fit001\n", "")


def test_names_follow_the_inventory(cli: Cli, sandbox: Path) -> None:
    config = site_config(sandbox, rhubarbe_yaml(SITE))
    assert cli("imaging-main", "nodes", "--config", config, "fit98-102", "~100").out == \
        "fit098 fit099 fit101 fit102\n"
    assert cli("imaging-main", "nodes", "--config", config, "--brackets", "1-3,399").out == "fit[001-003,399]\n"
    assert cli("imaging-main", "nodes", "--config", config, "-c", "-a").out == f"{SITE}\n"


def test_inventory_command_prints_every_node(cli: Cli, sandbox: Path) -> None:
    config = site_config(sandbox, rhubarbe_yaml(SITE))
    result = cli("imaging-main", "inventory", "--config", config)
    assert result.code == 0 and result.err == ""
    lines = [line for line in result.out.splitlines() if line.strip()]
    assert lines[0].split() == ["hostname", "number", "control", "ip", "control", "mac", "cmc", "cmc", "ip",
                                "data", "ip"]
    rows = [line.split() for line in lines[2:-1]]
    assert len(rows) == SITE
    assert rows[257] == ["fit258", "258", "10.3.1.2", "02:00:03:00:01:02", "reboot258", "10.1.1.2", "10.2.1.2"]
    assert lines[-1] == f"{SITE} node(s) from {sandbox / 'inventory-nodes.yaml'}"


def test_inventory_command_json_and_a_selection(cli: Cli, sandbox: Path) -> None:
    config = site_config(sandbox, rhubarbe_json(SITE), "inventory-nodes.json")
    result = cli("imaging-main", "inventory", "--config", config, "--json", "fit1", "fit010-11")
    assert result.code == 0 and result.err == ""
    records = [json.loads(line) for line in result.out.splitlines()]
    assert [(r["hostname"], r["number"]) for r in records] == [("fit001", 1), ("fit010", 10), ("fit011", 11)]
    assert records[0]["control"] == {"hostname": "fit001", "ip": "10.3.0.1", "mac": mac(3, 1)}
    assert records[0]["cmc"]["hostname"] == "reboot001" and records[0]["data"]["ip"] == "10.2.0.1"


def test_inventory_command_with_a_broken_inventory_is_one_line(cli: Cli, sandbox: Path) -> None:
    config = site_config(sandbox, "nodes:\n  - [\n")
    result = cli("imaging-main", "inventory", "--config", config)
    assert result.code == 2 and result.out == "" and "Traceback" not in result.err
    assert result.err.startswith(f"imaging-inventory: error: inventory {sandbox / 'inventory-nodes.yaml'}"
                                 " is not valid YAML") and result.err.count("\n") == 1
