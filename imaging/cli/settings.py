"""Typed settings objects built once from the config, then passed down."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, cast

from .. import registry
from ..boot.base import BootBackend
from ..boot.nextboot import NextBoot, Place
from ..config import Config
from ..errors import ConfigError
from ..images import Image
from ..inventory import Inventory, Node
from ..jobs.imagingos import BootSettings, NodeJobPlan
from ..jobs.load import LoadPlan
from ..jobs.power import PowerSettings
from ..jobs.rescue import RescuePlan
from ..jobs.save import SavePlan, stamp_command, stamp_line
from ..leases import LeaseSettings, parse_slices
from ..monitor.probe import ProbeSettings
from ..power.base import PowerDriver, PowerOptions
from ..power.credentials import read_credentials
from ..power.reset import ResetSettings
from ..ssh import SshSettings, with_keys
from ..telnet import TelnetSettings
from ..transports.base import Transport


def telnet_settings(config: Config) -> TelnetSettings:
    """How to reach the imaging OS."""
    return TelnetSettings(port=config.get_int("networking", "telnet_port"),
                          connect_timeout=config.get_float("networking", "telnet_timeout"),
                          backoff=config.get_float("networking", "telnet_backoff"))


def ssh_settings(config: Config, user: str | None = None) -> SshSettings:
    """How to reach an installed OS."""
    return SshSettings(user=user or config.get_str("networking", "ssh_user"),
                       key=config.get_optional_path("networking", "ssh_key"),
                       port=config.get_int("networking", "ssh_port"),
                       connect_timeout=config.get_float("networking", "ssh_timeout"),
                       backoff=config.get_float("networking", "ssh_backoff"))


def probe_settings(config: Config) -> ProbeSettings:
    """How the monitor looks at a node (the ssh key read once, now: UsageError when it cannot be)."""
    timeout = config.get_float("monitor", "probe_timeout")
    ssh = with_keys(replace(ssh_settings(config), connect_timeout=timeout, command_timeout=timeout))
    return ProbeSettings(timeout=timeout, ssh=ssh, telnet_port=config.get_int("networking", "telnet_port"))


def reset_settings(config: Config) -> ResetSettings:
    """How ensure_reset checks that a node went down."""
    return ResetSettings(idle_after_reset=config.get_float("nodes", "idle_after_reset"),
                         probe_ports=(config.get_int("networking", "ssh_port"),
                                      config.get_int("networking", "telnet_port")))


def boot_settings(config: Config) -> BootSettings:
    """How load and save bring a node into the imaging OS."""
    return BootSettings(reset=reset_settings(config), telnet=telnet_settings(config),
                        boot_timeout=config.get_float("nodes", "boot_timeout"))


def power_options(config: Config, nodes: Sequence[Node]) -> PowerOptions:
    """How to reach the nodes' power controllers: each node's driver, and the BMCs' logins read now when a
    driver needs them (ConfigError, before any node is touched, when they are missing or unreadable)."""
    drivers = {n.number: config.get_str("nodes", "power", host=n.hostname) for n in nodes}
    login = [n for n in nodes if cast(type[PowerDriver],
                                      registry.resolve(registry.power(drivers[n.number]).target)).needs_login]
    credentials = None
    if login:
        path = config.get_optional_path("power", "credentials")
        if path is None:
            raise ConfigError(f"{login[0].hostname}'s power driver is {drivers[login[0].number]}, which logs in:"
                              " set [power] credentials to the file of the BMCs' logins")
        credentials = read_credentials(path)
        for node in login:
            credentials.login(node.hostname)
    return PowerOptions(timeout=config.get_float("nodes", "cmc_timeout"), drivers=drivers,
                        default=config.get_str("nodes", "power"), credentials=credentials, config=config)


def power_settings(config: Config, nodes: Sequence[Node], timeout: float | None,
                   lock_wait: float = 0.0) -> PowerSettings:
    """How the power commands reach the nodes; ``timeout`` defaults to a generous multiple of cmc_timeout."""
    return PowerSettings(power=power_options(config, nodes),
                         timeout=timeout if timeout is not None else reset_deadline(config),
                         reset=reset_settings(config), lock_dir=config.get_path("locks", "lock_dir"),
                         lock_wait=lock_wait)


def reset_deadline(config: Config) -> float:
    """The default deadline of a checked reset: a generous multiple of cmc_timeout, and time for the node
    to go down twice (a power cycle after a reset that did not take)."""
    return 3 * config.get_float("nodes", "cmc_timeout") + 2 * reset_settings(config).idle_after_reset


def guess_server_ip(config: Config, inventory: Inventory) -> str:
    """``[transport] server_ip``, or the local address the kernel would use to reach
    the first node's control interface (a UDP connect sends nothing)."""
    configured = config.get_str("transport", "server_ip")
    if configured:
        return configured
    node = next(iter(inventory), None)
    if node is None:
        raise ConfigError("[transport] server_ip is empty and the inventory has no node to guess it from")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((node.control.ip, 9))
            return str(probe.getsockname()[0])
        except OSError as exc:
            raise ConfigError(f"cannot guess the server's address towards {node.control.ip} ({exc.strerror});"
                              " set [transport] server_ip") from None


def node_job_plan(config: Config, inventory: Inventory, nodes: Sequence[Node], transport: Transport, *,
                  timeout: float | None, default_timeout: str, reset_after: bool, lock_wait: float) -> NodeJobPlan:
    """What a load and a save both take from the config and the command line (``default_timeout``: the
    ``[nodes]`` key of the job's deadline when ``timeout`` is None)."""
    return NodeJobPlan(
        nodes=nodes, transport=transport, server_ip=guess_server_ip(config, inventory),
        disk={n.number: config.get_str("nodes", "hard_drive", host=n.hostname) for n in nodes},
        timeout=timeout if timeout is not None else config.get_float("nodes", default_timeout),
        reset_after=reset_after, power=power_options(config, nodes), boot=boot_settings(config),
        pattern_port=config.get_str("transport", "pattern_port"),
        pattern_size=config.get_int("transport", "pattern_size"),
        lock_dir=config.get_path("locks", "lock_dir"), lock_wait=lock_wait)


def _fields(plan: NodeJobPlan) -> dict[str, Any]:
    """The fields of ``plan``, to build a job's own plan on it (not copied: asdict would turn the
    nested settings into dicts)."""
    return {f.name: getattr(plan, f.name) for f in fields(plan)}


def load_plan(config: Config, inventory: Inventory, nodes: Sequence[Node], image: Image, transport: Transport,
              *, bandwidth: int | None, timeout: float | None, reset_after: bool, lock_wait: float) -> LoadPlan:
    """Everything a load needs, from the config and the command line."""
    stamp = time.strftime("%Y-%m-%d@%H-%M-%S")
    common = node_job_plan(config, inventory, nodes, transport, timeout=timeout, default_timeout="load_timeout",
                           reset_after=reset_after, lock_wait=lock_wait)
    return LoadPlan(
        **_fields(common), image=image,
        bandwidth={n.number: bandwidth or config.get_int("nodes", "bandwidth", host=n.hostname) for n in nodes},
        stall_timeout=config.get_float("nodes", "stall_timeout"),
        pattern_multicast=config.get_str("transport", "pattern_multicast"),
        log_dir=config.get_path("logging", "transport_logs") / stamp)


def next_boot(config: Config, nodes: Sequence[Node]) -> NextBoot:
    """The next-boot links of these nodes, each with its boot loader ([nodes] boot) and aimed at its
    imaging-OS file."""
    places = {}
    for node in nodes:
        name = config.get_str("nodes", "boot", host=node.hostname)
        backend = cast(type[BootBackend], registry.resolve(registry.boot(name).target))()
        places[node.number] = Place(backend, config.get_path(backend.section, "config_dir"),
                                    config.get_str(backend.section, backend.target_key, host=node.hostname))
    return NextBoot(places)


def save_plan(config: Config, inventory: Inventory, nodes: Sequence[Node], targets: dict[int, Path],
              transport: Transport, *, timeout: float | None, reset_after: bool, lock_wait: float,
              radical: str, comment: str, user: str, raw: bool = False, force: bool = False) -> SavePlan:
    """Everything a save needs, from the config and the command line."""
    stamps: dict[int, str | None] = {}
    for node in nodes:
        partition = config.get_str("nodes", "root_partition", host=node.hostname)
        stamps[node.number] = None if partition.lower() in ("", "none") else stamp_command(
            partition, config.get_str("nodes", "mount_point", host=node.hostname),
            stamp_line(node.hostname, radical, user, comment))
    common = node_job_plan(config, inventory, nodes, transport, timeout=timeout, default_timeout="save_timeout",
                           reset_after=reset_after, lock_wait=lock_wait)
    return SavePlan(**_fields(common), targets=targets, stamp=stamps, raw=raw, force=force)


def rescue_plan(config: Config, nodes: Sequence[Node], *, leaving: bool, timeout: float | None,
                lock_wait: float) -> RescuePlan:
    """What ``imaging-rescue`` needs; its deadline defaults to ``[nodes] boot_timeout`` and a ``cmc_timeout``
    to bring nodes in (so that a node late to boot is told so, not timed out), to the power commands' reset
    deadline to take them out (``leaving``), the lock wait added."""
    if timeout is None:
        timeout = reset_deadline(config) if leaving else (config.get_float("nodes", "boot_timeout")
                                                          + config.get_float("nodes", "cmc_timeout"))
    return RescuePlan(nodes=nodes, power=power_options(config, nodes), boot=boot_settings(config),
                      timeout=timeout + lock_wait, lock_dir=config.get_path("locks", "lock_dir"),
                      lock_wait=lock_wait)


def lease_settings(config: Config) -> LeaseSettings:
    """The ``[leases]`` section, typed."""
    privileged = frozenset(p.strip() for p in config.get_str("leases", "privileged").split(",") if p.strip())
    file = config.get_str("leases", "file")
    return LeaseSettings(backend=config.get_str("leases", "backend"), url=config.get_str("leases", "url"),
                         file=Path(file).expanduser() if file else None, privileged=privileged,
                         slices=parse_slices(config.get_str("leases", "slices")),
                         timeout=config.get_float("leases", "timeout"))
