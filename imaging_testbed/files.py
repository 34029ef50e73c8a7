"""The files that point the product at a testbed: ``imaging.conf`` and the
R2lab-format ``inventory.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import bmc, frisbee, pxe, redfish
from .layout import Layout
from .leases import LEASES_PORT

DEFAULT_IMAGE = "default"


@dataclass(frozen=True)
class Profile:
    """The timings and transport options that suit one tier's nodes."""

    kind: str  # what the config's first line calls the testbed
    boot_timeout: float  # seconds from reset to telnet
    cmc_timeout: float  # seconds for a CMC to answer
    backoff: float  # seconds between telnet/ssh attempts
    ssh_timeout: float
    stall_timeout: float  # seconds a receiver may go without progress
    bandwidth: int  # Mibit/s
    bandwidth_note: str
    udpcast: str  # the [udpcast] options, with their comments
    own_programs: bool = False  # the nodes run programs of their own (a VM's initramfs), not the host's


EMULATED = Profile(
    kind="the emulated testbed", boot_timeout=10, cmc_timeout=2, backoff=0.25, ssh_timeout=2, stall_timeout=10,
    bandwidth=150,
    bandwidth_note="what two cores sustain for dozens of emulated receivers (a real 1 GbE testbed takes 500)",
    udpcast="""\
# the control LAN carries jumbo frames: 8 KiB blocks mean a sixth of the packets; slices of
# 64 blocks (512 KiB, not udpcast's 8 MiB): every receiver writes and acknowledges a slice while
# the next one flows, instead of dozens of receivers flushing 8 MiB each at once on two cores
sender_options = --blocksize 8192 --max-slice-size 64
# the disks are plain files: no sync after each write (udp-receiver's default for files)
receiver_options = --nosync""")


def vm_profile(accel: str) -> Profile:
    """The VM tier's profile: timeouts scaled for TCG (an emulated CPU boots in
    tens of seconds, three machines together on two cores take twice that)."""
    slow = accel != "kvm"
    return Profile(
        kind=f"the VM testbed ({accel})", boot_timeout=150 if slow else 60, backoff=1, ssh_timeout=10 if slow else 5,
        stall_timeout=30 if slow else 15,
        # a VM's CMC answers once qemu did it over QMP (a reset that QMP misses power-cycles qemu: seconds)
        cmc_timeout=15,
        bandwidth=200, bandwidth_note="virtio-net guests; udpcast's flow control paces slower receivers",
        own_programs=True,
        udpcast="""\
# the VMs' disks are block devices: udp-receiver's defaults, as on hardware
sender_options =
receiver_options =""")


def frisbee_section(programs: Path | None, own_programs: bool = False) -> str:
    """The ``[frisbee]`` keys naming Emulab's programs in ``programs`` (installed or built by ``make
    frisbee``); a comment when there are none (the product's defaults, found on the PATH).  With
    ``own_programs`` the nodes' client and imagezip are their own, on their PATH (a VM's imaging OS)."""
    if programs is None:
        return "# no frisbee programs here: `make frisbee` builds them (then bring the testbed up again)"
    server = [("server", programs / frisbee.SERVER), ("imagedump", programs / frisbee.IMAGEDUMP)]
    node = [("client", frisbee.CLIENT), ("imagezip", frisbee.IMAGEZIP)] if own_programs else [
        ("client", programs / frisbee.CLIENT), ("imagezip", programs / frisbee.IMAGEZIP)]
    return "\n".join(f"{key} = {value}" for key, value in [*server, *node])


def config_text(layout: Layout, disk_path: str, leases: bool = False, profile: Profile = EMULATED,
                frisbee_programs: Path | None = None, power: str = "cmc", boot: str = "pxelinux") -> str:
    """The product's config file for ``layout`` (keys fixed by the product); with
    ``leases``, the product checks the testbed's leases API; ``frisbee_programs``: the folder
    of Emulab's programs (the nodes see the host's files: the same paths serve them); ``power``:
    the product's power driver (``ipmi``: the testbed's simulated BMCs, :mod:`.bmc`); ``boot``: the nodes'
    boot loader (``grub``: they read GRUB's per-MAC configs)."""
    d, p = layout, profile
    return f"""\
# written by imaging-testbed up: {p.kind} in {d.directory}
[testbed]
inventory = {d.inventory_path}
all_scope = 1-{d.count}
regularname = fit
rebootname = reboot

[nodes]
hard_drive = {disk_path}
root_partition = none
power = {power}
boot = {boot}
cmc_timeout = {p.cmc_timeout:g}
idle_after_reset = 3
boot_timeout = {p.boot_timeout:g}
# a receiver that makes no progress (nothing received, nothing written) for that long fails
stall_timeout = {p.stall_timeout:g}
# {p.bandwidth_note}
bandwidth = {p.bandwidth}

[power]
credentials = {d.directory / bmc.CREDENTIALS}
redfish_url = http://{{ip}}:{redfish.PORT}
{redfish_systems(layout)}

[pxelinux]
config_dir = {d.pxe_dir}
frisbee_image = {pxe.IMAGING_OS}

[grub]
config_dir = {pxe.grub_dir(d)}
imaging_config = {pxe.GRUB_IMAGING_OS}

[images]
images_dir = {d.images_dir}
default_image = {DEFAULT_IMAGE}

[transport]
kind = udpcast
server_ip = {d.server_ip}

[udpcast]
{p.udpcast}

[frisbee]
{frisbee_section(frisbee_programs, p.own_programs)}

[networking]
ssh_user = root
ssh_key = {d.client_key}
telnet_timeout = 1
telnet_backoff = {p.backoff:g}
ssh_backoff = {p.backoff:g}
ssh_timeout = {p.ssh_timeout:g}

[locks]
lock_dir = {d.locks_dir}

[logging]
transport_logs = {d.transport_logs_dir}

[leases]
backend = {"r2labapi" if leases else "none"}
url = http://{d.server_ip}:{LEASES_PORT}
"""


def redfish_systems(layout: Layout) -> str:
    """The ``redfish_system.<host>`` lines naming each node's system on the testbed's Redfish emulator."""
    return "\n".join(f"redfish_system.{node.name} = {redfish.system_id(node.name)}" for node in layout.nodes())


def inventory(layout: Layout) -> list[dict[str, dict[str, str]]]:
    """The inventory: one entry per node, R2lab's format."""
    return [
        {
            "cmc": {"hostname": n.cmc_name, "ip": n.cmc_ip, "mac": n.cmc_mac},
            "control": {"hostname": n.name, "ip": n.control_ip, "mac": n.control_mac},
            "data": {"hostname": n.data_name, "ip": n.data_ip, "mac": n.data_mac},
        }
        for n in layout.nodes()
    ]


def write_product_files(layout: Layout, disk_path: str, leases: bool = False, profile: Profile | None = None,
                        power: str = "cmc", boot: str = "pxelinux") -> None:
    """Write ``imaging.conf`` and ``inventory.json`` in the testbed's directory
    (``profile``: the nodes' timings, the emulated nodes' by default; ``power``: the product's driver)."""
    layout.inventory_path.write_text(json.dumps(inventory(layout), indent=1) + "\n")
    layout.config_path.write_text(config_text(layout, disk_path, leases, profile or EMULATED, frisbee.locate(),
                                              power, boot))
