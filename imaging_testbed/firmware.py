"""The scripts that run inside an emulated node: its "firmware" and helpers.

The firmware runs as PID 1 of the node's PID namespace, in the node's network
namespace and a private mount namespace (see :mod:`imaging_testbed.node`).
It builds the node's private world (tmpfs scratch, overlays over ``/etc`` and
``/var``, its own empty ``/root`` and ``/home``, a tmpfs ``/dev``, a tmpfs ``/tmp``), does real DHCP with busybox
``udhcpc`` and a real TFTP fetch of its pxelinux config, then becomes the
imaging OS (busybox ``telnetd``) or the installed OS (``dropbear``) — or
nothing, like a node whose disk holds no OS.

The node's disk in its ``/dev`` (``TB_DISK_PATH``, e.g. ``/dev/sda``) is a
block device node of the loop device the controller attached the disk file
to (``TB_LOOP``, e.g. ``loop3``), and one node per partition the kernel
shows under ``/sys/block/loopN`` (``/dev/sda1``…, ``/dev/nvme0n1p1``… when the
disk's name ends in a digit), made with ``mknod``; a process of the node holds
the disk open, so that it stays while the node runs, even when the
controller dies.  The firmware first checks that the loop device is backed
by the node's disk file (sysfs ``loop/backing_file``, its ``st_dev:st_ino``),
then that the node it made is that device.  Without a loop device
(``TB_LOOP`` empty) the disk path is the disk file itself, bind-mounted, and
a ``disk=small`` fault is a file size limit.  The installed OS reads the
identity of its image from the first partition holding a FAT with
``/etc/imaging-image``, else from the whole disk (a FAT "superfloppy").

Lines ``@state <word> [text]`` on its output tell the controller how far the
boot went; everything else is the node's console.
"""

from __future__ import annotations

from pathlib import Path

FIRMWARE = "firmware"
DHCP_HOOK = "dhcp-hook"
RECEIVER_WRAPPER = "receiver-wrapper"

# Inputs, in the environment: TB_NODE, TB_MAC, TB_BOOT (pxelinux or grub), TB_CONSOLE, TB_SCRATCH, TB_BIN, TB_DISK,
# TB_DISK_ID (st_dev:st_ino of TB_DISK), TB_DISK_PATH, TB_LOOP, TB_HOST_KEY, TB_RSA_HOST_KEY,
# TB_CLIENT_PUB, TB_TELNET_HANG, TB_SSH_NEVER, TB_RECEIVER_DIE, TB_DISK_LIMIT_KIB.
FIRMWARE_SCRIPT = r"""#!/bin/sh
# Firmware of an emulated node (imaging testbed).  PID 1 of the node.
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
R=/run/imaging          # the node's scratch, once moved to /run

say() { echo "firmware: $*"; }
state() { echo "@state $*"; }
halt() { state "$1" "$2"; say "$2: the node stays powered, nothing answers"; detach sleep infinity; }
# the OS's servers write to the console log directly, not to the controller's
# pipe: they must outlive a crash of the controller, like hardware
exec 3>>"$TB_CONSOLE"
detach() { exec "$@" >&3 2>&3 3>&-; }
must() { "$@" || halt failed "setup step failed: $*"; }
forget_inputs() { for v in $(env | sed -n 's/^\(TB_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done; }

# --- the node's private world ---------------------------------------------
must busybox mount -t tmpfs -o mode=755,size=256m imaging-node "$TB_SCRATCH"
must mkdir -p "$TB_SCRATCH/imaging"
S=$TB_SCRATCH/imaging
must cp "$TB_BIN/dhcp-hook" "$TB_BIN/receiver-wrapper" "$TB_HOST_KEY" "$TB_RSA_HOST_KEY" "$TB_CLIENT_PUB" "$S/"
if [ -n "$TB_LOOP" ]; then
    # a bug must never reach a real disk: the loop device must be the one of the disk file
    L=/sys/block/$TB_LOOP
    backing=$(cat "$L/loop/backing_file" 2>/dev/null)
    # the kernel names the file from the machine's root: in a chroot, with the chroot's folder before it
    case "$backing" in
        "$TB_DISK"|*/"${TB_DISK#/}") checked=$TB_DISK ;;
        *) checked= ;;
    esac
    if [ -z "$checked" ] || [ "$(stat -L -c %d:%i "$checked" 2>/dev/null)" != "$TB_DISK_ID" ]; then
        halt disk-refused "$TB_LOOP is not the loop device of the disk file $TB_DISK"
    fi
else
    must touch "$S/disk"
    must busybox mount --bind "$TB_DISK" "$S/disk"
fi
# from here on the host's folders may be hidden: only /run/imaging is used
must busybox mount --move "$TB_SCRATCH" /run
for d in etc var; do
    [ -d "/$d" ] || continue
    o=/run/overlay/$d
    must mkdir -p "$o.upper" "$o.work"
    must busybox mount -t overlay "imaging-$d" -o "lowerdir=/$d,upperdir=$o.upper,workdir=$o.work" "/$d"
done
# the users' homes are the node's own, empty, as on a freshly installed machine: never the server's (whose
# shell start-up files would run at every login on every node)
must busybox mount -t tmpfs -o mode=700,size=1m imaging-root /root
must busybox mount -t tmpfs -o mode=755,size=1m imaging-home /home
must busybox mount -t tmpfs -o mode=755,size=1m imaging-dev /dev
must mknod -m 666 /dev/null c 1 3
must mknod -m 666 /dev/zero c 1 5
must mknod -m 666 /dev/full c 1 7
must mknod -m 666 /dev/random c 1 8
must mknod -m 666 /dev/urandom c 1 9
must mknod -m 666 /dev/tty c 5 0
must mkdir /dev/pts /dev/shm
must busybox mount -t devpts -o newinstance,ptmxmode=0666,mode=620 imaging-devpts /dev/pts
must ln -s pts/ptmx /dev/ptmx
must ln -s /proc/self/fd /dev/fd
case "$TB_DISK_PATH" in
    /dev/*[!a-zA-Z0-9/_-]*|/dev/*/../*) halt disk-refused "disk path $TB_DISK_PATH is not a plain /dev path" ;;
    /dev/?*) ;;
    *) halt disk-refused "disk path $TB_DISK_PATH is not under /dev" ;;
esac
must mkdir -p "$(dirname "$TB_DISK_PATH")"
: > "$R/partitions"
if [ -n "$TB_LOOP" ]; then
    case "$TB_DISK_PATH" in *[0-9]) sep=p ;; *) sep= ;; esac
    dev=$(cat "$L/dev") || halt disk-refused "$TB_LOOP is gone"
    must mknod -m 660 "$TB_DISK_PATH" b "${dev%:*}" "${dev#*:}"
    for p in "$L/$TB_LOOP"p*; do
        n=$(cat "$p/partition" 2>/dev/null) && d=$(cat "$p/dev" 2>/dev/null) || continue
        must mknod -m 660 "$TB_DISK_PATH$sep$n" b "${d%:*}" "${d#*:}"
        echo "$TB_DISK_PATH$sep$n" >> "$R/partitions"
    done
    if [ ! -b "$TB_DISK_PATH" ] || [ -L "$TB_DISK_PATH" ] \
       || [ "$(stat -c %Hr:%Lr "$TB_DISK_PATH")" != "$dev" ] \
       || [ "$(cat "$L/loop/backing_file" 2>/dev/null)" != "$backing" ]; then
        halt disk-refused "$TB_DISK_PATH is not the loop device $TB_LOOP of the disk file $TB_DISK"
    fi
    # the node holds its disk while it runs, like a disk wired in
    sleep infinity < "$TB_DISK_PATH" > /dev/null 2>&1 3>&- &
else
    must touch "$TB_DISK_PATH"
    must busybox mount --bind "$R/disk" "$TB_DISK_PATH"
    # a bug must never reach a real disk: the disk path must be the disk file itself
    if [ ! -f "$TB_DISK_PATH" ] || [ -L "$TB_DISK_PATH" ] \
       || [ "$(stat -c %d:%i "$TB_DISK_PATH")" != "$TB_DISK_ID" ]; then
        halt disk-refused "$TB_DISK_PATH is not the disk file $TB_DISK"
    fi
fi
must busybox mount -t tmpfs -o mode=1777,size=64m imaging-tmp /tmp
hostname "$TB_NODE"
ip link set lo up

# --- DHCP, then TFTP, like PXE ---------------------------------------------
state dhcp
must busybox udhcpc -i eth0 -f -q -n -t 20 -T 1 -A 1 -s "$R/dhcp-hook" -x "hostname:$TB_NODE"
. "$R/lease"
state tftp "$LEASE_SERVER"
mac=$(echo "$TB_MAC" | tr 'A-Z:' 'a-z-')
if [ "$TB_BOOT" = grub ]; then
    # GRUB's network image: grub.cfg-01-<mac> in its prefix, else grub.cfg; its first menu entry boots
    if busybox tftp -g -r "grub/grub.cfg-01-$mac" -l "$R/pxe.cfg" "$LEASE_SERVER" 2>/dev/null; then
        say "grub config: grub/grub.cfg-01-$mac"
    elif busybox tftp -g -r grub/grub.cfg -l "$R/pxe.cfg" "$LEASE_SERVER"; then
        say "grub config: grub/grub.cfg"
    else
        halt no-boot "no grub config from $LEASE_SERVER"
    fi
    choice=$(busybox awk '
        $1 == "menuentry" { entries++ }
        entries == 1 && $1 == "linux" && choice == "" { sub("^/", "", $2); choice = "kernel " $2 }
        entries == 1 && $1 == "chainloader" && choice == "" { choice = "local" }
        END { print (choice == "" ? "none" : choice) }' "$R/pxe.cfg")
else
if busybox tftp -g -r "pxelinux.cfg/01-$mac" -l "$R/pxe.cfg" "$LEASE_SERVER" 2>/dev/null; then
    say "pxelinux config: pxelinux.cfg/01-$mac"
elif busybox tftp -g -r pxelinux.cfg/default -l "$R/pxe.cfg" "$LEASE_SERVER"; then
    say "pxelinux config: pxelinux.cfg/default"
else
    halt no-boot "no pxelinux config from $LEASE_SERVER"
fi
choice=$(busybox awk '
    { k = tolower($1) }
    k == "default" && def == "" { def = $2 }
    k == "label" { cur = $2 }
    (k == "kernel" || k == "linux") && !(cur in boot) { boot[cur] = $2 }
    k == "localboot" && !(cur in boot) { boot[cur] = "LOCALBOOT" }
    END {
        if (def == "" || !(def in boot)) print "none"
        else if (boot[def] == "LOCALBOOT") print "local"
        else print "kernel " boot[def]
    }' "$R/pxe.cfg")
fi
say "boot choice: $choice"

case "$choice" in
kernel\ *)
    kernel=${choice#kernel }
    busybox tftp -g -r "$kernel" -l "$R/kernel" "$LEASE_SERVER" || halt no-boot "cannot fetch kernel $kernel"
    grep -q "IMAGING-OS-KERNEL" "$R/kernel" || halt no-boot "kernel $kernel is not one this node can run"
    # --- the imaging OS ------------------------------------------------------
    if [ -n "$TB_DISK_LIMIT_KIB" ]; then
        trap '' XFSZ
        ulimit -f $((TB_DISK_LIMIT_KIB * 2))
    fi
    if [ -n "$TB_RECEIVER_DIE" ]; then
        real=$(command -v udp-receiver) || halt failed "no udp-receiver"
        echo "$TB_RECEIVER_DIE" > "$R/receiver-limit"
        must touch "$R/udp-receiver.real"
        must busybox mount --bind "$real" "$R/udp-receiver.real"
        must chmod 755 "$R/receiver-wrapper"
        must busybox mount --bind "$R/receiver-wrapper" "$real"
    fi
    cd /
    state telnet
    hang=$TB_TELNET_HANG
    forget_inputs
    if [ "$hang" = 1 ]; then
        say "telnet=hang: port 23 accepts and never answers"
        detach nc -d -l -k 23
    fi
    detach busybox telnetd -F -l /bin/sh -p 23
    ;;
local)
    # --- the installed OS ------------------------------------------------------
    # the image's identity: on the first FAT partition holding it, else on the whole disk
    identity=
    for part in $(cat "$R/partitions") "$TB_DISK_PATH"; do
        identity=$(MTOOLS_SKIP_CHECK=1 mtype -i "$part" ::/etc/imaging-image 2>/dev/null | head -n 1)
        case "$identity" in
            "imaging-test-image "*) break ;;
        esac
        identity=
    done
    [ -n "$identity" ] || halt no-os "the disk holds no OS this node knows"
    echo "$identity" > /etc/imaging-image
    say "booted $identity from $part"
    [ "$TB_SSH_NEVER" = 1 ] && halt no-ssh "ssh=never: the OS runs without ssh"
    must mkdir -p -m 700 /root/.ssh
    must cp "$R/$(basename "$TB_CLIENT_PUB")" /root/.ssh/authorized_keys
    must chmod 600 /root/.ssh/authorized_keys
    must mkdir -p /etc/dropbear
    must cp "$R/$(basename "$TB_HOST_KEY")" /etc/dropbear/dropbear_ed25519_host_key
    must cp "$R/$(basename "$TB_RSA_HOST_KEY")" /etc/dropbear/dropbear_rsa_host_key
    cd /
    forget_inputs
    state ssh
    detach dropbear -F -E -s -j -k -p 22 -r /etc/dropbear/dropbear_ed25519_host_key \
        -r /etc/dropbear/dropbear_rsa_host_key -P /run/dropbear.pid
    ;;
*)
    halt no-boot "the $TB_BOOT config boots nothing this node knows"
    ;;
esac
"""

DHCP_HOOK_SCRIPT = r"""#!/bin/sh
# udhcpc hook of the emulated nodes: sets the address (with its broadcast
# address) and records the lease in /run/imaging; writes NOTHING under /etc.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ;;
bound|renew)
    busybox ifconfig "$interface" "$ip" netmask "$subnet" broadcast "${broadcast:-+}"
    {
        echo "LEASE_IP=$ip"
        echo "LEASE_SERVER=${siaddr:-$serverid}"
        echo "LEASE_BOOT_FILE=${boot_file:-}"
    } > /run/imaging/lease
    ;;
esac
exit 0
"""

RECEIVER_WRAPPER_SCRIPT = r"""#!/bin/sh
# udp-receiver of a node with the receiver=die:K fault: the real receiver,
# killed once it has written K bytes (/proc/PID/io wchar).
limit=$(cat /run/imaging/receiver-limit)
/run/imaging/udp-receiver.real "$@" &
pid=$!
trap 'kill "$pid" 2>/dev/null' INT TERM HUP
while kill -0 "$pid" 2>/dev/null; do
    written=$(sed -n 's/^wchar: //p' "/proc/$pid/io" 2>/dev/null)
    if [ "${written:-0}" -ge "$limit" ]; then
        kill -9 "$pid"
        echo "udp-receiver: killed by fault receiver=die:$limit after $written bytes" >&2
        exit 137
    fi
    sleep 0.02
done
wait "$pid"
"""

SCRIPTS = {FIRMWARE: FIRMWARE_SCRIPT, DHCP_HOOK: DHCP_HOOK_SCRIPT, RECEIVER_WRAPPER: RECEIVER_WRAPPER_SCRIPT}


def install_scripts(bin_dir: Path) -> None:
    """Write the node scripts into ``bin_dir``, executable."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, text in SCRIPTS.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
