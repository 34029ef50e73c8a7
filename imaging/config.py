"""Layered ini configuration.

Files are read in order, later ones winning key by key:
``/etc/imaging.conf``, ``~/.imaging.conf``, ``./imaging.conf``, then the file
named by ``$IMAGING_CONFIG`` and the one given with ``--config``.  Each file
may define as few keys as it likes.

Every key has its type, default and documentation in :data:`KEYS`, the one
place defaults live; ``imaging.conf.sample`` is generated from it.  Values are
typed and checked when the files are read, so a bad value fails at once with
the file, section, key and value named.

A key may be overridden for one host with ``key.<short-hostname> = value``:
:meth:`Config.get` looks for the node's hostname first (when the caller passes
one), then the server's own short hostname, then the plain key.
"""

from __future__ import annotations

import configparser
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger(__name__)

STANDARD_FILES: tuple[str, ...] = ("/etc/imaging.conf", "~/.imaging.conf", "./imaging.conf")
ENV_VAR = "IMAGING_CONFIG"
DEFAULT_ORIGIN = "(default)"


@dataclass(frozen=True)
class Key:
    """One configuration key: where it lives, its type, default and meaning."""

    section: str
    name: str
    kind: str  # one of: str, int, float, bool, path
    default: str
    doc: str


KEYS: tuple[Key, ...] = (
    Key("testbed", "inventory", "path", "/etc/imaging-inventory.json",
        "the JSON inventory: hostnames, IPs and MACs of each node's cmc/control/data"),
    Key("testbed", "all_scope", "str", "1-37", "the node spec that -a adds"),
    Key("testbed", "regularname", "str", "fit", "prefix of the nodes' control hostnames"),
    Key("testbed", "rebootname", "str", "reboot", "prefix of the nodes' CMC hostnames"),
    Key("nodes", "hard_drive", "str", "/dev/sda", "the disk an image is written to, on the node"),
    Key("nodes", "root_partition", "str", "/dev/sda1",
        "partition holding /etc of a loaded OS, stamped by save; 'none' disables the stamp"),
    Key("nodes", "mount_point", "str", "/mnt", "where the imaging OS mounts root_partition"),
    Key("nodes", "cmc_timeout", "float", "3", "seconds for one request to a CMC"),
    Key("nodes", "cmc_port", "int", "80", "TCP port of the CMCs' HTTP service"),
    Key("nodes", "idle_after_reset", "float", "15",
        "seconds within which a node's control interface must stop answering after a reset"),
    Key("nodes", "boot_timeout", "float", "80",
        "seconds for a reset node to answer telnet in the imaging OS; a later one misses the transfer"),
    Key("nodes", "load_timeout", "float", "1200", "default deadline of imaging-load, seconds"),
    Key("nodes", "save_timeout", "float", "1200", "default deadline of imaging-save, seconds"),
    Key("nodes", "wait_timeout", "float", "60", "default deadline of imaging-wait, seconds"),
    Key("nodes", "bandwidth", "int", "500", "multicast bandwidth in Mibps (bandwidth.<host> per node)"),
    Key("pxelinux", "config_dir", "path", "/tftpboot/pxelinux.cfg",
        "where pxelinux looks for the per-MAC files 01-<mac>"),
    Key("pxelinux", "frisbee_image", "str", "pxefrisbee",
        "file in config_dir that boots the imaging OS (frisbee_image.<host> per node)"),
    Key("images", "images_dir", "path", "/var/lib/imaging/images", "the image repository"),
    Key("images", "default_image", "str", "default", "image loaded when -i is not given"),
    Key("transport", "kind", "str", "frisbee", "how images travel: frisbee or udpcast"),
    Key("transport", "server_ip", "str", "",
        "the server's address on the control network; guessed from the inventory when empty"),
    Key("transport", "pattern_multicast", "str", "234.5.6.*",
        "multicast groups of concurrent loads; * runs from 1 to pattern_size"),
    Key("transport", "pattern_port", "str", "10000 + *", "ports of concurrent loads and saves"),
    Key("transport", "pattern_size", "int", "20", "how many concurrent sessions the patterns allow"),
    Key("frisbee", "server", "str", "frisbeed", "the frisbee multicast server program"),
    Key("frisbee", "server_options", "str", "", "extra options given to the frisbee server"),
    Key("frisbee", "client", "str", "frisbee", "the frisbee client, run on the node"),
    Key("frisbee", "imagezip", "str", "imagezip", "the disk compressor run on the node by save"),
    Key("frisbee", "netcat", "str", "nc", "netcat on the node, used by save"),
    Key("frisbee", "imagedump", "str", "imagedump",
        "Emulab's image inspector on the server: when installed, disks are checked against the image"),
    Key("udpcast", "sender", "str", "udp-sender", "the udpcast sender program, on the server"),
    Key("udpcast", "receiver", "str", "udp-receiver", "the udpcast receiver, run on the node"),
    Key("udpcast", "retries_until_drop", "int", "15",
        "unanswered retransmissions before udp-sender drops a receiver: a dead receiver stalls the"
        " others about that many seconds; too few drops receivers that are only slow"),
    Key("udpcast", "sender_options", "str", "", "extra options given to udp-sender"),
    Key("udpcast", "receiver_options", "str", "", "extra options given to udp-receiver"),
    Key("networking", "telnet_port", "int", "23", "telnet port of the imaging OS"),
    Key("networking", "telnet_timeout", "float", "3", "seconds for one telnet connection attempt"),
    Key("networking", "telnet_backoff", "float", "1", "base delay between telnet attempts, seconds"),
    Key("networking", "ssh_port", "int", "22", "ssh port of the nodes' installed OS"),
    Key("networking", "ssh_user", "str", "root", "user for ssh to a node's installed OS"),
    Key("networking", "ssh_key", "path", "",
        "private key for ssh to the nodes; empty: the user's usual keys"),
    Key("networking", "ssh_timeout", "float", "3", "seconds for one ssh connection attempt"),
    Key("networking", "ssh_backoff", "float", "1", "base delay between ssh attempts, seconds"),
    Key("leases", "backend", "str", "none", "who may act on the nodes: none, file or r2labapi"),
    Key("leases", "url", "str", "", "base URL of the leases API (backend r2labapi)"),
    Key("leases", "file", "str", "", "the leases file (backend file)"),
    Key("leases", "privileged", "str", "root", "comma-separated logins that need no lease"),
    Key("leases", "slices", "str", "", "login:slice pairs, comma-separated; a login not named acts as its own slice"),
    Key("leases", "timeout", "float", "5", "seconds to read the leases; past that the command is refused"),
    Key("logging", "file", "path", "imaging.log", "the log file; relative paths are from the current directory"),
    Key("logging", "level", "str", "DEBUG", "level of the log file: DEBUG, INFO, WARNING or ERROR"),
    Key("logging", "transport_logs", "path", "imaging-logs", "folder for per-node transport logs"),
    Key("locks", "lock_dir", "path", "/run/lock/imaging", "folder of the per-node lock files"),
)

_KEY_INDEX: dict[tuple[str, str], Key] = {(k.section, k.name): k for k in KEYS}
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}

Value = str | int | float | bool | Path


def _convert(key: Key, raw: str, where: str, name: str | None = None) -> Value:
    """Turn the text of a value into the key's type, or raise ConfigError naming it."""
    text = raw.strip()
    try:
        if key.kind == "int":
            return int(text)
        if key.kind == "float":
            value = float(text)
            if value != value or value < 0:  # NaN or negative
                raise ValueError
            return value
        if key.kind == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"{where}: [{key.section}] {name or key.name} = {raw!r} is not a valid {key.kind};"
            f" the default is {key.default!r}"
        ) from None
    if key.kind == "path":
        return Path(os.path.expanduser(text)) if text else ""
    return text


@dataclass(frozen=True)
class Setting:
    """One effective value and the file it came from."""

    section: str
    name: str  # may carry a .<host> suffix
    value: Value
    origin: str


class Config:
    """The effective configuration: typed values, each with its origin.

    Build it with :meth:`load` (the standard files) or :meth:`from_files`.
    """

    def __init__(self, settings: dict[tuple[str, str], Setting], files: list[str],
                 server_host: str | None = None) -> None:
        self._settings = settings
        self.files = files
        self.server_host = server_host if server_host is not None else socket.gethostname().split(".")[0]

    @classmethod
    def load(cls, extra: Sequence[str | os.PathLike[str]] = (),
             environ: dict[str, str] | None = None) -> Config:
        """Read the standard files, then ``$IMAGING_CONFIG``, then ``extra``."""
        env = os.environ if environ is None else environ
        named = ([env[ENV_VAR]] if env.get(ENV_VAR) else []) + list(extra)
        files = [os.path.expanduser(f) for f in STANDARD_FILES] + named
        return cls.from_files(files, required=named)

    @classmethod
    def from_files(cls, files: Sequence[str | os.PathLike[str]],
                   required: Sequence[str | os.PathLike[str]] = ()) -> Config:
        """Layer the given files over the defaults; missing files are skipped
        unless they are listed in ``required``."""
        settings = {(k.section, k.name): Setting(k.section, k.name, _convert(k, k.default, "default"),
                                                 DEFAULT_ORIGIN) for k in KEYS}
        must = {os.fspath(f) for f in required}
        read: list[str] = []
        for file in files:
            path = os.fspath(file)
            if not os.path.exists(path):
                if path in must:
                    raise ConfigError(f"config file {path} does not exist; fix the path"
                                      f" given with --config or ${ENV_VAR}")
                continue
            parser = configparser.ConfigParser(interpolation=None, default_section="__none__")
            try:
                with open(path, encoding="utf-8") as handle:
                    parser.read_file(handle)
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"cannot read config file {path}: {exc}") from None
            except configparser.Error as exc:
                first = str(exc).splitlines()[0]
                raise ConfigError(f"config file {path} is not valid ini: {first}") from None
            read.append(path)
            for section in parser.sections():
                for name, raw in parser.items(section):
                    base = name.split(".", 1)[0]
                    key = _KEY_INDEX.get((section, base))
                    if key is None:
                        log.warning("%s: unknown key [%s] %s ignored", path, section, name)
                        continue
                    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
                        log.warning("%s: [%s] %s = %s: quotes are kept as part of the value",
                                    path, section, name, raw)
                    value = _convert(key, raw, path, name)
                    settings[(section, name)] = Setting(section, name, value, path)
        return cls(settings, read)

    def _setting(self, section: str, name: str, host: str | None) -> Setting:
        if (section, name) not in _KEY_INDEX:
            raise KeyError(f"no such config key [{section}] {name}")
        for who in (host, self.server_host):
            if who:
                found = self._settings.get((section, f"{name}.{who.split('.')[0]}"))
                if found is not None:
                    return found
        return self._settings[(section, name)]

    def get(self, section: str, name: str, host: str | None = None) -> Value:
        """The typed value of a key, with per-host overrides applied."""
        return self._setting(section, name, host).value

    def origin(self, section: str, name: str, host: str | None = None) -> str:
        """The file the effective value came from, or ``(default)``."""
        return self._setting(section, name, host).origin

    def get_str(self, section: str, name: str, host: str | None = None) -> str:
        """A ``str`` key's value."""
        return str(self.get(section, name, host))

    def get_int(self, section: str, name: str, host: str | None = None) -> int:
        """An ``int`` key's value."""
        value = self.get(section, name, host)
        assert isinstance(value, int)
        return value

    def get_float(self, section: str, name: str, host: str | None = None) -> float:
        """A ``float`` key's value."""
        value = self.get(section, name, host)
        assert isinstance(value, float)
        return value

    def get_path(self, section: str, name: str, host: str | None = None) -> Path:
        """A ``path`` key's value, with ``~`` expanded; ConfigError when empty."""
        value = self.get_optional_path(section, name, host)
        if value is None:
            raise ConfigError(f"[{section}] {name} is empty ({self.origin(section, name, host)});"
                              f" set it to a path")
        return value

    def get_optional_path(self, section: str, name: str, host: str | None = None) -> Path | None:
        """A ``path`` key's value, or None when it is set empty."""
        value = self.get(section, name, host)
        assert isinstance(value, Path | str)
        return value if isinstance(value, Path) else None

    def settings(self) -> Iterator[Setting]:
        """Every effective setting, per-host overrides included, in section order."""
        order = {(k.section, k.name): i for i, k in enumerate(KEYS)}
        yield from sorted(self._settings.values(),
                          key=lambda s: (order[(s.section, s.name.split(".")[0])], s.name))


def sample_text() -> str:
    """The text of ``imaging.conf.sample``: every key, commented, with its default."""
    lines = [
        "# imaging configuration; every key with its default.",
        "# Files read in order, later ones winning key by key:",
        "#   /etc/imaging.conf, ~/.imaging.conf, ./imaging.conf, $IMAGING_CONFIG, --config FILE",
        "# A key can be set for one host only: key.<short-hostname> = value",
        "# (a node's control hostname, e.g. bandwidth.fit07, or the server's).",
        "# Values are not unquoted: write strings without quotes.",
    ]
    section = None
    for key in KEYS:
        if key.section != section:
            section = key.section
            lines += ["", f"[{section}]"]
        lines += [f"# {key.doc} ({key.kind})", f"# {key.name} = {key.default}".rstrip()]
    return "\n".join(lines) + "\n"
