"""inventory/configure.py: the site description becomes the JSON inventory, or one line says why not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imaging.inventory import Inventory

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "inventory" / "sample-inventory.json"
CONFIGURE = ROOT / "inventory" / "configure.py"
LINE = "1 00:03:1d:0e:03:19 - 02:00:00:00:00:01\n"


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CONFIGURE), *argv], capture_output=True, text=True, cwd=cwd)


def configure(tmp_path: Path, site: str, *options: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "site.txt").write_text(site)
    return run(*options, str(tmp_path / "site.txt"), "-o", str(tmp_path / "out.json"))


def refused(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a refused run (exit 2, nothing else on stderr, no traceback)."""
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("configure.py: error: ") and done.stderr.count("\n") == 1
    return done.stderr.removeprefix("configure.py: error: ").rstrip("\n")


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
     "entry 1: 'control' mac 00:03:1d:0e:03:19 is also entry 0's 'control' mac"),
    (LINE, ("--control-ip", "10.0.0.1"), "--control-ip '10.0.0.1' must hold one %d"),
    (LINE, ("--control-name", "fit%d%d"), "--control-name 'fit%d%d' must hold one %d"),
    (LINE, ("--cmc-ip", "10.0.%y"), "--cmc-ip '10.0.%y' must hold one %d"),
    (LINE, ("--control-ip", "%(n)d"), "--control-ip '%(n)d' must hold one %d"),
    (LINE, ("--cmc-name", "%c"), "entry 0: 'cmc' hostname '\\x01' is not a hostname"),
    ("1 00:03:1d:0e:03:19 - 02:00:00:00:00:01\n3 00:03:1d:0e:03:1a - 02:00:00:00:00:03 1\n", (),
     "node number 1 (fit01) is also entry 0's (fit01)"),
    (LINE + "1 00:03:1d:0e:03:1a - 02:00:00:00:00:03 7\n", (),
     "site.txt:2: slot 1 is also on "),
    ("# nothing but comments\n\n", (), "site.txt describes no slot: write one line per slot"),
])
def test_configure_errors(tmp_path: Path, site: str, options: tuple[str, ...], words: str) -> None:
    message = refused(configure(tmp_path, site, *options))
    assert words in message
    assert not (tmp_path / "out.json").exists()  # nothing written unless every check passes


def test_item1_huge_or_non_ascii_numbers_are_one_line(tmp_path: Path) -> None:
    slot = "1" * 5000
    message = refused(configure(tmp_path, f"{slot} 00:03:1d:0e:03:19 - 02:00:00:00:00:01\n"))
    assert message == (f"{tmp_path / 'site.txt'}:1: slot '11111111111111111111'… (5000 characters)"
                       " must be a number from 1 to 99999 (ASCII digits)")
    message = refused(configure(tmp_path, "１ 00:03:1d:0e:03:19 - 02:00:00:00:00:01\n"))
    assert message.endswith(":1: slot '１' must be a number from 1 to 99999 (ASCII digits)")
    message = refused(configure(tmp_path, "1 00:03:1d:0e:03:19 - 02:00:00:00:00:01 0\n"))
    assert message.endswith(":1: node '0' must be a number from 1 to 99999 (ASCII digits)")


def test_item1_site_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "site.txt").write_bytes(LINE.encode() + b"# caf\xe9\n")
    message = refused(run(str(tmp_path / "site.txt")))
    assert message == f"{tmp_path / 'site.txt'} is not UTF-8 text (byte {len(LINE) + 5}): save it as UTF-8"


def test_item1_site_that_cannot_be_read(tmp_path: Path) -> None:
    missing = tmp_path / "none.txt"
    assert refused(run(str(missing))) == f"cannot read {missing}: No such file or directory"
    assert refused(run(str(tmp_path))) == f"cannot read {tmp_path}: Is a directory"


def test_item1_output_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "inv").mkdir()
    message = refused(run(*site_args(tmp_path), "-o", str(tmp_path / "inv")))
    example = tmp_path / "inv" / "imaging-inventory.json"
    assert message == f"-o {tmp_path / 'inv'} is a folder: name the file, e.g. -o {example}"
    assert os.listdir(tmp_path / "inv") == []


def test_item1_output_in_a_missing_folder(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "inv.json"
    message = refused(run(*site_args(tmp_path), "-o", str(target)))
    assert message == f"-o {target}: folder {tmp_path / 'missing'} does not exist; create it or write elsewhere"
    assert not (tmp_path / "missing").exists()


def test_output_that_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("old\n")
    target = tmp_path / "file" / "inv.json"  # below a file: refused for root too
    message = refused(run(*site_args(tmp_path), "-o", str(target)))
    assert message == f"cannot write {target}: Not a directory; choose another -o"
    assert (tmp_path / "file").read_text() == "old\n"


def site_args(tmp_path: Path) -> list[str]:
    (tmp_path / "site.txt").write_text(LINE)
    return [str(tmp_path / "site.txt")]


def test_relative_output_in_the_current_folder(tmp_path: Path) -> None:
    done = run(*site_args(tmp_path), "-o", "inv.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert Inventory.load(tmp_path / "inv.json").numbers() == frozenset({1})


def test_committed_sample_matches_its_site_description() -> None:
    done = subprocess.run([sys.executable, str(CONFIGURE), "--control-ip", "127.0.3.%d", "--cmc-ip",
                           "127.0.1.%d", "--data-ip", "127.0.2.%d", str(ROOT / "inventory" / "sample-site.txt")],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == json.loads(SAMPLE.read_text())
    addresses = [i["ip"] for e in json.loads(SAMPLE.read_text()) for i in e.values()]
    assert all(a.startswith("127.") for a in addresses)  # the sample never points at a real network


def test_makefile_builds_the_sample_and_refuses_a_bad_site(tmp_path: Path) -> None:
    for name in ("Makefile", "configure.py", "sample-site.txt"):
        (tmp_path / name).write_bytes((ROOT / "inventory" / name).read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    make = ["make", "-s", "-C", str(tmp_path), f"PYTHON={sys.executable}"]
    done = subprocess.run([*make, "sample"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "sample-inventory.json").read_text()) == json.loads(SAMPLE.read_text())
    (tmp_path / "site.txt").write_text("1 00:03:1d:0e:03:19 - nomac\n")
    done = subprocess.run(make, capture_output=True, text=True, env=env)
    assert done.returncode != 0 and "site.txt:1: malformed MAC 'nomac'" in done.stderr
    assert not (tmp_path / "imaging-inventory.json").exists()
