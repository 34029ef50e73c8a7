"""Renders what the jobs report: one line per node, or one JSON object per line."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from .events import NodeResult


def result_line(result: NodeResult, timed: bool = False) -> str:
    """``fit03: on`` (``fit03: ssh up (2.1s)`` when ``timed``)."""
    suffix = f" ({result.seconds:.1f}s)" if timed else ""
    return f"{result.node.hostname}: {result.detail}{suffix}"


def show_result(result: NodeResult, as_json: bool, timed: bool = False, out: TextIO | None = None) -> None:
    """Print one node's result at once (flushed, so that pipes see it)."""
    out = out or sys.stdout
    out.write((json.dumps(result.as_dict()) if as_json else result_line(result, timed)) + "\n")
    out.flush()
