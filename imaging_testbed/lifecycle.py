"""Starting and stopping a testbed: ``up``, ``down``, ``list``, ``status``, ``run``, ``fault`` and ``lease``.

``up`` prepares the directory (keys, images, disks, TFTP tree, scripts),
claims a testbed index, records the testbed in the registry
(:mod:`imaging_testbed.registry`, outside its folder), builds the
namespaces, starts dnsmasq and the controller (both tracked by PID in
``DIR/run`` and in the registry) and writes the product's config and
inventory.  ``down`` stops every tracked process, then anything still living
in the testbed's namespaces, and deletes the namespaces and the record; it
works after a crash of the controller, or of ``up`` itself, and from the
registry alone when the testbed's folder is gone.

The commands that act on a running testbed find it with
:mod:`imaging_testbed.discovery`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from imaging import errors

from . import bmc, control, files, firmware, images, network, programs, pxe, redfish, registry, state
from . import leases as leases_api
from .bmc import POWER
from .discovery import absolute, load
from .faults import Faults, check_vm_knob, parse_assignment
from .layout import MAX_NODES, NS_PREFIX, Layout
from .node import NodeStatus
from .procs import Tracked, kill, kill_netns, run, run_forwarding, stop_all, track, tracked
from .programs import DROPBEARKEY, IP, SS, SSH_KEYGEN
from .pxe import FIRMWARE

log = logging.getLogger(__name__)

MAX_FULL_NODES = 250
DAEMONS = ("controller", "dnsmasq")
READY_TIMEOUT = 30.0
UNIX_PATH_MAX = 107


def require_root(action: str) -> None:
    """UsageError unless running as root (namespaces need it)."""
    if os.geteuid() != 0:
        raise errors.UsageError(f"imaging-testbed {action} needs root (network namespaces):"
                                f" run it with sudo")


async def up(directory: Path, count: int, boot_delay: float = 1.0, faults: list[str] | None = None,
             cmc_only: bool = False, disk_mib: int | None = None, image_mib: int | None = None,
             disk_path: str | None = None, leases: bool = False, vm: bool = False, accel: str = "auto",
             kernel_package: Path | None = None, power: str = "cmc", firmware: str = "bios") -> state.TestbedState:
    """Start a testbed of ``count`` nodes in ``directory``; its record.

    Nodes are emulated (namespaces), or qemu machines with ``vm`` (``accel``:
    auto, tcg or kvm; ``kernel_package``: the Debian kernel package, found in
    its usual folder by default).  Sizes and the disk path default per tier.
    With ``leases``, the product's config checks the testbed's leases API
    (``[leases] backend = r2labapi``); its ``url`` is written either way.
    ``power``: ``cmc`` (the product drives the nodes' cards) or ``ipmi`` (one simulated BMC per node on
    the card's address, :mod:`imaging_testbed.bmc`, in front of the same card; ``redfish``: sushy-tools'
    emulator, :mod:`imaging_testbed.redfish`).  ``firmware``: ``bios``, the nodes boot pxelinux, or
    ``uefi``, they boot GRUB's network image, which reads GRUB's per-MAC configs (VMs: OVMF,
    :mod:`imaging_testbed.vm.grub`; emulated nodes read the same configs, :mod:`imaging_testbed.pxe`).

    ``faults`` are ``fitNN:knob=value`` specs in force from the start.
    Raises UsageError for bad arguments or a testbed already up there,
    ImagingError when a step fails (everything started is stopped again).
    """
    require_root("up")
    directory = absolute(directory)
    if any(size is not None and size <= 0 for size in (disk_mib, image_mib)):
        raise errors.UsageError("--disk-size and --image-size are positive numbers of MiB")
    if vm:
        from .vm import accel as accelerators
        from .vm import provision
        limit = provision.MAX_VMS
        disk_mib, image_mib = disk_mib or provision.DISK_MIB, image_mib or provision.IMAGE_MIB
        if cmc_only:
            raise errors.UsageError("--vm and --cmc-only do not go together: VMs are whole machines")
        if disk_path not in (None, provision.HARD_DRIVE):
            raise errors.UsageError(f"a VM's disk is its virtio disk {provision.HARD_DRIVE}: drop --hard-drive")
        if accel not in accelerators.ACCELERATORS:
            raise errors.UsageError(f"--accel {accel}: choose one of {', '.join(accelerators.ACCELERATORS)}")
        disk_path = provision.HARD_DRIVE
        provision.check_requirements(firmware)
    else:
        programs.require(vm=False)
        limit = MAX_NODES if cmc_only else MAX_FULL_NODES
        disk_mib, image_mib, disk_path = disk_mib or 64, image_mib or 8, disk_path or "/dev/sda"
    if not 1 <= count <= limit:
        raise errors.UsageError(f"a testbed has 1 to {limit} {'VMs' if vm else 'nodes'}"
                                f"{'' if cmc_only or vm else ' (--cmc-only: more)'}; {count} asked")
    if power not in POWER:
        raise errors.UsageError(f"--power {power}: choose one of {', '.join(POWER)}")
    if firmware not in FIRMWARE:
        raise errors.UsageError(f"--firmware {firmware}: choose one of {', '.join(FIRMWARE)}")
    boot = FIRMWARE[firmware]
    if power == "redfish" and importlib.util.find_spec("sushy_tools") is None:
        raise errors.UsageError("--power redfish runs sushy-tools' Redfish emulator: pip install 'imaging[testbed]'")
    if boot_delay < 0 or disk_mib < image_mib:
        raise errors.UsageError("--boot-delay must be >= 0 and the disk at least as big as the image")
    if not re.fullmatch(r"/dev/[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*", disk_path):
        raise errors.UsageError(f"hard drive {disk_path!r} must be a plain path under /dev, e.g. /dev/sda")
    if (directory / state.STATE_FILE).exists():
        raise errors.UsageError(f"a testbed is already up in {directory}: use it, or stop it first with"
                                f" imaging-testbed down --dir {directory}")
    _check_no_orphan(directory)
    layout = Layout(directory, 0, count)
    if len(str(layout.control_socket)) > UNIX_PATH_MAX:
        raise errors.UsageError(f"{directory} is too long a path for a unix socket; use a shorter --dir")
    by_node = _parse_faults(layout, faults or [], vm)
    started = time.monotonic()
    chosen_accel = ""
    if vm:
        chosen_accel = await _prepare_vms(layout, disk_mib, image_mib, by_node, accel, kernel_package, firmware)
    else:
        await _prepare(layout, cmc_only, disk_mib, image_mib, by_node)
    log.info("prepared %s in %.2f s", directory, time.monotonic() - started)

    index = await network.claim_index()
    layout = Layout(directory, index, count)
    record = state.TestbedState(str(directory), index, count, cmc_only, boot_delay, disk_path, disk_mib,
                                by_node, chosen_accel, str(registry.path_of(layout.name)), boot, power)
    record.save()  # from here on, down can clean up
    entry = registry.Entry(layout.name, index, str(directory), count, record.kind,
                           layout.namespaces(with_nodes=record.links == "veth"))
    try:
        registry.record(entry)  # from here on, down can clean up without the folder
        await network.create(layout, record.links)
        if not cmc_only:
            entry = entry.with_daemon(_spawn(layout, "dnsmasq", [
                IP, "netns", "exec", layout.server_ns, *network.dnsmasq_command(layout, router_adverts=vm)]))
            registry.record(entry)
        entry = entry.with_daemon(_spawn(layout, "controller", [
            IP, "netns", "exec", layout.server_ns, sys.executable, "-m", "imaging_testbed.controller",
            str(directory)]))
        registry.record(entry)
        await _wait_ready(layout)
        if power != "cmc":
            entry = await _start_bmcs(layout, entry, power)
        if vm:
            await _check_machines(layout)
        files.write_product_files(layout, disk_path, leases, files.vm_profile(chosen_accel) if vm else None, power,
                                  boot)
    except BaseException:
        await down(directory)
        raise
    log.info("testbed %s up in %s: %d nodes in %.2f s", layout.name, directory, count, time.monotonic() - started)
    return record


async def _start_bmcs(layout: Layout, entry: registry.Entry, power: str) -> registry.Entry:
    """Start the nodes' BMCs: an ipmi_sim per node (ipmi), or the Redfish emulator (redfish); wait until they
    listen; the registry's entry with them."""
    shutil.rmtree(layout.directory / bmc.FOLDER, ignore_errors=True)  # an earlier testbed's BMC state
    password = bmc.write_credentials(layout)
    if power == "ipmi":
        for node, simulator in await asyncio.to_thread(bmc.write_bmcs, layout, password):
            entry = entry.with_daemon(_spawn(layout, f"bmc-{node.name}",
                                             [IP, "netns", "exec", layout.server_ns, *simulator.argv()]))
        wanted, kind = {f"{node.cmc_ip}:{bmc.IPMI_PORT}" for node in layout.nodes()}, "-uln"
    else:
        settings = await asyncio.to_thread(redfish.write_testbed_settings, layout, bmc.USER, password)
        entry = entry.with_daemon(_spawn(layout, "redfish", [IP, "netns", "exec", layout.server_ns, sys.executable,
                                                             "-m", "imaging_testbed.redfish", str(settings)]))
        wanted, kind = {f"0.0.0.0:{redfish.PORT}"}, "-tln"
    registry.record(entry)
    await _wait_listening(layout, wanted, kind)
    return entry


async def _wait_listening(layout: Layout, wanted: set[str], kind: str, timeout: float = 15.0) -> None:
    """Until the server namespace listens on every ``address:port`` of ``wanted`` (``kind``: ss's -uln or
    -tln); ImagingError naming those it does not."""
    deadline = time.monotonic() + timeout
    while True:
        out = await run(IP, "netns", "exec", layout.server_ns, SS, kind, check=False)
        listening = {line.split()[3] for line in out.splitlines()[1:] if len(line.split()) > 3}
        missing = sorted(wanted - listening)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise errors.ImagingError(f"the simulated BMCs on {', '.join(missing[:3])} do not listen;"
                                      f" see {layout.logs_dir}/bmc-*.out or redfish.out")
        await asyncio.sleep(0.05)


def _check_no_orphan(directory: Path) -> None:
    """UsageError when a testbed recorded in ``directory`` still runs though its files are gone
    (a record whose namespaces are gone is dropped)."""
    entry = registry.by_directory(directory)
    if entry is None:
        return
    if entry.present():
        raise errors.UsageError(f"testbed {entry.name} still runs from {directory}, whose files are gone:"
                                f" stop it first with imaging-testbed down {entry.name}")
    registry.forget(registry.path_of(entry.name))


def _parse_faults(layout: Layout, specs: list[str], vm: bool = False) -> dict[str, list[str]]:
    """``fitNN:spec`` strings grouped by node name; UsageError for unknown nodes or knobs
    (or knobs VMs do not have, with ``vm``)."""
    by_node: dict[str, list[str]] = {}
    for text in specs:
        name, spec = parse_assignment(text)
        if vm:
            check_vm_knob(spec)
        try:
            node = layout.node_by_name(name)
        except ValueError as exc:
            raise errors.UsageError(f"--fault {text}: {exc}") from None
        by_node.setdefault(node.name, []).append(spec)
    return by_node


def _prepare_dirs(layout: Layout) -> None:
    """The testbed's folders, emptied of what a previous testbed left."""
    for folder in (layout.run_dir, layout.logs_dir, layout.images_dir, layout.disks_dir, layout.keys_dir,
                   layout.locks_dir, layout.transport_logs_dir, layout.nodes_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for stale in layout.run_dir.iterdir():
        stale.unlink()
    layout.leases_path.unlink(missing_ok=True)  # a new testbed starts with no leases
    for link in layout.pxe_dir.glob("01-*"):
        link.unlink()


async def _prepare(layout: Layout, cmc_only: bool, disk_mib: int, image_mib: int,
                   faults: dict[str, list[str]]) -> None:
    """Everything ``up`` puts in the directory before starting processes (emulated nodes)."""
    _prepare_dirs(layout)
    await images.make_image(files.DEFAULT_IMAGE, layout.images_dir, image_mib, compressed=True,
                            cache_dir=layout.cache_dir)
    if cmc_only:
        return
    await _make_keys(layout)
    pxe.prepare_tftp(layout)
    firmware.install_scripts(layout.bin_dir)
    slots = asyncio.Semaphore(4)
    sizes = _disk_sizes(layout, disk_mib, faults)

    async def disk(number: int) -> None:
        info = layout.node(number)
        size = sizes[info.name] << 20
        path = layout.disk_path(info)
        path.unlink(missing_ok=True)
        async with slots:
            await images.write_fat(path, size, images.new_identity(f"factory-{info.name}"))

    await asyncio.gather(*(disk(n) for n in range(1, layout.count + 1)))


async def _prepare_vms(layout: Layout, disk_mib: int, image_mib: int, faults: dict[str, list[str]],
                       accel: str, package: Path | None, firmware: str) -> str:
    """Everything ``up --vm`` puts in the directory before starting processes; the accelerator."""
    from .vm import provision
    _prepare_dirs(layout)
    await _make_keys(layout)
    build = await provision.provision(layout, image_mib, _disk_sizes(layout, disk_mib, faults), accel, package,
                                      firmware)
    log.info("VMs: kernel %s, %s (%s)", build.kernel.version, build.accel, build.accel_reason)
    return build.accel


def _disk_sizes(layout: Layout, disk_mib: int, faults: dict[str, list[str]]) -> dict[str, int]:
    """Each node's disk size in MiB: ``disk_mib``, or less with a ``disk=small`` fault."""
    return {info.name: Faults.from_specs(faults.get(info.name, [])).disk_mib(disk_mib) for info in layout.nodes()}


async def _make_keys(layout: Layout) -> None:
    """The nodes' dropbear host key and the client key they accept (kept if present)."""
    if not layout.host_key.exists():
        await run(DROPBEARKEY, "-t", "ed25519", "-f", str(layout.host_key))
    if not layout.rsa_host_key.exists():
        await run(DROPBEARKEY, "-t", "rsa", "-s", "2048", "-f", str(layout.rsa_host_key))
    if not layout.client_key.exists():
        await run(SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "imaging-testbed",
                  "-f", str(layout.client_key))


def _spawn(layout: Layout, name: str, argv: list[str]) -> Tracked:
    """Start a daemon outliving ``up`` (own session, output in DIR/logs) and track it; its record."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])  # where imaging and imaging_testbed are
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    with open(layout.logs_dir / f"{name}.out", "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=layout.directory, env=env)
    daemon = track(layout.run_dir, name, proc.pid)
    if daemon is None:
        raise errors.ImagingError(f"{name} exited at once; see {layout.logs_dir / (name + '.out')}")
    return daemon


async def _wait_ready(layout: Layout) -> None:
    """Wait until the controller answers on its control socket."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        procs = {p.name: p for p in tracked(layout.run_dir)}
        dead = [name for name in DAEMONS if name in procs and not procs[name].alive()]
        if dead:
            log_file = layout.logs_dir / f"{dead[0]}.out"
            tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] if log_file.exists() else []
            raise errors.ImagingError(f"{dead[0]} died while the testbed started: {' '.join(tail)}"
                                      f" (see {log_file})")
        if layout.control_socket.exists():
            try:
                await control.call(layout.control_socket, "GET", "/status", timeout=2)
                return
            except errors.ImagingError:
                pass
        await asyncio.sleep(0.05)
    raise errors.ImagingError(f"the controller did not start within {READY_TIMEOUT:g} s;"
                              f" see {layout.logs_dir / 'controller.log'}")


async def _check_machines(layout: Layout) -> None:
    """ImagingError naming the console log when a VM failed to start (the
    controller powers every machine on before it answers)."""
    answer = await control.call(layout.control_socket, "GET", "/status")
    for node in control.statuses(answer):
        if node.stage == "failed":
            log_file = layout.console_log(layout.node_by_name(node.name))
            raise errors.ImagingError(f"{node.name} did not start: {node.detail} (console: {log_file})")


async def down(directory: Path) -> str:
    """Stop everything the testbed in ``directory`` started, delete its namespaces
    and its record; its name.

    When the folder lost the testbed's files (or is gone), the registry's record
    of a testbed there is enough.  UsageError when there is no testbed there.
    """
    require_root("down")
    directory = absolute(directory)
    try:
        record = state.load(directory)
    except errors.UsageError:
        entry = registry.by_directory(directory)
        if entry is None:
            raise
        await _down_recorded(entry)
        return entry.name
    layout = record.layout
    if layout.control_socket.exists():
        try:
            await control.call(layout.control_socket, "POST", "/shutdown", timeout=3)
        except errors.ImagingError as exc:
            log.warning("controller shutdown: %s", exc)
    procs = tracked(layout.run_dir)
    entry = registry.load(Path(record.registry)) if record.registry else None
    if entry is not None:  # the daemons' files in DIR/run may be gone
        procs += [daemon for daemon in entry.daemons if daemon not in procs]
    daemons = [p for p in procs if p.name in DAEMONS]
    await _wait_gone([p for p in daemons if p.name == "controller"], 5.0)
    await _stop([p for p in procs if p not in daemons], daemons, layout.namespaces(with_nodes=record.links == "veth"))
    for leftover in layout.run_dir.glob("*"):
        leftover.unlink(missing_ok=True)
    if record.registry:
        registry.forget(Path(record.registry))
    state.forget(directory)
    return layout.name


async def down_named(name: str) -> registry.Entry:
    """Bring down the testbed the registry records as ``name`` (``imtb3``), from its folder
    when that still holds it, else from the record alone; its record.

    UsageError when ``name`` is not a testbed name, or no testbed of that name is recorded.
    """
    check_name(name)
    require_root("down")
    entry = registry.find(name)
    if entry is None:
        raise errors.UsageError(f"no testbed {name} is running: imaging-testbed list shows those that are")
    directory = Path(entry.directory)
    try:
        in_folder = state.load(directory).index == entry.index
    except errors.ImagingError:
        in_folder = False
    if in_folder:
        await down(directory)
    else:
        await _down_recorded(entry)
    return entry


async def down_all() -> list[registry.Entry]:
    """Bring down every testbed the registry records (:func:`down_named`); their records."""
    require_root("down")
    return [await down_named(entry.name) for entry in registry.entries()]


def check_name(name: str) -> None:
    """UsageError unless ``name`` has the shape of a testbed's name (``imtb3``)."""
    if not re.fullmatch(rf"{NS_PREFIX}\d+", name):
        raise errors.UsageError(f"{name!r} is not a testbed name: want {NS_PREFIX}N,"
                                f" as imaging-testbed list shows")


async def _down_recorded(entry: registry.Entry) -> None:
    """Stop a testbed from its record alone (its folder is gone): its daemons, whatever
    its namespaces hold, the namespaces, then the record."""
    log.info("stopping testbed %s from its record (its folder %s has no testbed)", entry.name, entry.directory)
    await _stop([], entry.daemons, entry.namespaces)
    registry.forget(registry.path_of(entry.name))


async def _stop(nodes: list[Tracked], daemons: list[Tracked], namespaces: list[str]) -> None:
    """Kill ``nodes`` (a power cut), stop ``daemons`` (SIGTERM, then SIGKILL), kill
    everything left in ``namespaces``, then delete them."""
    for node in nodes:
        kill(node)
    await stop_all(daemons)
    for _ in range(50):
        if not sum(kill_netns(ns) for ns in namespaces):
            break
        await asyncio.sleep(0.02)
    await network.destroy(namespaces)


async def _wait_gone(procs: list[Tracked], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(p.alive() for p in procs) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def status(directory: Path) -> tuple[state.TestbedState, list[NodeStatus]]:
    """The testbed's record and every node's status."""
    record = load(directory)
    answer = await control.call(record.layout.control_socket, "GET", "/status")
    return record, control.statuses(answer)


async def set_fault(directory: Path, node: str, spec: str) -> list[str]:
    """Change ``node``'s faults live (``spec`` or ``clear``); the faults now in force."""
    record = load(directory)
    Faults().apply(spec)  # UsageErrors before bothering the controller
    if record.vm:
        check_vm_knob(spec)
    try:
        record.layout.node_by_name(node)
    except ValueError as exc:
        raise errors.UsageError(str(exc)) from None
    answer = await control.call(record.layout.control_socket, "POST", "/fault", {"node": node, "spec": spec})
    faults: list[str] = answer["faults"]
    return faults


async def lease(directory: Path, action: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    """A leases command on the controller (add, clear, list, api); its answer
    ``{"mode", "url", "leases"}``.  ``add`` takes ``slice``, ``from``, ``until``
    (ISO 8601 or ``now``, ``+10m``, ``-1h``…) and ``nodes``."""
    record = load(directory)
    body: dict[str, Any] = {"action": action, **(params or {})}
    if action == "add":  # relative times are relative to now, here
        for key in ("from", "until"):
            body[key] = leases_api.iso(leases_api.parse_time(str(body.get(key, ""))))
    return await control.call(record.layout.control_socket, "POST", "/leases", body)


def _server_command(directory: Path, argv: list[str], env: dict[str, str] | None
                    ) -> tuple[list[str], dict[str, str]]:
    """The command line running ``argv`` in the server namespace, and its environment
    (``env``, default ours, with ``IMAGING_CONFIG`` set to the testbed's config)."""
    if not argv:
        raise errors.UsageError("nothing to run: imaging-testbed run -- COMMAND [ARGS…]")
    require_root("run")
    layout = load(directory).layout
    environment = dict(os.environ if env is None else env)
    environment["IMAGING_CONFIG"] = str(layout.config_path)
    if shutil.which(argv[0], path=environment.get("PATH")) is None and "/" not in argv[0]:
        raise errors.UsageError(f"{argv[0]}: command not found")
    return [IP, "netns", "exec", layout.server_ns, *argv], environment


def run_in_server(directory: Path, argv: list[str], *, env: dict[str, str] | None = None,
                  capture: bool = False, timeout: float | None = None,
                  input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` in the server namespace with ``IMAGING_CONFIG`` set to the
    testbed's config (``env``: the environment, default ours); with
    ``capture``, its output is kept in the result instead of shown.
    Raises subprocess.TimeoutExpired after ``timeout`` seconds."""
    command, environment = _server_command(directory, argv, env)
    return subprocess.run(command, env=environment, check=False, capture_output=capture, timeout=timeout,
                          input=input)


def run_command(directory: Path, argv: list[str], env: dict[str, str] | None = None) -> int:
    """``imaging-testbed run``: ``argv`` in the server namespace as :func:`run_in_server` runs it,
    to its end, with SIGINT, SIGTERM and SIGHUP passed on to it
    (:func:`~imaging_testbed.procs.run_forwarding`); its exit status, 128 + N when signal N killed it."""
    command, environment = _server_command(directory, argv, env)
    return run_forwarding(command, environment)
