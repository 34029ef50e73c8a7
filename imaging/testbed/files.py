"""The files that point the product at a testbed: ``imaging.conf`` and the
R2lab-format ``inventory.json``."""

from __future__ import annotations

import json

from . import pxe
from .layout import Layout
from .leases import LEASES_PORT

DEFAULT_IMAGE = "default"


def config_text(layout: Layout, disk_path: str, leases: bool = False) -> str:
    """The product's config file for ``layout`` (keys fixed by the product); with
    ``leases``, the product checks the testbed's leases API."""
    d = layout
    return f"""\
# written by imaging-testbed up: the emulated testbed in {d.directory}
[testbed]
inventory = {d.inventory_path}
all_scope = 1-{d.count}
regularname = fit
rebootname = reboot

[nodes]
hard_drive = {disk_path}
root_partition = none
cmc_timeout = 2
idle_after_reset = 3
boot_timeout = 10
# what two cores sustain for dozens of emulated receivers (a real 1 GbE testbed takes 500)
bandwidth = 150

[pxelinux]
config_dir = {d.pxe_dir}
frisbee_image = {pxe.IMAGING_OS}

[images]
images_dir = {d.images_dir}
default_image = {DEFAULT_IMAGE}

[transport]
kind = udpcast
server_ip = {d.server_ip}

[udpcast]
# the control LAN carries jumbo frames: 8 KiB blocks mean a sixth of the packets
sender_options = --blocksize 8192
# the disks are plain files: no sync after each write (udp-receiver's default for files)
receiver_options = --nosync

[networking]
ssh_user = root
ssh_key = {d.client_key}
telnet_timeout = 1
# emulated nodes boot in about a second: look for them often
telnet_backoff = 0.25
ssh_backoff = 0.25
ssh_timeout = 2

[locks]
lock_dir = {d.locks_dir}

[logging]
transport_logs = {d.transport_logs_dir}

[leases]
backend = {"r2labapi" if leases else "none"}
url = http://{d.server_ip}:{LEASES_PORT}
"""


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


def write_product_files(layout: Layout, disk_path: str, leases: bool = False) -> None:
    """Write ``imaging.conf`` and ``inventory.json`` in the testbed's directory."""
    layout.inventory_path.write_text(json.dumps(inventory(layout), indent=1) + "\n")
    layout.config_path.write_text(config_text(layout, disk_path, leases))
