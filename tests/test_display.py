"""The displays: plain lines, JSON lines, bars and the live table, and the summary."""

from __future__ import annotations

import io
import json

from rich.console import Console

from imaging.cli.display import BarsDisplay, JsonDisplay, LinesDisplay, TableDisplay, make_display
from imaging.events import Event, NodeResult
from imaging.inventory import Inventory
from tests.helpers import SAMPLE_INVENTORY

NODES = list(Inventory.load(SAMPLE_INVENTORY))


def results() -> list[NodeResult]:
    return [NodeResult(NODES[0], True, "loaded u.img", 12.3), NodeResult(NODES[3], False, "telnet not up", 80.0)]


def test_lines_show_phase_changes_only() -> None:
    out = io.StringIO()
    display = LinesDisplay(["fit01", "fit02"], out)
    for event in (Event("fit01", "resetting", time=0), Event("fit01", "receiving", 10.0, time=1),
                  Event("fit01", "receiving", 50.0, time=2), Event("fit02", "failed", message="why", time=3),
                  Event("fit01", "done", 100.0, "loaded", time=4)):
        display.event(event)
    lines = out.getvalue().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["fit01 resetting", "fit01 receiving",
                                                           "fit02 failed why", "fit01 done loaded"]
    display.summary(results(), "imaging-load -i u.img 4")
    text = out.getvalue()
    assert "fit01  ok        12.3s  loaded u.img" in text
    assert "fit04  FAILED    80.0s  telnet not up" in text
    assert "1 ok, 1 failed" in text and "to retry the failed nodes: imaging-load -i u.img 4" in text


def test_json_events_and_summary() -> None:
    out = io.StringIO()
    display = JsonDisplay(["fit01"], out)
    display.event(Event("fit01", "receiving", 43.21, "92 Mbps", time=5.0))
    display.summary(results(), "imaging-load -i u.img 4")
    first, last = (json.loads(line) for line in out.getvalue().splitlines())
    assert first == {"time": 5.0, "node": "fit01", "phase": "receiving", "percent": 43.2, "message": "92 Mbps"}
    assert last["ok"] is False and last["retry"] == "imaging-load -i u.img 4"
    assert [r["node"] for r in last["summary"]] == ["fit01", "fit04"]


def test_bars_follow_the_events() -> None:
    display = BarsDisplay(["fit01", "fit02"], io.StringIO())
    display.event(Event("fit01", "receiving", 40.0, "90 Mbps"))
    display.event(Event("fit02", "done", None, "loaded"))
    tasks = {t.fields["node"]: t for t in display.progress.tasks}
    assert tasks["fit01"].completed == 40 and tasks["fit01"].description == "receiving 90 Mbps"
    assert tasks["fit02"].completed == 100
    assert tasks["all"].completed == 140 and tasks["all"].total == 200
    display.close()


def rendered(display: TableDisplay) -> str:
    console = Console(file=io.StringIO(), width=100, record=True)
    console.print(display._render())
    return console.export_text()


def test_live_table_rows_then_aggregates_beyond_the_screen() -> None:
    small = TableDisplay([f"fit{n:02d}" for n in range(1, 4)], io.StringIO())
    small.event(Event("fit02", "receiving", 43.0, "90 Mbps"))
    text = rendered(small)
    small.close()
    assert "fit02" in text and "43.0%" in text and "waiting" in text
    many = [f"fit{n:02d}" for n in range(1, 38)]
    big = TableDisplay(many, io.StringIO())  # a 25-line console: 37 rows do not fit
    for n, name in enumerate(many):
        big.event(Event(name, "receiving" if n % 2 else "failed", 50.0 if n % 2 else None, "x"))
    text = rendered(big)
    big.close()
    assert "18 nodes" in text and "19 nodes" in text and "50.0% avg" in text
    assert "fit01, fit03" in text  # failures are named


def test_make_display_chooses_by_output() -> None:
    assert isinstance(make_display(["fit01"], as_json=True, table=False, out=io.StringIO()), JsonDisplay)
    assert isinstance(make_display(["fit01"], as_json=False, table=True, out=io.StringIO()), LinesDisplay)
