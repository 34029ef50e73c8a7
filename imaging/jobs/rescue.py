"""imaging-rescue: boot nodes into the imaging OS and leave them there (their next-boot link kept), or take
nodes out of it (the link removed, the node reset to boot its disk)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..events import Event, NodeResult
from ..inventory import Node
from ..power.base import Power, PowerOptions
from ..power.reset import reset_running
from .imagingos import BootSettings, Emit, JobState, boot_imaging_os, run_imaging_node

IN_RESCUE = "in the imaging OS, and there at its next boots until imaging-rescue --reset"


@dataclass(frozen=True, kw_only=True)
class RescuePlan:
    """The nodes, how to reach their power controllers and bring them into the imaging OS, the
    command's deadline and the locks."""

    nodes: Sequence[Node]
    power: PowerOptions
    boot: BootSettings
    timeout: float
    lock_dir: Path
    lock_wait: float = 0.0


async def _each_node(plan: RescuePlan, state: JobState, emit: Emit, reset_after: bool,
                     work: Callable[[Node, Power], Awaitable[str]]) -> list[NodeResult]:
    """Take the nodes' locks, then run ``work(node, power)`` on every node at once (:func:`run_imaging_node`);
    the results in the nodes' order."""
    await state.locks.lock_nodes(plan.lock_dir, [n.hostname for n in plan.nodes], plan.lock_wait)
    async with Power(plan.power) as power:
        await asyncio.gather(*(run_imaging_node(node, lambda n: work(n, power), state, power, plan.timeout,
                                                reset_after, emit) for node in plan.nodes))
    return [state.results[n.number] for n in plan.nodes]


async def rescue(plan: RescuePlan, state: JobState, emit: Emit) -> list[NodeResult]:
    """Boot every node into the imaging OS (reset, until its telnet answers) and keep its link: the node
    stays there.  A node that does not come up gets its link back as it was and is reset to boot its
    disk, as a load's would."""
    deadline = asyncio.get_running_loop().time() + plan.timeout

    async def work(node: Node, power: Power) -> str:
        await boot_imaging_os(node, state, power, plan.boot, deadline, emit, keep_link=True)
        return IN_RESCUE

    return await _each_node(plan, state, emit, True, work)


async def leave(plan: RescuePlan, state: JobState, emit: Emit) -> list[NodeResult]:
    """Take every node out of the imaging OS: remove its link if it points there, then reset it (checked,
    as ``imaging-reset`` does) so that it boots its disk; a node that is off is left off, its next boot
    its disk."""
    async def work(node: Node, power: Power) -> str:
        if state.nextboot.boots_imaging_os(node):
            state.nextboot.boot_disk(node)
        if await power.status(node) == "off":
            return "next boot: its disk; left off"
        emit(Event(node.hostname, "resetting"))
        return f"next boot: its disk; {await reset_running(power, node, plan.boot.reset)}"

    return await _each_node(plan, state, emit, False, work)
