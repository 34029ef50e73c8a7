"""Where everything of one emulated testbed lives: files in its directory,
namespace names, addresses and MACs.

This module is the one place that names things; every other testbed module
asks a :class:`Layout` instead of building a path or an address itself.

A testbed has an *index* (0…49), unique among the testbeds of the machine;
it chooses the namespace names and the private subnets, so several testbeds
can run at once:

* control LAN ``10.<150+i>.0.0/16`` on the server's bridge; node *n* is
  ``10.<150+i>.<n // 256>.<n % 256>``, the server ``10.<150+i>.255.254``;
* management cards ``10.<200+i>.0.0/16`` on an interface of the server
  namespace, card *n* at the same offset;
* data network ``10.<100+i>.0.0/16`` (in the inventory only).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

MAX_TESTBEDS = 50
MAX_NODES = 4000
NS_PREFIX = "imtb"
CMC_INTERFACE = "cmc0"
BRIDGE = "br0"


@dataclass(frozen=True)
class NodeInfo:
    """One node's names and addresses, as the inventory describes it."""

    number: int
    name: str  # control hostname, e.g. fit03
    control_ip: str
    control_mac: str
    cmc_name: str
    cmc_ip: str
    cmc_mac: str
    data_name: str
    data_ip: str
    data_mac: str
    netns: str  # the node's network namespace
    veth: str  # bridge-side end of its link, in the server namespace

    @property
    def pxe_name(self) -> str:
        """The per-MAC pxelinux file name: ``01-`` and the MAC, lower-case, dashes."""
        return "01-" + self.control_mac.lower().replace(":", "-")


@dataclass(frozen=True)
class Layout:
    """The files, namespaces and addresses of the testbed in ``directory``."""

    directory: Path
    index: int
    count: int

    # --- files -----------------------------------------------------------
    @property
    def config_path(self) -> Path:
        """The product's config file pointing at this testbed."""
        return self.directory / "imaging.conf"

    @property
    def inventory_path(self) -> Path:
        """The JSON inventory of the nodes."""
        return self.directory / "inventory.json"

    @property
    def state_path(self) -> Path:
        """The testbed's own state (index, size, namespaces, options)."""
        return self.directory / "testbed.json"

    @property
    def leases_path(self) -> Path:
        """The leases the testbed's leases API serves, and its mode (kept across controller restarts)."""
        return self.directory / "leases.json"

    @property
    def tftp_dir(self) -> Path:
        """The TFTP root served by dnsmasq."""
        return self.directory / "tftp"

    @property
    def pxe_dir(self) -> Path:
        """pxelinux's config folder (the product's ``[pxelinux] config_dir``)."""
        return self.tftp_dir / "pxelinux.cfg"

    @property
    def images_dir(self) -> Path:
        """The image repository handed to the product."""
        return self.directory / "images"

    @property
    def disks_dir(self) -> Path:
        """The nodes' disks: one regular file each."""
        return self.directory / "disks"

    @property
    def keys_dir(self) -> Path:
        """ssh keys: the nodes' host key and the client key they accept."""
        return self.directory / "keys"

    @property
    def client_key(self) -> Path:
        """The private key the product uses to ssh into the nodes as root."""
        return self.keys_dir / "id_ed25519"

    @property
    def host_key(self) -> Path:
        """The dropbear host key every node serves."""
        return self.keys_dir / "dropbear_ed25519_host_key"

    @property
    def rsa_host_key(self) -> Path:
        """The nodes' RSA host key: dropbear offers RSA host key algorithms even
        without one, and aborts when a client (asyncssh's default order) picks them."""
        return self.keys_dir / "dropbear_rsa_host_key"

    @property
    def bin_dir(self) -> Path:
        """Scripts run inside the nodes (firmware, DHCP hook, wrappers)."""
        return self.directory / "bin"

    @property
    def run_dir(self) -> Path:
        """PID files of every process the testbed started, and the control socket."""
        return self.directory / "run"

    @property
    def control_socket(self) -> Path:
        """The controller's control channel (HTTP on a unix socket)."""
        return self.run_dir / "control.sock"

    @property
    def logs_dir(self) -> Path:
        """Logs: controller, dnsmasq, one console log per node."""
        return self.directory / "logs"

    @property
    def transport_logs_dir(self) -> Path:
        """The product's per-node transport logs."""
        return self.directory / "transport-logs"

    @property
    def locks_dir(self) -> Path:
        """The product's lock folder."""
        return self.directory / "locks"

    @property
    def nodes_dir(self) -> Path:
        """Per-node scratch folders (mount points of the nodes' private tmpfs)."""
        return self.directory / "nodes"

    @property
    def cache_dir(self) -> Path:
        """Cached test images."""
        return self.directory / "cache"

    def disk_path(self, node: NodeInfo) -> Path:
        """The file that is ``node``'s disk."""
        return self.disks_dir / f"{node.name}.img"

    def console_log(self, node: NodeInfo) -> Path:
        """What ``node``'s firmware and servers print."""
        return self.logs_dir / f"{node.name}.console.log"

    def qmp_socket(self, node: NodeInfo) -> Path:
        """The QMP socket of ``node``'s qemu (VM tier)."""
        return self.run_dir / f"{node.name}.qmp"

    @property
    def vm_cache_dir(self) -> Path:
        """The VM tier's builds: unpacked kernel, initramfs files, boot images."""
        return self.cache_dir / "vm"

    def pid_file(self, name: str) -> Path:
        """The PID file of the tracked process called ``name``."""
        return self.run_dir / f"{name}.pid"

    # --- namespaces ------------------------------------------------------
    @property
    def name(self) -> str:
        """The testbed's name on this machine (``imtb3``), the prefix of its namespaces."""
        return f"{NS_PREFIX}{self.index}"

    @property
    def server_ns(self) -> str:
        """The server's network namespace: bridge, CMCs, dnsmasq, the product."""
        return f"{self.name}-srv"

    def namespaces(self, with_nodes: bool = True) -> list[str]:
        """Every namespace of this testbed, the server's first."""
        return [self.server_ns] + ([n.netns for n in self.nodes()] if with_nodes else [])

    # --- addresses -------------------------------------------------------
    def _address(self, second: int, offset: int) -> str:
        return str(ipaddress.IPv4Address(f"10.{second}.0.0") + offset)

    @property
    def control_network(self) -> ipaddress.IPv4Network:
        """The control LAN."""
        return ipaddress.IPv4Network(f"10.{150 + self.index}.0.0/16")

    @property
    def cmc_network(self) -> ipaddress.IPv4Network:
        """The management cards' network."""
        return ipaddress.IPv4Network(f"10.{200 + self.index}.0.0/16")

    @property
    def server_ip(self) -> str:
        """The server's address on the control LAN."""
        return self._address(150 + self.index, 0xFFFE)

    @property
    def cmc_server_ip(self) -> str:
        """The server's own address on the management cards' network."""
        return self._address(200 + self.index, 0xFFFE)

    @property
    def width(self) -> int:
        """Digits in node names: fit01 … fit37, fit001 … fit400."""
        return max(2, len(str(self.count)))

    def node(self, number: int) -> NodeInfo:
        """Node ``number`` (1-based)."""
        if not 1 <= number <= self.count:
            raise ValueError(f"no node {number} in a testbed of {self.count}")
        digits = f"{number:0{self.width}d}"
        mac = f"02:{0x69:02x}:{self.index:02x}:{{role}}:{number >> 8:02x}:{number & 0xFF:02x}"
        return NodeInfo(
            number=number,
            name=f"fit{digits}",
            control_ip=self._address(150 + self.index, number),
            control_mac=mac.format(role="01"),
            cmc_name=f"reboot{digits}",
            cmc_ip=self._address(200 + self.index, number),
            cmc_mac=mac.format(role="02"),
            data_name=f"data{digits}",
            data_ip=self._address(100 + self.index, number),
            data_mac=mac.format(role="03"),
            netns=f"{self.name}-{number}",
            veth=f"v{digits}",
        )

    def nodes(self) -> list[NodeInfo]:
        """Every node, in number order."""
        return [self.node(n) for n in range(1, self.count + 1)]

    def node_by_name(self, name: str) -> NodeInfo:
        """A node from its hostname (fit03, reboot03) or number (3); ValueError if none."""
        digits = name.removeprefix("fit").removeprefix("reboot")
        if not digits.isdigit():
            raise ValueError(f"{name!r} is not a node name (fitNN, rebootNN or a number)")
        return self.node(int(digits))
