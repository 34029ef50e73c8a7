"""Every external program the testbed runs, in one list: :data:`PROGRAMS`.

The testbed's own code runs some (namespaces, DHCP and TFTP, keys, test
images, the VM builds, qemu), most of them in a namespace through ``ip netns
exec``; the emulated nodes' firmware runs others, as does their imaging OS
(busybox ``telnetd`` with the host's programs) and their installed OS
(``dropbear``); the VMs' initramfs copy the host's programs in; and the
product, run against a testbed, runs ``udp-sender`` on its server and
``udp-receiver``, ``zstd``, ``nc``, ``blockdev``, ``stat`` on its nodes.

The code runs a program through its constant here (``run(IP, "netns",
"list")``); the node scripts name theirs in their shell text and the list
names them too.  A program the testbed starts to use is added here, with
the Debian package that ships it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from imaging.errors import UsageError

# sbin folders too: mkfs.vfat, depmod and dnsmasq live there, and a user's PATH may lack them
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Program:
    """What the testbed needs of one program."""

    package: str  # the Debian package that ships it
    purpose: str  # what the testbed runs it for, and where
    vm: bool = False  # only the VM tier needs it


# the programs the testbed's Python code runs, by the name it runs them by
IP = "ip"
NFT = "nft"
DNSMASQ = "dnsmasq"
UNSHARE = "unshare"
SH = "sh"
BUSYBOX = "busybox"
DROPBEAR = "dropbear"
DROPBEARKEY = "dropbearkey"
SSH_KEYGEN = "ssh-keygen"
SSH = "ssh"
MKFS_VFAT = "mkfs.vfat"
MMD = "mmd"
MCOPY = "mcopy"
MTYPE = "mtype"
MDIR = "mdir"
ZSTD = "zstd"
TAIL = "tail"
UDP_SENDER = "udp-sender"
UDP_RECEIVER = "udp-receiver"
NC = "nc"
BLOCKDEV = "blockdev"
QEMU = "qemu-system-x86_64"
DPKG_DEB = "dpkg-deb"
DEPMOD = "depmod"
MODPROBE = "modprobe"
LDD = "ldd"
DASH = "dash"
NC_OPENBSD = "nc.openbsd"
SYSLINUX = "syslinux"
GRUB_MKIMAGE = "grub-mkimage"
SFDISK = "sfdisk"
BLKID = "blkid"
MKSWAP = "mkswap"
MKFS_EXT4 = "mkfs.ext4"
DEBUGFS = "debugfs"
E2FSCK = "e2fsck"
FSCK_FAT = "fsck.fat"
MDEL = "mdel"
DD = "dd"
PARTCLONE_EXT4 = "partclone.ext4"
PARTCLONE_VFAT = "partclone.vfat"
PARTCLONE_DD = "partclone.dd"
IPMI_SIM = "ipmi_sim"
SS = "ss"
CURL = "curl"

_FIRMWARE = "the emulated nodes' firmware (setting up a node's private world, its boot choice)"

PROGRAMS: dict[str, Program] = {
    # --- the host side: network, DHCP/TFTP, keys, images ------------------------------------
    IP: Program("iproute2", "namespaces, the control LAN's bridge, veths and taps; `ip netns exec` runs"
                            " everything else in a namespace; the nodes' firmware and DHCP hook"),
    NFT: Program("nftables", "the fault rules (black-holed CMCs, frame loss) and the leases API's black hole,"
                             " in the server namespace"),
    DNSMASQ: Program("dnsmasq-base", "DHCP and TFTP on the control LAN, in the server namespace"),
    UNSHARE: Program("util-linux", "an emulated node's private mount, UTS and PID namespaces"),
    DROPBEARKEY: Program("dropbear-bin", "the nodes' ssh host keys"),
    SSH_KEYGEN: Program("openssh-client", "the key the product logs in to the nodes with"),
    SSH: Program("openssh-client", "the VM demo asks each machine which image it runs"),
    MKFS_VFAT: Program("dosfstools", "the FAT of the test images and disks, and of the VMs' boot images"),
    MMD: Program("mtools", "a folder in a test image (/etc)"),
    MCOPY: Program("mtools", "the identity file into a test image; the files of a VM boot image"),
    MTYPE: Program("mtools", "reading a test image's identity (the host, and an emulated node's installed OS)"),
    ZSTD: Program("zstd", "compressed test images; the VMs' initramfs; on the nodes, the product's"
                          " decompression (udp-receiver --pipe) and save pipeline"),
    TAIL: Program("coreutils", "imaging-testbed console -f"),
    # --- the emulated nodes: firmware, imaging OS, installed OS ------------------------------
    SH: Program("dash", "runs the emulated nodes' firmware; the shell of their telnet and ssh sessions"),
    BUSYBOX: Program("busybox-static", "the nodes' mounts, DHCP client (udhcpc), TFTP client and telnetd"
                                       " (the imaging OS); the VMs' initramfs userland"),
    DROPBEAR: Program("dropbear-bin", "the ssh server of the nodes' installed OS (emulated nodes and VMs)"),
    UDP_RECEIVER: Program("udpcast", "the imaging OS's multicast receiver (the product runs it over telnet;"
                                     " the receiver=die fault wraps it)"),
    NC: Program("netcat-openbsd", "the imaging OS's netcat (the product's save pipeline); the silent port 23"
                                  " of the telnet=hang fault"),
    BLOCKDEV: Program("util-linux", "the product asks the imaging OS for its disk's size (blockdev, else stat)"),
    "stat": Program("coreutils", "the product's disk size on an emulated node (a file); " + _FIRMWARE),
    **{name: Program("coreutils", _FIRMWARE) for name in (
        "basename", "cat", "chmod", "cp", "dirname", "env", "head", "ln", "mkdir", "mknod", "sleep", "touch",
        "tr")},
    "grep": Program("grep", _FIRMWARE),
    "sed": Program("sed", _FIRMWARE + "; the receiver=die fault's wrapper"),
    "hostname": Program("hostname", _FIRMWARE),
    SFDISK: Program("fdisk", "the partition tables of the test disks; on the nodes, the product reads and"
                             " restores a disk's table"),
    BLKID: Program("util-linux", "on the nodes, the product asks which file system each partition holds"),
    MKSWAP: Program("util-linux", "the swap partition of the test disks; on the nodes, the product recreates"
                                  " a swap partition from its UUID and label"),
    MKFS_EXT4: Program("e2fsprogs", "the ext4 partition of the test disks, with its files"),
    DEBUGFS: Program("e2fsprogs", "files written then deleted on a test disk's ext4 (dirty free space); reading"
                                  " its files back"),
    E2FSCK: Program("e2fsprogs", "checks a restored ext4 partition"),
    FSCK_FAT: Program("dosfstools", "checks a restored FAT partition"),
    MDEL: Program("mtools", "files written then deleted on a test disk's FAT partition"),
    DD: Program("coreutils", "on the nodes, the product reads and writes the bytes before the first partition"),
    PARTCLONE_EXT4: Program("partclone", "on the nodes, the product saves and restores ext2/3/4 partitions"),
    PARTCLONE_VFAT: Program("partclone", "on the nodes, the product saves and restores FAT partitions"),
    PARTCLONE_DD: Program("partclone", "on the nodes, the product saves and restores partitions of a file system"
                                       " partclone does not know"),
    CURL: Program("curl", "the simulated BMCs' chassis_control script hands each power action to the node's card"),
    SS: Program("iproute2", "up --power ipmi waits until every simulated BMC listens on its UDP port"),
    IPMI_SIM: Program("openipmi", "a node's BMC spoken to by IPMI (OpenIPMI's simulator), its power"
                                  " actions handed to the node's card by a chassis_control script"),
    # --- the product's side of a testbed -------------------------------------------------------
    UDP_SENDER: Program("udpcast", "the product's multicast sender, in the server namespace"),
    # --- the VM tier -----------------------------------------------------------------------------
    QEMU: Program("qemu-system-x86", "the virtual machines, in the server namespace", vm=True),
    DPKG_DEB: Program("dpkg", "unpacks Debian's kernel package (never installed)", vm=True),
    DEPMOD: Program("kmod", "the module dependencies of the unpacked kernel", vm=True),
    MODPROBE: Program("kmod", "the modules an initramfs loads, in their order", vm=True),
    LDD: Program("libc-bin", "the libraries of each program copied into an initramfs", vm=True),
    DASH: Program("dash", "/bin/sh of the VMs' imaging OS and disk OS", vm=True),
    NC_OPENBSD: Program("netcat-openbsd", "nc of the VMs' imaging OS", vm=True),
    SYSLINUX: Program("syslinux", "the boot sector of the VMs' boot images", vm=True),
    GRUB_MKIMAGE: Program("grub-common", "GRUB's EFI programs (of grub-efi-amd64-bin's modules): the UEFI VMs'"
                                         " network loader, the boot images' \\EFI\\BOOT\\BOOTX64.EFI", vm=True),
    MDIR: Program("mtools", "lists the files of a VM boot image; the free space of a test disk's FAT (dirty)"),
}


def find(command: str) -> str:
    """The path of program ``command`` of :data:`PROGRAMS` (sbin folders searched too);
    UsageError naming the Debian package to install when it is missing."""
    found = shutil.which(command, path=SEARCH_PATH)
    if found is None:
        raise UsageError(f"{command} is missing: install its Debian package"
                         f" (apt-get install {PROGRAMS[command].package})")
    return found


def needed(vm: bool) -> list[str]:
    """The programs a testbed needs: those of the emulated nodes, and with ``vm`` those of the VM tier too."""
    return [name for name, program in PROGRAMS.items() if vm or not program.vm]


def missing(vm: bool) -> list[str]:
    """The programs of :func:`needed` that are not installed, each as ``name (package)``."""
    return [f"{name} ({PROGRAMS[name].package})" for name in needed(vm)
            if shutil.which(name, path=SEARCH_PATH) is None]


def require(vm: bool) -> None:
    """UsageError naming the missing programs and their packages unless every needed one is installed."""
    absent = missing(vm)
    if absent:
        packages = sorted({PROGRAMS[item.split(" ")[0]].package for item in absent})
        raise UsageError(f"the testbed needs {', '.join(absent)}: install them with"
                         f" apt-get install {' '.join(packages)} (or make {'vm' if vm else 'system'}-packages)")
