"""The emulated nodes' BMCs spoken to by IPMI: one OpenIPMI ``ipmi_sim`` per node (``up --power ipmi``).

Each simulator listens on its node's management address (the inventory's ``cmc`` one, port 623, in the
server namespace) with one admin login, and hands every chassis action to a ``chassis_control`` script:
``get power`` asks the node's card ``GET /status``, ``set power 1|0`` sends ``/on`` or ``/off``, ``set
reset 1`` sends ``/reset``; ``set boot pxe`` is remembered (``get boot`` answers it) but changes nothing:
the testbed's nodes boot from the network first and follow their next-boot link.  Every ``set`` is
written, in order, to the BMC's ``chassis.log``.  The node's power state machine stays the one behind
its card, so faults (a reset ignored, a black-holed controller) hold for IPMI too.  The login's password
is drawn per testbed and written, readable by root only, in the testbed's credentials file, which its
config names.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from .layout import Layout, NodeInfo
from .programs import IPMI_SIM

POWER = ("cmc", "ipmi", "redfish")  # how the product may power a testbed's nodes (imaging-testbed up --power)
USER = "admin"
IPMI_PORT = 623
CREDENTIALS = "bmc-credentials"  # in the testbed's folder
FOLDER = "bmc"  # in the testbed's folder: the BMCs' configurations and state
CHASSIS = r"""#!/bin/sh
# chassis_control of __NODE__'s simulated BMC: power actions go to the node's card
card="http://__CMC__/"
log="__LOG__"  # every set, in order: what the BMC was asked
boot="__LOG__.boot"  # the boot device last set
ask() { curl -s -m 3 "$card$1"; }
device=$1; op=$2; shift 2
[ "$op" = set ] && echo "set $*" >> "$log"
case $op in
get)
    for parm in "$@"; do
        case $parm in
        power) case $(ask status) in on) echo "power:1" ;; off) echo "power:0" ;; *) echo "no answer"; exit 1 ;; esac ;;
        boot) asked=default; if [ -f "$boot" ]; then read -r asked < "$boot"; fi; echo "boot:$asked" ;;
        *) echo "unknown parameter $parm"; exit 1 ;;
        esac
    done ;;
set)
    while [ $# -ge 2 ]; do
        case $1=$2 in
        power=1) verb=on ;; power=0) verb=off ;; reset=1) verb=reset ;; reset=0) verb= ;;
        boot=*) verb=; echo "$2" > "$boot" ;;
        *) echo "cannot set $1 to $2"; exit 1 ;;
        esac
        if [ -n "$verb" ] && [ "$(ask $verb)" != ok ]; then echo "the card did not take $verb"; exit 1; fi
        shift 2
    done ;;
*) echo "unknown operation $op"; exit 1 ;;
esac
"""
# the emulator's commands: a BMC at IPMB address 0x20 (ipmi_sim starts with none)
COMMANDS = """mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
"""


@dataclass(frozen=True)
class Bmc:
    """The files of one node's simulated BMC."""

    folder: Path

    @property
    def lan_conf(self) -> Path:
        """ipmi_sim's configuration: the LAN channel, the login, the chassis_control script."""
        return self.folder / "lan.conf"

    @property
    def commands(self) -> Path:
        """The emulator commands run at start."""
        return self.folder / "bmc.emu"

    @property
    def chassis(self) -> Path:
        """The chassis_control script."""
        return self.folder / "chassis"

    @property
    def chassis_log(self) -> Path:
        """Every ``set`` the BMC handed its chassis_control script, one per line (``set boot pxe``)."""
        return self.folder / "chassis.log"

    @property
    def state(self) -> Path:
        """ipmi_sim's state folder."""
        return self.folder / "state"

    def argv(self) -> list[str]:
        """The simulator's command line (run it in the server namespace)."""
        return [IPMI_SIM, "-c", str(self.lan_conf), "-f", str(self.commands), "-s", str(self.state), "-n"]


def lan_conf(name: str, address: str, port: int, chassis: Path, password: str) -> str:
    """ipmi_sim's configuration for one BMC listening on ``address``:``port`` with the admin login."""
    return f"""name "{name}"
set_working_mc 0x20
  startlan 1
    addr {address} {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid {secrets.token_hex(16)}
  endlan
  chassis_control "{chassis} 0x20"
  user 2 true "{USER}" "{password}" admin 10 none md2 md5 straight
"""


def write_bmc(folder: Path, node_name: str, address: str, port: int, card: str, password: str) -> Bmc:
    """Write the files of a simulated BMC in ``folder``: on ``address``:``port``, its chassis actions sent
    to the card at ``card`` (``host[:port]``); readable by root only (they hold the password)."""
    bmc = Bmc(folder)
    bmc.state.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    bmc.chassis.write_text(CHASSIS.replace("__NODE__", node_name).replace("__CMC__", card)
                           .replace("__LOG__", str(bmc.chassis_log)))
    bmc.chassis.chmod(0o700)
    bmc.commands.write_text(COMMANDS)
    bmc.lan_conf.write_text(lan_conf(node_name, address, port, bmc.chassis, password))
    bmc.lan_conf.chmod(0o600)
    return bmc


def credentials_text(password: str) -> str:
    """The product's credentials file for the testbed's BMCs (one login for all)."""
    return f"[default]\nuser = {USER}\npassword = {password}\n"


def write_credentials(layout: Layout) -> str:
    """Draw the testbed's BMC password and write the product's credentials file (root only); the password."""
    password = secrets.token_urlsafe(12)
    path = layout.directory / CREDENTIALS
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(credentials_text(password))
    return password


def write_bmcs(layout: Layout, password: str) -> list[tuple[NodeInfo, Bmc]]:
    """A simulated IPMI BMC per node of ``layout`` (under ``bmc/`` in its folder) with the login of
    ``password``; the BMCs."""
    return [(node, write_bmc(layout.directory / FOLDER / node.name, node.name, node.cmc_ip, IPMI_PORT,
                             node.cmc_ip, password)) for node in layout.nodes()]
