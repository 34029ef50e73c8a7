"""The testbed's network: namespaces, the control LAN bridge, the CMC
addresses, dnsmasq (DHCP + TFTP) and the fault rules.

Everything lives in network namespaces this module creates; nothing touches
a real interface.  The server namespace holds:

* ``br0``, the control LAN bridge (multicast snooping and STP off), with the
  server's address and a broadcast address;
* ``cmc0``, a port-less bridge standing in for a dummy interface (this
  kernel has no dummy driver), holding every CMC address;
* one veth per node, whose peer is the node's ``eth0`` (with the inventory
  MAC) inside the node's own namespace; or, in the VM tier, one tap per
  node, opened by its qemu (the control LAN then has a ULA prefix that
  dnsmasq advertises: iPXE waits ~16 s for a router advertisement without);
* nftables tables for the fault knobs: ``inet imaging_faults`` (black-holed
  CMCs: a DROP, not a closed port) and ``bridge imaging_loss`` (random frame
  loss on a node's link; this kernel has no netem).
"""

from __future__ import annotations

import logging

from imaging.errors import ImagingError

from .bmc import IPMI_PORT
from .faults import Faults
from .layout import BRIDGE, CMC_INTERFACE, MAX_TESTBEDS, NS_PREFIX, Layout, NodeInfo
from .procs import run
from .programs import DNSMASQ, IP, NFT
from .pxe import GRUB_NET_IMAGE
from .redfish import PORT as REDFISH_PORT

# jumbo frames on the control LAN: a sixth of the packets for the same bytes,
# which is what bounds multicast to dozens of emulated receivers on two cores
MTU = 9000
VM_MTU = 1500  # what a VM's NIC uses out of the box
LINKS = ("veth", "tap", "none")  # a node's link: emulated node, VM, none (CMCs only)

log = logging.getLogger(__name__)


async def existing_namespaces() -> set[str]:
    """Names of the network namespaces that exist now."""
    out = await run(IP, "netns", "list", check=False)
    return {line.split()[0] for line in out.splitlines() if line.strip()}


async def claim_index() -> int:
    """Create the server namespace of the lowest free testbed index; return the index.

    ``ip netns add`` fails when the name exists, which makes the claim safe
    against a concurrent ``up``.
    """
    taken = await existing_namespaces()
    for index in range(MAX_TESTBEDS):
        name = f"{NS_PREFIX}{index}-srv"
        if name in taken:
            continue
        try:
            await run(IP, "netns", "add", name)
        except ImagingError:
            continue  # another testbed claimed it meanwhile
        return index
    raise ImagingError(f"all {MAX_TESTBEDS} testbed slots are taken; stop one with imaging-testbed down")


def ula_prefix(layout: Layout) -> str:
    """The control LAN's IPv6 prefix (VM tier only), e.g. ``fd69:3::``."""
    return f"fd69:{layout.index}::"


async def create(layout: Layout, links: str) -> None:
    """Build the server namespace (already claimed) and the nodes' links:
    ``veth`` (a namespace per node), ``tap`` (VMs) or ``none``."""
    ns = layout.server_ns
    net = layout.control_network
    mtu = VM_MTU if links == "tap" else MTU
    server = [
        "link set lo up",
        f"link add {BRIDGE} mtu {mtu} type bridge mcast_snooping 0 stp_state 0 forward_delay 0",
        f"addr add {layout.server_ip}/{net.prefixlen} brd + dev {BRIDGE}",
        f"link set {BRIDGE} up",
        f"route add 224.0.0.0/4 dev {BRIDGE}",  # multicast goes to the control LAN
        f"link add {CMC_INTERFACE} type bridge",
        f"link set {CMC_INTERFACE} up",
        # the server's own address there first: the source of its requests to the cards
        f"addr add {layout.cmc_server_ip}/{layout.cmc_network.prefixlen} dev {CMC_INTERFACE}",
    ]
    cmc_prefix = layout.cmc_network.prefixlen
    server += [f"addr add {node.cmc_ip}/{cmc_prefix} dev {CMC_INTERFACE}" for node in layout.nodes()]
    if links == "veth":
        nodes = layout.nodes()
        await run(IP, "-batch", "-", input="".join(f"netns add {n.netns}\n" for n in nodes))
        for node in nodes:
            server += [
                f"link add {node.veth} mtu {MTU} master {BRIDGE} type veth peer name eth0"
                f" netns {node.netns} address {node.control_mac} mtu {MTU}",
                f"link set {node.veth} up",
            ]
    elif links == "tap":
        server.insert(3, f"addr add {ula_prefix(layout)}1/64 dev {BRIDGE} nodad")
        for node in layout.nodes():
            server += [f"tuntap add dev {node.veth} mode tap", f"link set {node.veth} master {BRIDGE} up"]
    await run(IP, "-n", ns, "-batch", "-", input="\n".join(server) + "\n")
    await apply_faults(layout, {})


async def destroy(namespaces: list[str]) -> None:
    """Delete the given namespaces (their interfaces go with them); missing ones are skipped."""
    present = await existing_namespaces()
    gone = [ns for ns in namespaces if ns in present]
    if gone:
        await run(IP, "-force", "-batch", "-", input="".join(f"netns del {ns}\n" for ns in gone),
                  check=False)


def dnsmasq_command(layout: Layout, router_adverts: bool = False) -> list[str]:
    """The dnsmasq command line: DHCP with a fixed address per MAC, and TFTP;
    no DNS, bound to the bridge only, with its own pid, lease and log files;
    it keeps root so that it can read a TFTP tree in a private (0700) folder.
    With ``router_adverts`` (VM tier) it also advertises the ULA prefix."""
    net = layout.control_network
    argv = [
        DNSMASQ, "--conf-file=/dev/null", "--keep-in-foreground", "--port=0",
        f"--interface={BRIDGE}", "--bind-interfaces",
        f"--dhcp-range={net.network_address},static,{net.netmask},infinite",
        "--dhcp-boot=pxelinux.0", "--dhcp-authoritative",
        # an x86-64 UEFI client (option 93: 7, or 9 as some firmware says) gets GRUB's network image
        "--dhcp-match=set:efi-x86_64,option:client-arch,7", "--dhcp-match=set:efi-x86_64,option:client-arch,9",
        f"--dhcp-boot=tag:efi-x86_64,{GRUB_NET_IMAGE}",
        # a PXE client's offer says PXEClient (option 60): iPXE then takes it at once instead of waiting
        # seconds for a ProxyDHCP server's offer that no one here sends
        "--dhcp-vendorclass=set:pxe,PXEClient", "--dhcp-option-force=tag:pxe,60,PXEClient",
        "--enable-tftp", f"--tftp-root={layout.tftp_dir}",
        f"--pid-file={layout.run_dir / 'dnsmasq.pidfile'}", "--user=root",
        f"--dhcp-leasefile={layout.run_dir / 'dnsmasq.leases'}",
        f"--log-facility={layout.logs_dir / 'dnsmasq.log'}",
        "--log-dhcp",
    ]
    if router_adverts:
        argv += ["--enable-ra", f"--dhcp-range={ula_prefix(layout)},ra-only,64"]
    argv += [f"--dhcp-host={node.control_mac},{node.control_ip},{node.name}" for node in layout.nodes()]
    return argv


def fault_rules(layout: Layout, faults: dict[str, Faults]) -> str:
    """The nftables script that puts the network faults of ``faults`` (by node
    name) in place, replacing the previous ones in one transaction."""
    nodes = {n.name: n for n in layout.nodes()} if faults else {}
    blackholed = sorted(nodes[name].cmc_ip for name, f in faults.items() if f.cmc == "blackhole")
    lossy: list[tuple[NodeInfo, str]] = [(nodes[name], _loss_match(f.loss_percent))
                                         for name, f in faults.items() if f.loss_percent]
    lines = [
        "table inet imaging_faults {}", "delete table inet imaging_faults",
        "table bridge imaging_loss {}", "delete table bridge imaging_loss",
        "table inet imaging_faults {",
        "  set blackholed { type ipv4_addr; }",
        "  chain input { type filter hook input priority 0; ip daddr @blackholed tcp dport 80 drop;"
        f" ip daddr @blackholed udp dport {IPMI_PORT} drop; ip daddr @blackholed tcp dport {REDFISH_PORT} drop; }}",
        "}",
        "table bridge imaging_loss {",
        "  chain pre { type filter hook prerouting priority 0;",
        *[f"    iifname {node.veth} {match}drop" for node, match in lossy],
        "  }",
        "  chain post { type filter hook postrouting priority 0;",
        *[f"    oifname {node.veth} {match}drop" for node, match in lossy],
        "  }",
        "}",
    ]
    if blackholed:
        lines.append(f"add element inet imaging_faults blackholed {{ {', '.join(blackholed)} }}")
    return "\n".join(lines) + "\n"


def _loss_match(percent: float) -> str:
    """The nftables match selecting ``percent`` % of the frames (to the per mille)."""
    per_mille = round(percent * 10)
    return "" if per_mille >= 1000 else f"numgen random mod 1000 < {per_mille} "


async def apply_faults(layout: Layout, faults: dict[str, Faults]) -> None:
    """Install the network fault rules for ``faults`` in the server namespace."""
    await run(IP, "netns", "exec", layout.server_ns, NFT, "-f", "-", input=fault_rules(layout, faults))
