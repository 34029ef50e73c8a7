"""Fault knobs of an emulated node: parsing and the record that holds them.

A fault spec is ``knob=value`` (``cmc=blackhole``, ``boot=slow:5``,
``loss=10%``) or ``clear``; on the command line it is prefixed by the node,
``fit03:cmc=blackhole``.  Knobs:

=================  ==========================================================
``cmc=blackhole``  the CMC's packets are dropped (a DROP rule, not a closed port)
``cmc=garbage``    the CMC answers bodies that are not the protocol, and acts not
``cmc=slow:MS``    the CMC answers MS milliseconds late (real cards take tens of ms)
``cmc=ok``         back to normal
``reset=ignore``   ``reset`` answers ok but does not reboot (``reset=ok`` undoes)
``boot=never``     powered on, the node never gets to telnet or ssh
``boot=slow:S``    S seconds more before the node boots (``boot=ok`` undoes)
``telnet=hang``    port 23 accepts connections and never answers (``telnet=ok``)
``receiver=die:K`` ``udp-receiver`` on the node is killed after K bytes written
``disk=small:MiB`` the disk is that size: a write past its end fails with ENOSPC
``disk=noloop``    the disk is the file itself, bind-mounted, without partition devices (a machine
                   that gives no loop device); ``disk=ok`` undoes both
``ssh=never``      the installed OS boots but never serves ssh (``ssh=ok``)
``loss=P%``        P percent of the frames on the node's link are dropped
=================  ==========================================================

Boot-time knobs (boot, telnet, receiver, disk, ssh) apply from the
node's next boot; cmc, reset and loss apply at once.  A virtual machine
(VM tier) has the knobs of its CMC, its link and its disk (cmc, reset,
loss; disk from its next power-on), not those of the emulated firmware.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from imaging.errors import UsageError

KNOBS = ("cmc", "reset", "boot", "telnet", "receiver", "disk", "ssh", "loss")
VM_KNOBS = ("cmc", "reset", "disk", "loss")
_SIZE = re.compile(r"^(\d+)$")


@dataclass(frozen=True)
class Faults:
    """The faults one node currently has; the default is a healthy node."""

    cmc: str = "ok"  # ok, blackhole or garbage
    cmc_delay_ms: float = 0.0
    reset_ignore: bool = False
    boot_never: bool = False
    boot_slow: float = 0.0
    telnet_hang: bool = False
    receiver_die: int | None = None  # bytes
    disk_small_mib: int | None = None
    disk_noloop: bool = False
    ssh_never: bool = False
    loss_percent: float = 0.0

    def describe(self) -> list[str]:
        """The active faults as specs (``cmc=blackhole`` …); empty when healthy."""
        out = []
        if self.cmc != "ok":
            out.append(f"cmc={self.cmc}")
        if self.cmc_delay_ms:
            out.append(f"cmc=slow:{self.cmc_delay_ms:g}")
        if self.reset_ignore:
            out.append("reset=ignore")
        if self.boot_never:
            out.append("boot=never")
        if self.boot_slow:
            out.append(f"boot=slow:{self.boot_slow:g}")
        if self.telnet_hang:
            out.append("telnet=hang")
        if self.receiver_die is not None:
            out.append(f"receiver=die:{self.receiver_die}")
        if self.disk_small_mib is not None:
            out.append(f"disk=small:{self.disk_small_mib}")
        if self.disk_noloop:
            out.append("disk=noloop")
        if self.ssh_never:
            out.append("ssh=never")
        if self.loss_percent:
            out.append(f"loss={self.loss_percent:g}%")
        return out

    def disk_mib(self, normal: int) -> int:
        """The disk's size in MiB: ``normal``, or less with a ``disk=small`` fault."""
        return min(normal, self.disk_small_mib or normal)

    @classmethod
    def from_specs(cls, specs: list[str]) -> Faults:
        """A healthy node's faults with ``specs`` applied in order; UsageError if one is invalid."""
        faults = cls()
        for spec in specs:
            faults = faults.apply(spec)
        return faults

    def apply(self, spec: str) -> Faults:
        """A copy with ``spec`` applied (``clear`` gives a healthy node); UsageError if invalid."""
        spec = spec.strip()
        if spec == "clear":
            return Faults()
        knob, _, value = spec.partition("=")
        changes = _changes(knob, value, spec)
        return dataclasses.replace(self, **changes)


def _changes(knob: str, value: str, spec: str) -> dict[str, Any]:
    """The fields a ``knob=value`` spec sets (values of the fields' own types, for :func:`dataclasses.replace`)."""
    kind, _, arg = value.partition(":")
    if knob == "cmc" and value in ("ok", "blackhole", "garbage"):
        return {"cmc": value} | ({"cmc_delay_ms": 0.0} if value == "ok" else {})
    if knob == "cmc" and kind == "slow":
        return {"cmc_delay_ms": _number(arg, spec)}
    if knob == "reset" and value in ("ok", "ignore"):
        return {"reset_ignore": value == "ignore"}
    if knob == "boot" and value in ("ok", "never"):
        return {"boot_never": value == "never", "boot_slow": 0.0}
    if knob == "boot" and kind == "slow":
        return {"boot_slow": _number(arg, spec)}
    if knob == "telnet" and value in ("ok", "hang"):
        return {"telnet_hang": value == "hang"}
    if knob == "receiver" and value == "ok":
        return {"receiver_die": None}
    if knob == "receiver" and kind == "die":
        return {"receiver_die": int(_number(arg, spec))}
    if knob == "disk" and value == "ok":
        return {"disk_small_mib": None, "disk_noloop": False}
    if knob == "disk" and value == "noloop":
        return {"disk_noloop": True}
    if knob == "disk" and kind == "small" and _SIZE.match(arg) and int(arg) > 0:
        return {"disk_small_mib": int(arg)}
    if knob == "ssh" and value in ("ok", "never"):
        return {"ssh_never": value == "never"}
    if knob == "loss":
        percent = _number(value.removesuffix("%"), spec)
        if percent > 100:
            raise UsageError(f"fault {spec!r}: loss is a percentage, 0 to 100")
        return {"loss_percent": percent}
    raise UsageError(f"unknown fault {spec!r}; knobs: cmc=blackhole|garbage|slow:MS|ok, reset=ignore|ok,"
                     " boot=never|slow:S|ok, telnet=hang|ok, receiver=die:K|ok, disk=small:MiB|noloop|ok,"
                     " ssh=never|ok, loss=P%, or clear")


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise UsageError(f"fault {spec!r}: {text!r} is not a non-negative number")
    return value


def check_vm_knob(spec: str) -> None:
    """UsageError when ``spec`` is a knob a virtual machine does not have."""
    knob = spec.strip().partition("=")[0]
    if spec.strip() != "clear" and knob not in VM_KNOBS:
        raise UsageError(f"fault {spec!r}: a VM has the knobs {', '.join(VM_KNOBS)} and clear"
                         f" ({knob} belongs to the emulated nodes' firmware)")
    if spec.strip() == "disk=noloop":
        raise UsageError(f"fault {spec!r}: a VM's disk is qemu's, never a loop device (disk=small:MiB|ok)")


def parse_assignment(text: str) -> tuple[str, str]:
    """Split ``fit03:cmc=blackhole`` into the node and the spec; UsageError if malformed."""
    node, sep, spec = text.partition(":")
    if not sep or not node or not spec:
        raise UsageError(f"fault {text!r} must be NODE:KNOB=VALUE, e.g. fit03:cmc=blackhole")
    Faults().apply(spec)  # validate now
    return node, spec
