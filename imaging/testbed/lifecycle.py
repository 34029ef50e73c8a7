"""Starting and stopping a testbed: ``up``, ``down``, ``status``, ``run``, ``fault`` and ``lease``.

``up`` prepares the directory (keys, images, disks, TFTP tree, scripts),
claims a testbed index, builds the namespaces, starts dnsmasq and the
controller (both tracked by PID in ``DIR/run``) and writes the product's
config and inventory.  ``down`` stops every tracked process, then anything
still living in the testbed's namespaces, and deletes the namespaces; it
works after a crash of the controller, or of ``up`` itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .. import errors
from . import control, files, firmware, images, network, pxe, state
from . import leases as leases_api
from .faults import Faults, check_vm_knob, parse_assignment
from .layout import MAX_NODES, Layout
from .node import NodeStatus
from .procs import Tracked, kill, kill_netns, run, stop_all, track, tracked

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
             kernel_package: Path | None = None) -> state.TestbedState:
    """Start a testbed of ``count`` nodes in ``directory``; its record.

    Nodes are emulated (namespaces), or qemu machines with ``vm`` (``accel``:
    auto, tcg or kvm; ``kernel_package``: the Debian kernel package, found in
    its usual folder by default).  Sizes and the disk path default per tier.
    With ``leases``, the product's config checks the testbed's leases API
    (``[leases] backend = r2labapi``); its ``url`` is written either way.

    ``faults`` are ``fitNN:knob=value`` specs in force from the start.
    Raises UsageError for bad arguments or a testbed already up there,
    ImagingError when a step fails (everything started is stopped again).
    """
    require_root("up")
    directory = directory.resolve()
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
        provision.check_requirements()
    else:
        limit = MAX_NODES if cmc_only else MAX_FULL_NODES
        disk_mib, image_mib, disk_path = disk_mib or 64, image_mib or 8, disk_path or "/dev/sda"
    if not 1 <= count <= limit:
        raise errors.UsageError(f"a testbed has 1 to {limit} {'VMs' if vm else 'nodes'}"
                                f"{'' if cmc_only or vm else ' (--cmc-only: more)'}; {count} asked")
    if boot_delay < 0 or disk_mib < image_mib:
        raise errors.UsageError("--boot-delay must be >= 0 and the disk at least as big as the image")
    if not re.fullmatch(r"/dev/[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*", disk_path):
        raise errors.UsageError(f"hard drive {disk_path!r} must be a plain path under /dev, e.g. /dev/sda")
    if (directory / state.STATE_FILE).exists():
        raise errors.UsageError(f"a testbed is already up in {directory}: use it, or stop it first with"
                                f" imaging-testbed down --dir {directory}")
    layout = Layout(directory, 0, count)
    if len(str(layout.control_socket)) > UNIX_PATH_MAX:
        raise errors.UsageError(f"{directory} is too long a path for a unix socket; use a shorter --dir")
    by_node = _parse_faults(layout, faults or [], vm)
    started = time.monotonic()
    chosen_accel = ""
    if vm:
        chosen_accel = await _prepare_vms(layout, disk_mib, image_mib, by_node, accel, kernel_package)
    else:
        await _prepare(layout, cmc_only, disk_mib, image_mib, by_node)
    log.info("prepared %s in %.2f s", directory, time.monotonic() - started)

    index = await network.claim_index()
    record = state.TestbedState(str(directory), index, count, cmc_only, boot_delay, disk_path, disk_mib,
                                by_node, chosen_accel)
    record.save()  # from here on, down can clean up
    layout = record.layout
    try:
        await network.create(layout, record.links)
        if not cmc_only:
            _spawn(layout, "dnsmasq", ["ip", "netns", "exec", layout.server_ns,
                                       *network.dnsmasq_command(layout, router_adverts=vm)])
        _spawn(layout, "controller", ["ip", "netns", "exec", layout.server_ns,
                                      sys.executable, "-m", "imaging.testbed.controller", str(directory)])
        await _wait_ready(layout)
        if vm:
            await _check_machines(layout)
        files.write_product_files(layout, disk_path, leases, files.vm_profile(chosen_accel) if vm else None)
    except BaseException:
        await down(directory)
        raise
    log.info("testbed %d up in %s: %d nodes in %.2f s", index, directory, count, time.monotonic() - started)
    return record


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
                       accel: str, package: Path | None) -> str:
    """Everything ``up --vm`` puts in the directory before starting processes; the accelerator."""
    from .vm import provision
    _prepare_dirs(layout)
    await _make_keys(layout)
    build = await provision.provision(layout, image_mib, _disk_sizes(layout, disk_mib, faults), accel, package)
    log.info("VMs: kernel %s, %s (%s)", build.kernel.version, build.accel, build.accel_reason)
    return build.accel


def _disk_sizes(layout: Layout, disk_mib: int, faults: dict[str, list[str]]) -> dict[str, int]:
    """Each node's disk size in MiB: ``disk_mib``, or less with a ``disk=small`` fault."""
    return {info.name: Faults.from_specs(faults.get(info.name, [])).disk_mib(disk_mib) for info in layout.nodes()}


async def _make_keys(layout: Layout) -> None:
    """The nodes' dropbear host key and the client key they accept (kept if present)."""
    if not layout.host_key.exists():
        await run("dropbearkey", "-t", "ed25519", "-f", str(layout.host_key))
    if not layout.rsa_host_key.exists():
        await run("dropbearkey", "-t", "rsa", "-s", "2048", "-f", str(layout.rsa_host_key))
    if not layout.client_key.exists():
        await run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "imaging-testbed",
                  "-f", str(layout.client_key))


def _spawn(layout: Layout, name: str, argv: list[str]) -> None:
    """Start a daemon outliving ``up`` (own session, output in DIR/logs) and track it."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    with open(layout.logs_dir / f"{name}.out", "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=layout.directory, env=env)
    if track(layout.run_dir, name, proc.pid) is None:
        raise errors.ImagingError(f"{name} exited at once; see {layout.logs_dir / (name + '.out')}")


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


async def down(directory: Path) -> None:
    """Stop everything the testbed in ``directory`` started and delete its namespaces.

    UsageError when there is no testbed there.
    """
    require_root("down")
    directory = directory.resolve()
    record = state.load(directory)
    layout = record.layout
    if layout.control_socket.exists():
        try:
            await control.call(layout.control_socket, "POST", "/shutdown", timeout=3)
        except errors.ImagingError as exc:
            log.warning("controller shutdown: %s", exc)
    procs = tracked(layout.run_dir)
    daemons = [p for p in procs if p.name in DAEMONS]
    await _wait_gone([p for p in daemons if p.name == "controller"], 5.0)
    for node in procs:
        if node not in daemons:
            kill(node)  # a node's power cut
    await stop_all(daemons)
    namespaces = layout.namespaces(with_nodes=record.links == "veth")
    for _ in range(50):
        if not sum(kill_netns(ns) for ns in namespaces):
            break
        await asyncio.sleep(0.02)
    await network.destroy(namespaces)
    for leftover in layout.run_dir.glob("*"):
        leftover.unlink(missing_ok=True)
    state.forget(directory)


async def _wait_gone(procs: list[Tracked], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(p.alive() for p in procs) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def status(directory: Path) -> tuple[state.TestbedState, list[NodeStatus]]:
    """The testbed's record and every node's status."""
    record = state.load(directory.resolve())
    answer = await control.call(record.layout.control_socket, "GET", "/status")
    return record, control.statuses(answer)


async def set_fault(directory: Path, node: str, spec: str) -> list[str]:
    """Change ``node``'s faults live (``spec`` or ``clear``); the faults now in force."""
    record = state.load(directory.resolve())
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
    record = state.load(directory.resolve())
    body: dict[str, Any] = {"action": action, **(params or {})}
    if action == "add":  # relative times are relative to now, here
        for key in ("from", "until"):
            body[key] = leases_api.iso(leases_api.parse_time(str(body.get(key, ""))))
    return await control.call(record.layout.control_socket, "POST", "/leases", body)


def run_in_server(directory: Path, argv: list[str], *, env: dict[str, str] | None = None,
                  capture: bool = False, timeout: float | None = None,
                  input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` in the server namespace with ``IMAGING_CONFIG`` set to the
    testbed's config (``env``: the environment, default ours); with
    ``capture``, its output is kept in the result instead of shown.
    Raises subprocess.TimeoutExpired after ``timeout`` seconds."""
    require_root("run")
    record = state.load(directory.resolve())
    layout = record.layout
    environment = dict(os.environ if env is None else env)
    environment["IMAGING_CONFIG"] = str(layout.config_path)
    if not argv:
        raise errors.UsageError("nothing to run: imaging-testbed run -- COMMAND [ARGS…]")
    if shutil.which(argv[0], path=environment.get("PATH")) is None and "/" not in argv[0]:
        raise errors.UsageError(f"{argv[0]}: command not found")
    return subprocess.run(["ip", "netns", "exec", layout.server_ns, *argv], env=environment, check=False,
                          capture_output=capture, timeout=timeout, input=input)
