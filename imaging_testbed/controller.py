"""The testbed controller: one long-lived process in the server namespace
holding every node's power state, its CMC server and the control channel.

Started by ``imaging-testbed up`` as
``ip netns exec <server-ns> python -m imaging_testbed.controller DIR``;
stops on SIGTERM, SIGINT or ``POST /shutdown``, killing the nodes' processes
first.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from imaging.errors import UsageError

from . import network, state
from .cmc import CmcServers
from .control import ControlServer
from .faults import Faults, check_vm_knob
from .leases import LeasesService
from .node import EmulatedNode, NodeStatus, PoweredNode

log = logging.getLogger(__name__)


class Controller:
    """The nodes of one testbed, their CMCs and the control channel."""

    def __init__(self, record: state.TestbedState) -> None:
        self.record = record
        self.layout = record.layout
        self.nodes: dict[str, PoweredNode] = {}
        vm = None
        if record.vm:
            from .vm.machine import VirtualMachine, VmSettings
            vm = VmSettings(accel=record.accel, firmware=record.firmware)
        for info in self.layout.nodes():
            faults = Faults.from_specs(record.faults.get(info.name, []))
            self.nodes[info.name] = (EmulatedNode(info, self.layout, record.settings, faults) if vm is None
                                     else VirtualMachine(info, self.layout, record.settings, faults, vm))
        self.stop = asyncio.Event()

    def status(self) -> list[NodeStatus]:
        """Every node's status, in number order."""
        return [node.status() for node in self.nodes.values()]

    async def set_fault(self, name: str, spec: str) -> list[str]:
        """Change a node's faults live; the node's faults now in force."""
        try:
            node = self.nodes[self.layout.node_by_name(name).name]
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if self.record.vm:
            check_vm_knob(spec)
        node.faults = node.faults.apply(spec)
        log.info("%s: faults now %s", node.info.name, node.faults.describe())
        await self._apply_network_faults()
        return node.faults.describe()

    async def _apply_network_faults(self) -> None:
        faults = {name: node.faults for name, node in self.nodes.items() if node.faults != Faults()}
        await network.apply_faults(self.layout, faults)

    async def run(self) -> None:
        """Serve until asked to stop; then stop every node."""
        cmcs = CmcServers(list(self.nodes.values()))
        leases = LeasesService(self.layout)
        control = ControlServer(self.layout.control_socket, self.status, self.set_fault, self.stop,
                                leases.command)
        await self._apply_network_faults()
        await cmcs.start()
        await leases.start()
        await asyncio.gather(*(node.power_on() for node in self.nodes.values()))
        await control.start()  # the socket appearing is the "ready" signal
        log.info("controller ready: %d nodes", len(self.nodes))
        try:
            await self.stop.wait()
        finally:
            log.info("controller stopping")
            await control.stop()
            await leases.stop()
            await cmcs.stop()
            await asyncio.gather(*(node.shutdown() for node in self.nodes.values()),
                                 return_exceptions=True)
        log.info("controller stopped")


async def serve(directory: Path) -> None:
    """Run the controller of the testbed in ``directory`` until SIGTERM/SIGINT or shutdown."""
    controller = Controller(state.load(directory))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, controller.stop.set)
    await controller.run()


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m imaging_testbed.controller DIR``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m imaging_testbed.controller DIR", file=sys.stderr)
        return 2
    directory = Path(args[0]).resolve()
    logging.basicConfig(
        filename=directory / "logs" / "controller.log", level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # one QMP connection per CMC verb, retried while qemu starts: the library's own logging is noise
    logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)
    asyncio.run(serve(directory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
