"""Typed records the jobs hand to the display: progress events and per-node results."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .inventory import Node


@dataclass(frozen=True)
class Event:
    """Something happened to a node: a phase change, progress, a message."""

    node: str
    phase: str
    percent: float | None = None
    message: str = ""
    time: float = field(default_factory=time.time)


@dataclass(frozen=True)
class NodeResult:
    """How one node ended: ``ok``, what it answered or why it failed, and how long it took."""

    node: Node
    ok: bool
    detail: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"node": self.node.hostname, "ok": self.ok, "detail": self.detail,
                "seconds": round(self.seconds, 3)}
