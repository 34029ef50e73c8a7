"""Typed settings objects built once from the config, then passed down."""

from __future__ import annotations

from .cmc import ResetSettings
from .config import Config
from .jobs.power import PowerSettings
from .ssh import SshSettings
from .telnet import TelnetSettings


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


def reset_settings(config: Config) -> ResetSettings:
    """How ensure_reset checks that a node went down."""
    return ResetSettings(idle_after_reset=config.get_float("nodes", "idle_after_reset"),
                         probe_ports=(config.get_int("networking", "ssh_port"),
                                      config.get_int("networking", "telnet_port")))


def power_settings(config: Config, timeout: float | None) -> PowerSettings:
    """How to talk to the CMCs; ``timeout`` defaults to a generous multiple of cmc_timeout."""
    cmc_timeout = config.get_float("nodes", "cmc_timeout")
    reset = reset_settings(config)
    return PowerSettings(cmc_timeout=cmc_timeout, cmc_port=config.get_int("nodes", "cmc_port"),
                         timeout=timeout if timeout is not None else 3 * cmc_timeout + 2 * reset.idle_after_reset,
                         reset=reset)
