"""``imaging-rescue`` on the emulated testbed: nodes booted into the imaging OS stay there (their next-boot
link kept, a reboot brings them back to it), ``--list`` names them, ``--reset`` takes them out and leaves no
link behind; a node that does not come up is not left in rescue.  Real cards, pxelinux, telnetd and sshd."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.testbed.conftest import Testbed
from tests.testbed.product import product

NONE = "no node's next boot is the imaging OS"


@pytest.fixture
def bed(restored: Testbed) -> Testbed:
    """The session testbed; afterwards every node healthy, its link gone, back on ssh."""
    return restored


def links(bed: Testbed) -> dict[str, str]:
    """The per-MAC next-boot links of the pxelinux folder, and where each points."""
    return {p.name: os.readlink(p) for p in sorted((bed.dir / "tftp" / "pxelinux.cfg").glob("01-*"))}


def link_name(bed: Testbed, number: int) -> str:
    return bed.node(number).pxe_name


def test_rescue_keeps_nodes_in_the_imaging_os_until_reset(bed: Testbed) -> None:
    assert product(bed, "rescue", "--list").out == f"{NONE}\n"
    run = product(bed, "rescue", "-t", "60", "1-2")
    assert run.code == 0, run.out + run.err
    assert "2 ok, 0 failed" in run.out
    assert set(links(bed)) == {link_name(bed, 1), link_name(bed, 2)}
    assert len(set(links(bed).values())) == 1  # both at the imaging OS's file
    assert {bed.status()[f"fit0{n}"].stage for n in (1, 2)} == {"telnet"}
    assert bed.status()["fit03"].stage == "ssh"

    # a reboot brings a rescued node back to the imaging OS
    assert product(bed, "reset", "1").code == 0
    assert product(bed, "wait", "--telnet", "-t", "20", "1").code == 0

    folder = bed.dir / "tftp" / "pxelinux.cfg"
    listed = product(bed, "rescue", "--list")
    assert listed.code == 0 and listed.out.splitlines() == [
        f"fit0{n}  next boot: imaging OS ({folder / link_name(bed, n)})" for n in (1, 2)]
    assert [r["hostname"] for r in product(bed, "rescue", "--list", "--json", "2-4").json_lines()] == ["fit02"]

    # out of rescue: the node given
    out = product(bed, "rescue", "--reset", "2")
    assert out.code == 0, out.out + out.err
    assert set(links(bed)) == {link_name(bed, 1)}
    assert product(bed, "wait", "-t", "20", "2").code == 0

    # every node left there, fit01, whose card does not answer: its retry line still takes it out
    bed.fault(1, "cmc=blackhole")
    out = product(bed, "rescue", "--reset", "-t", "4", "--json")
    summary = out.json_lines()[-1]
    assert out.code == 1 and [r["node"] for r in summary["summary"]] == ["fit01"], out.out + out.err
    assert summary["retry"] == "imaging-rescue --reset -t 4 1"
    bed.fault(1, "cmc=ok")
    assert product(bed, "off", "1").code == 0
    out = product(bed, "rescue", "--reset", "1", "--json")  # the retry, on a node that is now off
    assert out.code == 0, out.out + out.err
    assert out.json_lines()[-1]["summary"][0]["detail"] == "next boot: its disk; left off"
    assert links(bed) == {}
    assert product(bed, "status", "1").lines() == {"fit01": "off"}
    assert product(bed, "on", "1").code == 0
    assert product(bed, "wait", "-t", "20", "1").code == 0
    assert bed.status()["fit01"].stage == "ssh"
    assert product(bed, "rescue", "--list").out == f"{NONE}\n"
    again = product(bed, "rescue", "--reset")
    assert (again.code, again.out) == (0, f"{NONE}\n")


def test_a_node_that_does_not_come_up_is_not_left_in_rescue(bed: Testbed) -> None:
    bed.fault(4, "boot=never")
    run = product(bed, "rescue", "-t", "8", "3-4", "--json")
    assert run.code == 1 and "Traceback" not in run.err
    events = run.json_lines()
    results = {r["node"]: r for r in events[-1]["summary"]}
    assert results["fit03"]["ok"] and results["fit03"]["detail"].startswith("in the imaging OS")
    assert not results["fit04"]["ok"]
    assert results["fit04"]["detail"] == "timeout after 8s; reset to boot its disk", results
    assert events[-1]["retry"] == "imaging-rescue -t 8 4"  # the line that retries the failed node
    assert set(links(bed)) == {link_name(bed, 3)}  # fit04's link went with its failure


def test_rescue_refuses_what_a_user_can_get_wrong(bed: Testbed, tmp_path: Path) -> None:
    taken = product(bed, "rescue", "--list", "--reset")
    assert taken.code == 2 and "not allowed with argument" in taken.err
    nothing = product(bed, "rescue")
    assert nothing.code == 2
    assert nothing.err.strip().endswith("no nodes given: name some (e.g. 1-5), use -a, or set $NODES")
    config = tmp_path / "elsewhere.conf"
    config.write_text(f"[pxelinux]\nconfig_dir = {tmp_path / 'nowhere'}\n")
    missing = product(bed, "rescue", "--config", str(config), "--list")
    assert missing.code == 2 and missing.err.strip().endswith(
        f"pxelinux folder {tmp_path / 'nowhere'} does not exist; set [pxelinux] config_dir")
    assert links(bed) == {}
