"""The testbed's own record, ``DIR/testbed.json``: what ``up`` built, read by
the controller at start and by ``status``, ``fault``, ``run`` and ``down``.

The PIDs of the processes it started are not here but in ``DIR/run/*.pid``
(:mod:`imaging_testbed.procs`), one file per process, written by whoever
started it; the daemons' are also in the testbed's record outside its folder
(:mod:`imaging_testbed.registry`), whose file this record names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from imaging.errors import ImagingError, UsageError

from .layout import Layout
from .node import NodeSettings
from .pxe import FIRMWARE

STATE_FILE = "testbed.json"


@dataclass(frozen=True)
class TestbedState:
    """What a testbed is made of."""

    __test__ = False  # not a pytest test class

    directory: str
    index: int
    count: int
    cmc_only: bool = False
    boot_delay: float = 1.0
    disk_path: str = "/dev/sda"
    disk_mib: int = 64
    faults: dict[str, list[str]] = field(default_factory=dict)  # node name -> specs at up
    accel: str = ""  # VM tier: tcg or kvm; empty for emulated nodes
    registry: str = ""  # the file recording the testbed outside its folder (imaging_testbed.registry)
    boot: str = "pxelinux"  # the nodes' network boot loader: pxelinux, or GRUB's configs (imaging_testbed.pxe)
    power: str = "cmc"  # how the product reaches the nodes' power: cards, or BMCs (imaging_testbed.bmc, .redfish)

    @property
    def firmware(self) -> str:
        """``bios`` (the nodes boot pxelinux) or ``uefi`` (GRUB's network image)."""
        return next(name for name, loader in FIRMWARE.items() if loader == self.boot)

    @property
    def vm(self) -> bool:
        """Whether the nodes are virtual machines."""
        return bool(self.accel)

    @property
    def kind(self) -> str:
        """``emulated``, ``vm`` or ``cmc-only``."""
        return "cmc-only" if self.cmc_only else "vm" if self.vm else "emulated"

    @property
    def links(self) -> str:
        """The nodes' links: ``veth``, ``tap`` (VMs) or ``none`` (CMCs only)."""
        return {"cmc-only": "none", "vm": "tap", "emulated": "veth"}[self.kind]

    @property
    def layout(self) -> Layout:
        """The testbed's files, namespaces and addresses."""
        return Layout(Path(self.directory), self.index, self.count)

    @property
    def settings(self) -> NodeSettings:
        """How its nodes behave."""
        return NodeSettings(boot_delay=self.boot_delay, disk_path=self.disk_path, disk_mib=self.disk_mib,
                            full=not self.cmc_only, boot=self.boot)

    def save(self) -> None:
        """Write the record atomically."""
        path = Path(self.directory) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1) + "\n")
        tmp.replace(path)


def load(directory: Path) -> TestbedState:
    """The record of the testbed in ``directory``; UsageError when there is none."""
    path = directory / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"no testbed in {directory}: start one with imaging-testbed up N --dir {directory}"
                         ) from None
    except (OSError, ValueError) as exc:
        raise ImagingError(f"cannot read {path} ({exc}); remove it after checking no testbed runs") from None
    return TestbedState(**data)


def forget(directory: Path) -> None:
    """Remove the record (the testbed is down)."""
    (directory / STATE_FILE).unlink(missing_ok=True)
