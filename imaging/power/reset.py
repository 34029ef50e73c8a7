"""``ensure_reset``: make a node reboot whatever its state, through whichever power driver it has."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..probe import any_port_answers
from .base import Power, PowerError

if TYPE_CHECKING:
    from ..inventory import Node

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResetSettings:
    """What ensure_reset needs to know beyond the power controller."""

    idle_after_reset: float  # seconds within which the control interface must go silent
    probe_ports: tuple[int, ...] = (22, 23)  # the control interface's services
    poll: float = 0.25  # seconds between two looks


async def _goes_silent(node: Node, settings: ResetSettings) -> bool:
    """True when the control interface stops answering within idle_after_reset."""
    loop = asyncio.get_running_loop()
    until = loop.time() + settings.idle_after_reset
    while loop.time() < until:
        if not await any_port_answers(node.control.ip, settings.probe_ports, settings.poll):
            return True
        await asyncio.sleep(settings.poll)
    return False


async def _wait_status(power: Power, node: Node, wanted: str, poll: float) -> None:
    while await power.status(node) != wanted:
        await asyncio.sleep(poll)


async def ensure_reset(power: Power, node: Node, settings: ResetSettings) -> str:
    """Make the node reboot, whatever state it is in; return what was done.

    ``on`` → reset, ``off`` → on; then the node's control interface must stop
    answering within ``idle_after_reset`` (a controller can say ``ok`` and not
    reset, as R2lab's fit04 did): if it does not, power-cycle once with
    ``off``/``on``.  Finally wait until the controller says ``on``.  The caller
    bounds the whole with its deadline; PowerError when a step fails.
    """
    if await power.status(node) == "off":
        await power.request(node, "on")
        await _wait_status(power, node, "on", settings.poll)
        return "turned on"
    return await reset_running(power, node, settings)


async def reset_running(power: Power, node: Node, settings: ResetSettings) -> str:
    """The part of :func:`ensure_reset` for a node its controller says is on: reset, checked, power-cycled
    when ignored; return what was done."""
    answering = await any_port_answers(node.control.ip, settings.probe_ports, settings.poll)
    await power.request(node, "reset")
    if not answering or await _goes_silent(node, settings):
        await _wait_status(power, node, "on", settings.poll)
        return "reset"
    log.warning("%s: still answering %gs after reset: power-cycling", node.hostname,
                settings.idle_after_reset)
    await power.request(node, "off")
    await _wait_status(power, node, "off", settings.poll)
    if not await _goes_silent(node, settings):
        raise PowerError(f"reset ignored by the {power.label(node)}, and the node still answers when off")
    await power.request(node, "on")
    await _wait_status(power, node, "on", settings.poll)
    return f"reset ignored by the {power.label(node)}, power-cycled"
