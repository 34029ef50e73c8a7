"""Renders what the jobs report; jobs never print.

* :class:`LinesDisplay`: one timestamped line per phase change (not a terminal);
* :class:`JsonDisplay`: one JSON object per event, then a JSON summary;
* :class:`BarsDisplay`: a progress bar per node and an overall bar (a terminal);
* :class:`TableDisplay`: a full-screen live table (``-c``), aggregated when
  there are more nodes than lines on the screen.

Each takes events with :meth:`event` and ends with :meth:`summary`.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from types import TracebackType
from typing import Any, TextIO

from ..events import Event, NodeResult

FINAL = ("done", "failed")


def result_line(result: NodeResult, timed: bool = False) -> str:
    """``fit03: on`` (``fit03: ssh up (2.1s)`` when ``timed``)."""
    suffix = f" ({result.seconds:.1f}s)" if timed else ""
    return f"{result.node.hostname}: {result.detail}{suffix}"


def show_result(result: NodeResult, as_json: bool, timed: bool = False, out: TextIO | None = None) -> None:
    """Print one node's result at once (flushed, so that pipes see it)."""
    out = out or sys.stdout
    out.write((json.dumps(result.as_dict()) if as_json else result_line(result, timed)) + "\n")
    out.flush()


class Display:
    """The common part: state per node, context-manager protocol, the final summary."""

    def __init__(self, hostnames: Sequence[str], out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.hostnames = list(hostnames)
        self.latest: dict[str, Event] = {}

    def __enter__(self) -> Display:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop live rendering (nothing to do for plain displays)."""

    def event(self, event: Event) -> None:
        """Take one event."""
        self.latest[event.node] = event

    def summary(self, results: Sequence[NodeResult], retry: str | None = None) -> None:
        """The final table: node, result, time, reason; and the line to retry the failures."""
        self.close()
        width = max((len(r.node.hostname) for r in results), default=4)
        self.out.write(f"{'node':<{width}}  result  {'time':>7}  detail\n")
        for result in sorted(results, key=lambda r: r.node.number):
            verdict = "ok" if result.ok else "FAILED"
            self.out.write(f"{result.node.hostname:<{width}}  {verdict:<6}  {result.seconds:6.1f}s  "
                           f"{result.detail}\n")
        failed = sum(not r.ok for r in results)
        self.out.write(f"{len(results) - failed} ok, {failed} failed\n")
        if retry:
            self.out.write(f"to retry the failed nodes: {retry}\n")
        self.out.flush()


class LinesDisplay(Display):
    """Plain timestamped lines, one per phase change: for logs and pipes."""

    def event(self, event: Event) -> None:
        """Print the event when its phase differs from the node's previous one."""
        previous = self.latest.get(event.node)
        super().event(event)
        if previous is not None and previous.phase == event.phase and event.phase not in FINAL:
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
        text = f" {event.message}" if event.message else ""
        self.out.write(f"{stamp} {event.node} {event.phase}{text}\n")
        self.out.flush()


class JsonDisplay(Display):
    """One JSON object per event and a final ``{"summary": …}``."""

    def event(self, event: Event) -> None:
        """Print the event as JSON."""
        super().event(event)
        record: dict[str, Any] = {"time": round(event.time, 3), "node": event.node, "phase": event.phase}
        if event.percent is not None:
            record["percent"] = round(event.percent, 1)
        if event.message:
            record["message"] = event.message
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def summary(self, results: Sequence[NodeResult], retry: str | None = None) -> None:
        """The results as one JSON object."""
        self.out.write(json.dumps({"summary": [r.as_dict() for r in results], "ok": all(r.ok for r in results),
                                   "retry": retry}) + "\n")
        self.out.flush()


class BarsDisplay(Display):
    """A rich progress bar per node, plus an overall bar with its ETA."""

    def __init__(self, hostnames: Sequence[str], out: TextIO | None = None) -> None:
        super().__init__(hostnames, out)
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
        self.progress = Progress(TextColumn("{task.fields[node]:>8}"), BarColumn(), TaskProgressColumn(),
                                 TimeRemainingColumn(), TextColumn("{task.description}"),
                                 console=Console(file=self.out), transient=False)
        self.overall = self.progress.add_task("", total=100 * len(hostnames), node="all")
        self.tasks = {name: self.progress.add_task("waiting", total=100, node=name) for name in hostnames}
        self.progress.start()

    def event(self, event: Event) -> None:
        """Move the node's bar and the overall one."""
        super().event(event)
        task = self.tasks.get(event.node)
        if task is None:
            return
        text = event.phase + (f" {event.message}" if event.message else "")
        completed = 100 if event.phase in FINAL else event.percent
        if completed is None:
            self.progress.update(task, description=text)
        else:
            self.progress.update(task, description=text, completed=completed)
        total = sum(self.progress.tasks[t].completed for t in self.tasks.values())
        self.progress.update(self.overall, completed=total)

    def close(self) -> None:
        """Stop redrawing."""
        self.progress.stop()


class TableDisplay(Display):
    """A full-screen live table; beyond the screen's height, rows are grouped by phase."""

    def __init__(self, hostnames: Sequence[str], out: TextIO | None = None) -> None:
        super().__init__(hostnames, out)
        from rich.console import Console
        from rich.live import Live
        self.console = Console(file=self.out)
        self.live = Live(self._render(), console=self.console, screen=True, auto_refresh=True,
                         refresh_per_second=4, get_renderable=self._render)
        self.live.start()

    def _render(self) -> Any:
        from rich.table import Table
        table = Table(title="imaging", expand=True)
        for column in ("node", "phase", "progress", "detail"):
            table.add_column(column)
        rows = self.console.size.height - 6
        if len(self.hostnames) <= rows:
            for name in self.hostnames:
                event = self.latest.get(name)
                percent = "" if event is None or event.percent is None else f"{event.percent:5.1f}%"
                table.add_row(name, event.phase if event else "waiting", percent, event.message if event else "")
            return table
        phases = Counter(self.latest[n].phase if n in self.latest else "waiting" for n in self.hostnames)
        for phase, count in sorted(phases.items()):
            members = [self.latest[n] for n in self.hostnames if n in self.latest and self.latest[n].phase == phase]
            known = [e.percent for e in members if e.percent is not None]
            average = f"{sum(known) / len(known):5.1f}% avg" if known else ""
            failed = ", ".join(e.node for e in members) if phase == "failed" else ""
            table.add_row(f"{count} nodes", phase, average, failed)
        return table

    def close(self) -> None:
        """Leave the screen (no keypress needed)."""
        self.live.stop()


def make_display(hostnames: Sequence[str], *, as_json: bool, table: bool, out: TextIO | None = None) -> Display:
    """The display that suits the options and the output: JSON, live table, bars, or lines."""
    out = out or sys.stdout
    if as_json:
        return JsonDisplay(hostnames, out)
    if out.isatty():
        return TableDisplay(hostnames, out) if table else BarsDisplay(hostnames, out)
    return LinesDisplay(hostnames, out)
