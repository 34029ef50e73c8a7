"""One look at one node: what its power controller says, which control interface answers, and the
image its installed OS runs; each probe under its own timeout, so a black-holed node costs its own
probe that long and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import NodeFailure
from ..probe import port_answers
from ..ssh import SshSettings
from ..ssh import run as ssh_run

if TYPE_CHECKING:
    from ..inventory import Node
    from ..power.base import Power

# the image the installed OS runs: the last line of its identity file (imaging-save appends its stamp
# there), else of R2lab's older one
IMAGE_COMMAND = "tail -n 1 /etc/imaging-image 2>/dev/null || tail -n 1 /etc/rhubarbe-image 2>/dev/null"
POWER_STATES = ("on", "off", "unreachable", "unknown")
OS_STATES = ("ssh", "imaging", "none")


@dataclass(frozen=True)
class ProbeSettings:
    """How a node is looked at."""

    timeout: float  # seconds for each probe (power, control interface, image)
    ssh: SshSettings
    telnet_port: int = 23


@dataclass
class NodeView:
    """What was last seen of a node."""

    hostname: str
    number: int
    power: str = "unknown"  # on | off | unreachable (its controller did not answer) | unknown (not yet probed)
    os: str = "none"  # ssh (its installed OS) | imaging (the imaging OS's telnet) | none
    image: str = ""  # the last line of the identity file of the OS it runs, when it answers ssh
    detail: str = ""  # why the controller is unreachable
    job: dict[str, Any] | None = None  # a load or a save running on it: command, user, phase, percent
    latency: dict[str, float] = field(default_factory=dict)  # probe -> seconds it took
    updated: float = 0.0  # when it was last probed (time.time())

    def state(self) -> tuple[Any, ...]:
        """What a change is made of (not the latencies nor the time of the probe)."""
        return (self.power, self.os, self.image, self.detail, self.job)

    def as_json(self) -> dict[str, Any]:
        """The node as ``/api/nodes`` gives it."""
        return {"hostname": self.hostname, "number": self.number, "power": self.power, "os": self.os,
                "image": self.image, "detail": self.detail, "job": self.job,
                "latency": {name: round(seconds, 4) for name, seconds in self.latency.items()},
                "updated": round(self.updated, 3)}


async def probe_power(node: Node, power: Power, timeout: float) -> tuple[str, str]:
    """``on``, ``off`` or ``unreachable`` with the reason."""
    try:
        async with asyncio.timeout(timeout):
            return await power.status(node), ""
    except NodeFailure as exc:
        return "unreachable", exc.message
    except TimeoutError:
        return "unreachable", f"no answer within {timeout:g}s"


async def probe_os(node: Node, settings: ProbeSettings) -> str:
    """``ssh``, ``imaging`` or ``none``: which control interface answers (both are tried at once)."""
    ssh, telnet = await asyncio.gather(port_answers(node.control.ip, settings.ssh.port, settings.timeout),
                                       port_answers(node.control.ip, settings.telnet_port, settings.timeout))
    return "ssh" if ssh else "imaging" if telnet else "none"


async def probe_image(node: Node, settings: ProbeSettings) -> str:
    """The last line of the identity file of the OS the node runs, or empty when ssh cannot tell."""
    import asyncssh
    try:
        async with asyncio.timeout(settings.timeout):
            code, output = await ssh_run(node.control.ip, IMAGE_COMMAND, settings.ssh)
    except (OSError, asyncssh.Error, TimeoutError):
        return ""
    lines = output.strip().splitlines()
    return lines[-1].strip() if code == 0 and lines else ""


async def probe_node(node: Node, power: Power, settings: ProbeSettings, view: NodeView,
                     ssh_slots: asyncio.Semaphore | None = None) -> NodeView:
    """Look at the node once; a new view, without a job (the monitor gives it the job board's).
    ``view`` is the last one: an ssh read that fails keeps its image.
    ``ssh_slots`` bounds the ssh sessions open at once (the other probes are a request or a SYN)."""
    loop = asyncio.get_running_loop()
    latency: dict[str, float] = {}
    started = loop.time()
    state, detail = await probe_power(node, power, settings.timeout)
    latency["power"] = loop.time() - started
    os_state, image = "none", ""
    if state != "off":  # an unreachable controller says nothing of the node: look at the node itself
        started = loop.time()
        os_state = await probe_os(node, settings)
        latency["control"] = loop.time() - started
        if os_state == "ssh":
            started = loop.time()
            # an ssh session that fails once (a busy node) does not make the image unknown: it changes
            # only with a boot, and the node has been answering ssh since the last look
            async with ssh_slots or contextlib.nullcontext():
                image = await probe_image(node, settings)
            image = image or (view.image if view.os == "ssh" else "")
            latency["image"] = loop.time() - started
    return NodeView(node.hostname, node.number, state, os_state, image, detail, None, latency, time.time())
