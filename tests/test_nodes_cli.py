"""`imaging-main nodes`: the selection printed on one line, one per line, counted or folded (item 7),
and the spec errors users met (items 1 and 4), as one line and exit 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Result
from tests.helpers import SAMPLE_INVENTORY

Cli = Callable[..., Result]
Entry = dict[str, Any]


def inventory_config(sandbox: Path, change: Callable[[list[Entry]], list[Entry]]) -> str:
    """A config naming a copy of the sample inventory changed by ``change``; its path."""
    entries = change(json.loads(SAMPLE_INVENTORY.read_text()))
    (sandbox / "changed.json").write_text(json.dumps(entries))
    (sandbox / "changed.conf").write_text(f"[testbed]\ninventory = {sandbox / 'changed.json'}\n")
    return str(sandbox / "changed.conf")


def refused(result: Result, prog: str = "imaging-nodes") -> str:
    """The message of a refused command: exit 2, one error line, nothing printed."""
    assert result.code == 2 and result.out == ""
    lines = result.err.splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in result.err
    return errors[0].removeprefix(f"{prog}: error: ")


@pytest.mark.parametrize(("options", "out"), [
    ([], "fit01 fit02 fit03 fit07\n"),                       # for export NODES=$(...): unchanged
    (["--expand"], "fit01\nfit02\nfit03\nfit07\n"),
    (["-e", "--cmc"], "reboot01\nreboot02\nreboot03\nreboot07\n"),
    (["--count"], "4\n"),
    (["-c", "--cmc"], "4\n"),
    (["--fold"], "1-3,7\n"),
    (["-f", "--cmc"], "1-3,7\n"),                             # numbers: the same for the CMCs
    (["--brackets"], "fit[01-03,07]\n"),
    (["--fold", "--brackets"], "fit[01-03,07]\n"),
    (["--brackets", "--cmc"], "reboot[01-03,07]\n"),
])
def test_item7_output_shapes(cli: Cli, options: list[str], out: str) -> None:
    result = cli("imaging-main", "nodes", *options, "1-3", "fit7")
    assert (result.code, result.out, result.err) == (0, out, "")


def test_item7_count_of_all_nodes_minus_some(cli: Cli) -> None:
    assert cli("imaging-nodes", "--count", "-a", "~4-6").out == "34\n"
    assert cli("imaging-nodes", "-c", "7").out == "1\n"


@pytest.mark.parametrize("spec", ["1-37", "1-9-2", "fit15-reboot18,~16", "3", "1,3,5,10-12,37"])
def test_item7_folds_are_specs_of_the_same_nodes(cli: Cli, spec: str) -> None:
    expanded = cli("imaging-nodes", "--expand", spec).out
    for fold in (["--fold"], ["--brackets"], ["--brackets", "--cmc"]):
        folded = cli("imaging-nodes", *fold, spec).out.strip()
        assert cli("imaging-nodes", "--expand", folded).out == expanded, (fold, folded)


def test_item7_brackets_keep_the_inventorys_domain(cli: Cli, sandbox: Path) -> None:
    def with_domain(entries: list[Entry]) -> list[Entry]:
        for entry in entries:
            entry["control"]["hostname"] += ".r2lab.inria.fr"
        return entries
    config = inventory_config(sandbox, with_domain)
    result = cli("imaging-nodes", "--config", config, "--brackets", "1-3,9-10")
    assert result.out == "fit[01-03,09-10].r2lab.inria.fr\n"
    assert cli("imaging-nodes", "--config", config, "2").out == "fit02.r2lab.inria.fr\n"


@pytest.mark.parametrize(("options", "words"), [
    (["--count", "--expand"], "argument -e/--expand: not allowed with argument -c/--count"),
    (["--fold", "--count"], "argument -c/--count: not allowed with argument -f/--fold"),
    (["--brackets", "--count"], "--brackets folds the hostnames: use it alone or with --fold,"
                                " not with --count or --expand"),
    (["--brackets", "-e"], "--brackets folds the hostnames"),
])
def test_item7_shapes_that_exclude_each_other(cli: Cli, options: list[str], words: str) -> None:
    assert refused(cli("imaging-main", "nodes", *options, "1-3")).startswith(words)


def holes(entries: list[Entry]) -> list[Entry]:
    """The sample without nodes 30 to 33."""
    return [e for e in entries if not 30 <= int(e["control"]["hostname"][3:]) <= 33]


def test_item7_known_keeps_the_inventorys_nodes_and_says_which_it_dropped(cli: Cli, sandbox: Path) -> None:
    config = inventory_config(sandbox, holes)
    result = cli("imaging-nodes", "--config", config, "--known", "--fold", "28-35")
    assert (result.code, result.out) == (0, "28-29,34-35\n")
    assert result.err == "imaging-nodes: warning: skipping 30-33: not in the inventory\n"
    result = cli("imaging-nodes", "--config", config, "-k", "1-3")
    assert (result.code, result.out, result.err) == (0, "fit01 fit02 fit03\n", "")


def test_item7_known_still_refuses_a_selection_of_unknown_nodes_only(cli: Cli, sandbox: Path) -> None:
    config = inventory_config(sandbox, holes)
    assert refused(cli("imaging-nodes", "--config", config, "--known", "30-33", "40")) == \
        "no node 30-33,40 in the inventory (it has 1-29,34-37)"
    assert refused(cli("imaging-nodes", "--config", config, "28-35")) == \
        "no node 30-33 in the inventory (it has 1-29,34-37)"  # without --known: refused as before


def test_item1_number_of_5000_digits(cli: Cli) -> None:
    assert refused(cli("imaging-main", "nodes", "1" * 5000)) == \
        "'11111111111111111111'… (5000 characters) is not a node: number too large (node numbers go up to 99999)"


@pytest.mark.parametrize("spec", ["１-３", "٣", "fit٠٧"])
def test_item4_non_ascii_digits(cli: Cli, spec: str) -> None:
    assert refused(cli("imaging-main", "nodes", spec)) == \
        f"{spec!r} is not a node spec: write its numbers with the ASCII digits 0-9"


@pytest.mark.parametrize(("change", "words"), [
    (lambda e: [*e[:1], {**e[1], "control": {**e[1]["control"], "hostname": "fit1a2"}}],
     "entry 1: control hostname 'fit1a2' carries no node number: name it letters then a number"
     " from 1 to 99999 (fit07, or fit07.example.org)"),
    (lambda e: [*e[:1], {**e[1], "cmc": {**e[1]["cmc"], "ip": e[0]["cmc"]["ip"]}}],
     "entry 1: 'cmc' ip 127.0.1.1 is also entry 0's 'cmc' ip; each interface needs its own address"),
    (lambda e: [*e[:1], {**e[1], "control": {**e[1]["control"], "ip": None}}],
     "entry 1: 'control' ip is null, not a string: write it \"192.168.3.7\""),
])
def test_item4_inventory_errors_reach_the_user_as_one_line(cli: Cli, sandbox: Path,
                                                           change: Callable[[list[Entry]], list[Entry]],
                                                           words: str) -> None:
    config = inventory_config(sandbox, change)
    assert refused(cli("imaging-nodes", "--config", config, "1")) == \
        f"inventory {sandbox / 'changed.json'}, {words}"
