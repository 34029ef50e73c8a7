"""The power commands: status, on, off, reset (ensured), info, on many nodes at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ..events import NodeResult
from ..inventory import Node
from ..locks import LockSet
from ..power.base import Power, PowerOptions
from ..power.reset import ResetSettings, ensure_reset
from .pernode import for_each_node

CHANGING = ("on", "off", "reset")  # verbs that change a node: they take its lock


@dataclass(frozen=True)
class PowerSettings:
    """How to talk to the power controllers."""

    power: PowerOptions
    timeout: float  # the deadline of the whole command, per node
    reset: ResetSettings
    lock_dir: Path | None = None  # where node locks live; None: take none
    lock_wait: float = 0.0


async def power(nodes: Sequence[Node], verb: str, settings: PowerSettings,
                plain: bool = False) -> list[NodeResult]:
    """Send ``verb`` to every node's power controller; ``reset`` is ensure_reset unless ``plain``.

    A verb that changes the nodes holds their locks meanwhile (LockBusy names
    the holder).  Results come back sorted by node number.
    """
    locks = LockSet()
    if verb in CHANGING and settings.lock_dir is not None:
        await locks.lock_nodes(settings.lock_dir, [n.hostname for n in nodes], settings.lock_wait)
    try:
        return await _power(nodes, verb, settings, plain)
    finally:
        locks.release()


async def _power(nodes: Sequence[Node], verb: str, settings: PowerSettings, plain: bool) -> list[NodeResult]:
    options = replace(settings.power, timeout=min(settings.power.timeout, settings.timeout))
    async with Power(options) as power:
        async def work(node: Node) -> str:
            if verb == "reset" and not plain:
                return await ensure_reset(power, node, settings.reset)
            return await power.request(node, verb)

        # the client's own timeout answers first, naming the reason; this outer one is the backstop
        results = [result async for result in for_each_node(nodes, work, settings.timeout + 0.5)]
    return sorted(results, key=lambda r: r.node.number)
