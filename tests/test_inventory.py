"""The inventory: its format, the node-number rule and every check it makes (rhubarbe's YAML:
test_inventory_rhubarbe)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imaging.errors import InventoryError
from imaging.inventory import Inventory, parse_entries

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "inventory" / "sample-inventory.json"


Entry = dict[str, Any]


def entry(number: int, data: bool = True) -> Entry:
    result: Entry = {
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


def broken(change: Callable[[list[Entry]], object]) -> list[Entry]:
    entries = [entry(1), entry(2), entry(3)]
    change(entries)
    return entries


@pytest.mark.parametrize(("change", "words"), [
    (lambda e: e[1]["control"].update(mac="zz:00:00:00:00:01"), "entry 1: 'control' mac 'zz:00"),
    (lambda e: e[2]["cmc"].update(ip="300.1.1.1"), "entry 2: 'cmc' ip '300.1.1.1'"),
    (lambda e: e[2]["control"].update(hostname="fit01"),
     r"entry 2: node number 1 \(fit01\) is also entry 0's \(fit01\); each node needs its own number"),
    (lambda e: e[1]["data"].update(mac=e[0]["data"]["mac"]),
     "entry 1: 'data' mac 02:00:00:02:00:01 is also entry 0's 'data' mac; each interface needs its own MAC"),
    (lambda e: e[1]["cmc"].update(hostname="REBOOT01"),
     "entry 1: 'cmc' hostname reboot01 is also entry 0's 'cmc' hostname; each interface needs its own hostname"),
    (lambda e: e[0].pop("cmc"), "entry 0: 'cmc' must be an object"),
    (lambda e: e[0]["control"].pop("ip"), "entry 0: 'control' lacks 'ip'"),
    (lambda e: e[0]["control"].update(hostname="server"), "entry 0: control hostname 'server'"),
    (lambda e: e.append(3), "entry 3: must be an object"),
])
def test_validation_names_the_entry(tmp_path: Path, change: Callable[[list[Entry]], object], words: str) -> None:
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
    with pytest.raises(InventoryError, match="must be a list of nodes"):
        Inventory.load(tmp_path / "dict.json")



# --- item 1: inputs that used to end in a traceback ---------------------------

def one_line_error(path: Path) -> str:
    """Load ``path``, which must fail; the message, checked to be one short line."""
    with pytest.raises(InventoryError) as caught:
        Inventory.load(path)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400
    return message


@pytest.mark.parametrize(("content", "words"), [
    (b'[{"cmc": "\xff\xfe"}]', r"is not UTF-8 text \(byte 10\): it must be JSON or YAML; rebuild it"),
    (b"[" * 100_000 + b"]" * 100_000, "nests too deeply to be an inventory: it must be a list of node objects"),
    (b'[{"cmc": ' + b"1" * 5000 + b"}]", "holds a number too long to read; an inventory holds none"),
])
def test_item1_unreadable_content_is_one_line(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "inv.json"
    path.write_bytes(content)
    message = one_line_error(path)
    assert message.startswith(f"inventory {path} ")
    assert re.search(words, message)


def test_item1_hostname_of_5000_digits(tmp_path: Path) -> None:
    entries = [entry(1), entry(2)]
    entries[1]["control"]["hostname"] = "fit" + "1" * 5000
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(entries))
    message = one_line_error(path)
    assert "entry 1: 'control' hostname 'fit11111111111111111'… (5003 characters) is not a hostname" in message
    entries[1]["control"]["hostname"] = "fit" + "1" * 250  # a hostname still, but not a node number
    path.write_text(json.dumps(entries))
    assert "entry 1: control hostname 'fit11111111111111111'… (253 characters) carries no node number" \
        in one_line_error(path)


# --- item 4: node numbers, addresses ------------------------------------------

@pytest.mark.parametrize(("hostname", "number"), [
    ("fit07", 7), ("fit7", 7), ("FIT07", 7), ("fit01.r2lab.inria.fr", 1), ("node042.example.org", 42),
    ("fit99999", 99_999), ("7", 7),
])
def test_item4_number_is_the_short_names_digits_after_its_letters(hostname: str, number: int) -> None:
    first = entry(1)
    first["control"]["hostname"] = hostname
    assert [n.number for n in parse_entries([first], "x")] == [number]


@pytest.mark.parametrize("hostname", [
    "fit1a2", "fit-7", "7fit", "fit0", "fit100000", "fit", "fit.7", "r2lab.fit07", "fit07a.example.org",
])
def test_item4_hostname_that_is_not_letters_then_number_is_refused(hostname: str) -> None:
    first = entry(1)
    first["control"]["hostname"] = hostname
    with pytest.raises(InventoryError, match=rf"entry 0: control hostname {re.escape(repr(hostname))}"
                                             r" carries no node number: name it letters then a number"
                                             r" from 1 to 99999 \(fit07, or fit07.example.org\)"):
        parse_entries([first], "x")


def test_item4_domain_hostnames_keep_their_numbers_and_names() -> None:
    entries = [entry(1), entry(2)]
    for number, one in zip((1, 2), entries, strict=True):
        one["control"]["hostname"] = f"fit{number:02d}.r2lab.inria.fr"
    inventory = Inventory(parse_entries(entries, "x"))
    assert inventory.numbers() == frozenset({1, 2})
    assert inventory.by_number(2).hostname == "fit02.r2lab.inria.fr"
    assert inventory.by_hostname("FIT02.r2lab.inria.fr") is inventory.by_number(2)


@pytest.mark.parametrize(("change", "words"), [
    (lambda e: e[2]["control"].update(ip="127.0.3.1"),
     "entry 2: 'control' ip 127.0.3.1 is also entry 0's 'control' ip; each interface needs its own address"),
    (lambda e: e[1]["cmc"].update(ip="127.0.1.1"),
     "entry 1: 'cmc' ip 127.0.1.1 is also entry 0's 'cmc' ip"),
    (lambda e: e[2]["cmc"].update(ip="127.0.3.2"),  # across roles and nodes
     "entry 2: 'cmc' ip 127.0.3.2 is also entry 1's 'control' ip"),
    (lambda e: e[0]["control"].update(ip="127.0.1.1"),  # within one node: the cmc is read first
     "entry 0: 'control' ip 127.0.1.1 is also entry 0's 'cmc' ip"),
    (lambda e: (e[0]["cmc"].update(ip="fd00::1"), e[1]["cmc"].update(ip="fd00:0:0::0001")),
     "entry 1: 'cmc' ip fd00::1 is also entry 0's 'cmc' ip"),  # one address, two spellings
    (lambda e: e[1]["control"].update(mac=e[0]["cmc"]["mac"].upper()),
     "entry 1: 'control' mac 02:00:00:01:00:01 is also entry 0's 'cmc' mac"),
    (lambda e: e[2]["data"].update(hostname="fit01"),
     "entry 2: 'data' hostname fit01 is also entry 0's 'control' hostname"),
])
def test_item4_duplicates_name_both_entries(change: Callable[[list[Entry]], object], words: str) -> None:
    with pytest.raises(InventoryError, match=re.escape(words)):
        Inventory(parse_entries(broken(change), "x"), "x")


@pytest.mark.parametrize(("value", "kind"), [
    (2130706433, "a number"), (None, "null"), (["127.0.0.1"], "a list"), (True, "a boolean"),
    ({"v4": "127.0.0.1"}, "an object"), (1.5, "a number"),
])
@pytest.mark.parametrize(("role", "key"), [("control", "ip"), ("cmc", "ip"), ("cmc", "mac"),
                                           ("control", "hostname")])
def test_item4_non_string_fields_are_refused(value: object, kind: str, role: str, key: str) -> None:
    first = entry(1)
    first[role][key] = value
    with pytest.raises(InventoryError, match=rf"entry 0: '{role}' {key} is {kind}, not a string: write it \""):
        parse_entries([first], "x")


def test_item4_addresses_are_kept_in_canonical_form() -> None:
    first = entry(1)
    first["cmc"]["ip"] = "FD00:0::1"
    assert parse_entries([first], "x")[0].cmc.ip == "fd00::1"
