"""Layered ini configuration.

Files are read in order, later ones winning key by key:
``/etc/imaging.conf``, ``~/.imaging.conf``, ``./imaging.conf``, then the file
named by ``$IMAGING_CONFIG`` and the one given with ``--config``.  Each file
may define as few keys as it likes.

Every key has its kind, range, default and documentation in one :class:`Key`,
the one place its default lives: the product's own in :data:`CORE_KEYS`, a
backend's in its class (``KEYS``); :func:`keys` gathers them all, and
``imaging.conf.sample`` is generated from it.  Values
are typed and range-checked when the files are read, so a bad value fails at
once with the file, line, section, key, value and what the key accepts named;
keys that only make sense together (the patterns and ``pattern_size``,
``all_scope`` and the hostname prefixes) are checked together once every file
is read.  An unknown section or key is not an error, but a warning in
:attr:`Config.warnings` naming the nearest known key.

A key may be overridden for one host with ``key.<short-hostname> = value``:
:meth:`Config.get` looks for the node's hostname first (when the caller passes
one), then the server's own short hostname, then the plain key.
"""

from __future__ import annotations

import codecs
import configparser
import difflib
import ipaddress
import logging
import os
import re
import shlex
import socket
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from . import patterns, registry
from .errors import ConfigError, SelectorError
from .selector import select

log = logging.getLogger(__name__)

STANDARD_FILES: tuple[str, ...] = ("/etc/imaging.conf", "~/.imaging.conf", "./imaging.conf")
ENV_VAR = "IMAGING_CONFIG"
DEFAULT_ORIGIN = "(default)"
MAX_SECONDS = 7 * 24 * 3600.0  # a week: the longest any timeout or delay may be
MAX_FILE_BYTES = 1 << 20  # a config file is small; more is not a config file (/dev/zero, an image)
MAX_PATTERN = 64  # characters of a pattern: its arithmetic stays trivial

Value = str | int | float | Path


class _Invalid(ValueError):
    """A value refused with a detail worth showing (shlex's reason, a pattern's)."""


@dataclass(frozen=True)
class Key:
    """One configuration key: where it lives, what it accepts, its default and meaning.

    ``kind`` is one of :data:`KINDS`; ``int`` keys carry their bounds (``low``,
    ``high``, inclusive) and ``choice`` keys their ``choices``.
    """

    section: str
    name: str
    kind: str
    default: str
    doc: str
    low: int = 0
    high: int = 0
    unit: str = ""
    choices: tuple[str, ...] = ()

    def allowed(self) -> str:
        """What the key accepts, in words: ``a whole number from 1 to 65535``."""
        if self.kind == "int":
            return f"a whole number from {self.low} to {self.high}" + (f" ({self.unit})" if self.unit else "")
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        return KINDS[self.kind][0]

    def check(self, text: str) -> Value:
        """The typed value of ``text``; ValueError whose message says what is wrong
        (``is not a whole number from 1 to 65535``), to follow the value in a message."""
        if "\n" in text:
            raise ValueError("goes on over an indented line (an indented line continues the value"
                             " above it: unindent the line)")
        if any(unicodedata.category(c) == "Cc" and c != "\t" for c in text):
            raise ValueError("holds a control character")
        try:
            return KINDS[self.kind][1](self, text)
        except _Invalid as exc:
            detail = f" ({exc})"
        except ValueError:
            detail = " (comments go on a line of their own)" if re.search(r"\s[#;]", text) else ""
        raise ValueError(f"is not {self.allowed()}{detail}")


def _whole(key: Key, text: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]{1,30}", text):  # ASCII digits only: int() takes '３' and '٣'
        raise ValueError(text)
    value = int(text)
    if not key.low <= value <= key.high:
        raise ValueError(text)
    return value


def parse_seconds(text: str) -> float:
    """A number of seconds, more than 0 and at most :data:`MAX_SECONDS`, in ASCII
    digits (``1.5``, ``2e3``); ValueError otherwise (``inf``, ``nan``, ``0``, ``３``)."""
    if not re.fullmatch(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?", text.strip()):
        raise ValueError(f"{text!r} is not a number of seconds")
    value = float(text)
    if not 0 < value <= MAX_SECONDS:
        raise ValueError(f"{text!r} is not more than 0 and at most {MAX_SECONDS:g} seconds")
    return value


def _path(key: Key, text: str) -> Path:
    if not text:
        raise ValueError(text)
    return Path(os.path.expanduser(text))


def _optional_path(key: Key, text: str) -> Path | str:
    return _path(key, text) if text else ""


def _node_path(key: Key, text: str) -> str:
    if not text.startswith("/") or re.search(r"\s", text):
        raise ValueError(text)
    return text


def _partition(key: Key, text: str) -> str:
    return text if text.lower() in ("", "none") else _node_path(key, text)


def _word(key: Key, text: str) -> str:
    if not text or re.search(r"\s", text) or text.startswith("-"):
        raise ValueError(text)
    return text


def _file_name(key: Key, text: str) -> str:
    if "/" in text or text in (".", ".."):
        raise ValueError(text)
    return _word(key, text)


def _prefix(key: Key, text: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{1,32}", text):
        raise ValueError(text)
    return text


def _spec(key: Key, text: str) -> str:
    # the grammar needs the prefixes, which are keys too: select() runs once every file is read
    if not text.isascii() or not text or len(text) > 1000:
        raise ValueError(text)
    return text


def _pattern(key: Key, text: str) -> str:
    # what the pattern gives for each session is checked with pattern_size once every file is read
    if not text.isascii() or len(text) > MAX_PATTERN:
        raise ValueError(text)
    return text


def _choice(key: Key, text: str) -> str:
    for choice in key.choices:
        if text.lower() == choice.lower():
            return choice
    raise ValueError(text)


def _ipv4(key: Key, text: str) -> str:
    if text:
        address = ipaddress.IPv4Address(text)
        if address.is_multicast or address.is_unspecified or address == ipaddress.IPv4Address("255.255.255.255"):
            raise ValueError(text)
    return text


def _words(key: Key, text: str) -> str:
    try:
        shlex.split(text)
    except ValueError as exc:
        raise _Invalid(str(exc).lower()) from None
    return text


def _url(key: Key, text: str) -> str:
    if text:
        parts = urlsplit(text)
        _ = parts.port  # ValueError when the port is not one
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(text)
    return text


def split_listen(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as its host and port; ValueError when it is not one."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535 \
            or not re.fullmatch(r"[A-Za-z0-9.:-]+", host):
        raise ValueError(text)
    return host, int(port)


def _listen(key: Key, text: str) -> str:
    split_listen(text)
    return text


def _redfish_url(key: Key, text: str) -> str:
    parts = urlsplit(text.replace("{ip}", "192.0.2.1"))
    _ = parts.port  # ValueError when the port is not one
    if parts.scheme not in ("http", "https") or "{ip}" not in text or parts.hostname != "192.0.2.1":
        raise ValueError(text)
    return text


def _word_or_empty(key: Key, text: str) -> str:
    return _word(key, text) if text else text


def _logins(key: Key, text: str) -> str:
    if any(re.search(r"\s", item.strip()) for item in text.split(",")):
        raise ValueError(text)
    return text


def split_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """``alice:inria_alice, bob:upmc_bob`` → ``(("alice", "inria_alice"), ("bob", "upmc_bob"))``;
    ValueError naming the first item that is not ``login:slice``."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        login, sep, name = item.partition(":")
        if not sep or not login.strip() or not name.strip():
            raise ValueError(f"{item!r} is not login:slice")
        pairs.append((login.strip(), name.strip()))
    return tuple(pairs)


def _pairs(key: Key, text: str) -> str:
    try:
        split_pairs(text)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return text


# kind -> (what it accepts, in words; the converter from text, raising ValueError)
KINDS: dict[str, tuple[str, Callable[[Key, str], Value]]] = {
    "int": ("a whole number", _whole),
    "seconds": (f"a number of seconds, more than 0 and at most {MAX_SECONDS:g}",
                lambda key, text: parse_seconds(text)),
    "choice": ("one of its choices", _choice),
    "path": ("a path", _path),
    "optional path": ("a path, or empty", _optional_path),
    "node path": ("an absolute path on the node, without spaces", _node_path),
    "partition": ("an absolute path on the node without spaces, or none", _partition),
    "word": ("one word: not empty, without spaces, not starting with '-'", _word),
    "file name": ("a file name: one word, without '/'", _file_name),
    "prefix": ("a hostname prefix: ASCII letters only", _prefix),
    "spec": ("a node spec such as 1-37", _spec),
    "group pattern": (f"a multicast address with * for the session number, at most {MAX_PATTERN} ASCII"
                      " characters, e.g. 234.5.6.*", _pattern),
    "port pattern": (f"arithmetic over whole numbers with * for the session number, at most {MAX_PATTERN} ASCII"
                     " characters, e.g. 10000 + *", _pattern),
    "ipv4": ("an IPv4 address of this server, or empty", _ipv4),
    "url": ("an http:// or https:// URL, or empty", _url),
    "redfish url": ("an http:// or https:// URL whose host is {ip}", _redfish_url),
    "listen": ("an address and a port, e.g. 127.0.0.1:8090", _listen),
    "word or empty": ("one word without spaces, not starting with '-', or empty", _word_or_empty),
    "words": ("options that split into words as a shell would", _words),
    "logins": ("comma-separated logins, without spaces", _logins),
    "pairs": ("comma-separated login:slice pairs", _pairs),
}

SECONDS = "seconds"

# the product's own keys; each backend declares its own (its class's KEYS): see keys()
CORE_KEYS: tuple[Key, ...] = (
    Key("testbed", "inventory", "path", "/etc/imaging-inventory.json",
        "the JSON inventory: hostnames, IPs and MACs of each node's cmc/control/data"),
    Key("testbed", "all_scope", "spec", "1-37", "the node spec that -a adds"),
    Key("testbed", "regularname", "prefix", "fit", "prefix of the nodes' control hostnames"),
    Key("testbed", "rebootname", "prefix", "reboot", "prefix of the nodes' CMC hostnames"),
    Key("nodes", "hard_drive", "node path", "/dev/sda", "the disk an image is written to, on the node"),
    Key("nodes", "root_partition", "partition", "/dev/sda1",
        "partition holding /etc of a loaded OS, stamped by save; 'none' disables the stamp"),
    Key("nodes", "mount_point", "node path", "/mnt", "where the imaging OS mounts root_partition"),
    Key("nodes", "power", "choice", "cmc", "how a node's power is driven (power.<host> per node): its CMC, or its"
        " BMC by IPMI or Redfish at the inventory's cmc address", choices=registry.POWER_NAMES),
    Key("nodes", "boot", "choice", "pxelinux", "the network boot loader of a node (boot.<host> per node):"
        " pxelinux (BIOS) or grub (UEFI)", choices=registry.BOOT_NAMES),
    Key("nodes", "cmc_timeout", SECONDS, "3", "seconds for one request to a node's power controller"),
    Key("nodes", "idle_after_reset", SECONDS, "15",
        "seconds within which a node's control interface must stop answering after a reset"),
    Key("nodes", "boot_timeout", SECONDS, "80",
        "seconds for a reset node to answer telnet in the imaging OS; a later one misses the transfer"),
    Key("nodes", "load_timeout", SECONDS, "1200", "default deadline of imaging-load, seconds"),
    Key("nodes", "save_timeout", SECONDS, "1200", "default deadline of imaging-save, seconds"),
    Key("nodes", "wait_timeout", SECONDS, "60", "default deadline of imaging-wait, seconds"),
    Key("nodes", "stall_timeout", SECONDS, "60",
        "seconds a node's receiver may go without progress (bytes received or written) before the node"
        " fails; it may decompress and write for minutes after the sender has ended"),
    Key("nodes", "bandwidth", "int", "500", "multicast bandwidth in Mibps (bandwidth.<host> per node)",
        low=1, high=100_000, unit="Mibps"),
    Key("power", "credentials", "optional path", "",
        "the BMCs' logins (ipmi): an ini file that only its owner may read, [default] and [<host>] sections"
        " of user and password"),
    Key("images", "images_dir", "path", "/var/lib/imaging/images", "the image repository"),
    Key("images", "default_image", "word", "default", "image loaded when -i is not given"),
    Key("transport", "kind", "choice", "frisbee", "how images travel", choices=registry.TRANSPORT_NAMES),
    Key("transport", "server_ip", "ipv4", "",
        "the server's address on the control network; guessed from the inventory when empty"),
    Key("transport", "pattern_multicast", "group pattern", "234.5.6.*",
        "multicast groups of concurrent loads; * runs from 1 to pattern_size"),
    Key("transport", "pattern_port", "port pattern", "10000 + *", "ports of concurrent loads and saves"),
    Key("transport", "pattern_size", "int", "20", "how many concurrent sessions the patterns allow",
        low=1, high=1000),
    Key("networking", "telnet_port", "int", "23", "telnet port of the imaging OS", low=1, high=65535),
    Key("networking", "telnet_timeout", SECONDS, "3", "seconds for one telnet connection attempt"),
    Key("networking", "telnet_backoff", SECONDS, "1", "base delay between telnet attempts, seconds"),
    Key("networking", "ssh_port", "int", "22", "ssh port of the nodes' installed OS", low=1, high=65535),
    Key("networking", "ssh_user", "word", "root", "user for ssh to a node's installed OS"),
    Key("networking", "ssh_key", "optional path", "",
        "private key for ssh to the nodes; empty: the user's usual keys"),
    Key("networking", "ssh_timeout", SECONDS, "3", "seconds for one ssh connection attempt"),
    Key("networking", "ssh_backoff", SECONDS, "1", "base delay between ssh attempts, seconds"),
    Key("leases", "backend", "choice", "none", "who may act on the nodes",
        choices=("none", "file", "r2labapi")),
    Key("leases", "url", "url", "", "base URL of the leases API (backend r2labapi)"),
    Key("leases", "file", "optional path", "", "the leases file (backend file)"),
    Key("leases", "privileged", "logins", "root", "comma-separated logins that need no lease"),
    Key("leases", "slices", "pairs", "", "login:slice pairs, comma-separated; a login not named acts as its own slice"),
    Key("leases", "timeout", SECONDS, "5", "seconds to read the leases; past that the command is refused"),
    Key("logging", "file", "path", "imaging.log", "the log file; relative paths are from the current directory"),
    Key("logging", "level", "choice", "DEBUG", "level of the log file",
        choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    Key("logging", "transport_logs", "path", "imaging-logs", "folder for per-node transport logs"),
    Key("locks", "lock_dir", "path", "/run/lock/imaging", "folder of the per-node lock files"),
    Key("monitor", "listen", "listen", "127.0.0.1:8090",
        "where imaging-monitor serves its page, /api/nodes, /api/events and /metrics"),
    Key("monitor", "cycle", SECONDS, "5", "seconds between two looks at a node"),
    Key("monitor", "probe_timeout", SECONDS, "2",
        "seconds for each probe of a node (its power controller, its control interface, its image)"),
)



def keys() -> tuple[Key, ...]:
    """Every key: the product's own (:data:`CORE_KEYS`) and each backend's, which its class declares
    (``KEYS``: a transport's, a power driver's, a boot loader's; see :mod:`imaging.registry`), the keys of
    one section together, in the order their sections first appear."""
    found = [*CORE_KEYS, *(k for backend in registry.BACKENDS for k in registry.resolve(backend.target).KEYS)]
    sections = list(dict.fromkeys(k.section for k in found))
    return tuple(sorted(found, key=lambda k: sections.index(k.section)))  # stable: a section keeps its order


@dataclass(frozen=True)
class Schema:
    """The keys a configuration may hold, indexed."""

    keys: tuple[Key, ...]

    @classmethod
    def every(cls) -> Schema:
        """The schema of :func:`keys`."""
        return cls(keys())

    @cached_property
    def index(self) -> dict[tuple[str, str], Key]:
        """Each key by section and name (built once: every line of every file looks its key up)."""
        return {(k.section, k.name): k for k in self.keys}

    @cached_property
    def sections(self) -> dict[str, list[str]]:
        """Each section's key names."""
        return {section: [k.name for k in self.keys if k.section == section]
                for section in dict.fromkeys(k.section for k in self.keys)}

_HOST = re.compile(r"[a-z0-9][a-z0-9_-]*")  # a short hostname, as configparser lower-cases it
_SECTION_LINE = re.compile(r"\[(?P<header>.+)\]")  # configparser's own
_OPTION_LINE = re.compile(r"(?P<option>.*?)\s*[=:]")


def key(section: str, name: str) -> Key:
    """The key ``[section] name``; KeyError when there is none."""
    return Schema.every().index[(section, name)]


@dataclass(frozen=True)
class Setting:
    """One effective value, the file it came from and the line there (0: none)."""

    section: str
    name: str  # may carry a .<host> suffix
    value: Value
    origin: str
    line: int = 0

    @property
    def where(self) -> str:
        """``file:line``, or the file (or ``(default)``) alone."""
        return f"{self.origin}:{self.line}" if self.line else self.origin


def _convert(key: Key, raw: str, where: str, name: str) -> Value:
    """Turn the text of a value into the key's type, or raise ConfigError naming it."""
    try:
        return key.check(raw.strip())
    except ValueError as exc:
        raise ConfigError(f"{where}: [{key.section}] {name} = {_shown(raw)} {exc}") from None


def _read_text(path: str) -> str:
    """The file's text: UTF-8, a byte-order mark allowed; ConfigError naming what is wrong."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} ({exc.strerror or exc});"
                          " fix the path or the file's permissions") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_FILE_BYTES >> 10} KiB: not a config file;"
                          " fix the path")
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + len(data) - len(body)
        line = data[:offset].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: byte {offset} (0x{data[offset]:02x}) is not UTF-8;"
                          " save the file as UTF-8 text") from None


def _parse(path: str, text: str) -> configparser.ConfigParser:
    """The ini structure of ``text``; ConfigError with ``file:line`` when it is not ini."""
    # a default section no header can name: "[DEFAULT]" is a section like the others
    parser = configparser.ConfigParser(interpolation=None, default_section="\n")
    try:
        parser.read_string(text, source=path)
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: {exc.line.strip()!r} comes before any [section];"
                          " put it under its section, e.g. [nodes]") from None
    except configparser.ParsingError as exc:
        number = exc.errors[0][0]
        line = text.splitlines()[number - 1].strip()
        raise ConfigError(f"{path}:{number}: {line!r} is neither a [section] nor key = value") from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: [{exc.section}] {exc.option} is set twice in this file;"
                          " keep one") from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: [{exc.section}] appears twice in this file;"
                          " merge the two") from None
    return parser


def _line_numbers(text: str) -> dict[tuple[str, str], int]:
    """Where each section header and key starts, as configparser reads them:
    ``(section, "")`` for a header, ``(section, key)`` (lower-cased) for a key."""
    numbers: dict[tuple[str, str], int] = {}
    section: str | None = None
    indent = -1  # of the last key: a deeper line continues its value
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        depth = len(line) - len(line.lstrip())
        if section is not None and indent >= 0 and depth > indent:
            continue
        header = _SECTION_LINE.match(stripped)
        if header:
            section, indent = header["header"], -1
            numbers.setdefault((section, ""), number)
            continue
        option = _OPTION_LINE.match(stripped)
        if section is not None and option:
            numbers.setdefault((section, option["option"].rstrip().lower()), number)
            indent = depth
    return numbers


def _suggest_key(schema: Schema, section: str, name: str) -> str:
    """`` (did you mean bandwidth?)``, `` (it belongs in [nodes])`` or nothing."""
    homes = [k.section for k in schema.keys if k.name == name]
    if homes:
        return f" (it belongs in {' or '.join(f'[{home}]' for home in homes)})"
    close = difflib.get_close_matches(name, schema.sections[section], n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _suggest_section(schema: Schema, section: str) -> str:
    close = difflib.get_close_matches(section.strip().lower(), list(schema.sections), n=1)
    return f" (did you mean [{close[0]}]?)" if close else ""


def _combinations(settings: dict[tuple[str, str], Setting], section: str,
                  names: Sequence[str]) -> Iterator[dict[str, Setting]]:
    """The effective values of keys that go together, for no host and for each host
    that overrides one of them."""
    hosts = {""} | {name.partition(".")[2] for sec, name in settings
                    if sec == section and name.partition(".")[0] in names}
    for host in sorted(hosts):
        yield {name: settings.get((section, f"{name}.{host}")) or settings[(section, name)] for name in names}


def _check_together(settings: dict[tuple[str, str], Setting]) -> None:
    """Check the keys whose meaning depends on other keys; ConfigError naming a file that set one."""
    for combo in _combinations(settings, "testbed", ("all_scope", "regularname", "rebootname")):
        scope = combo["all_scope"]
        try:
            select([], all_scope=str(scope.value),
                   prefixes=(str(combo["regularname"].value), str(combo["rebootname"].value)))
        except (SelectorError, ValueError) as exc:
            raise ConfigError(f"{_blame(list(combo.values())).where}: [testbed] {scope.name} = {_shown(scope.value)}:"
                              f" {str(exc)[:200]}") from None
    for combo in _combinations(settings, "transport", ("pattern_multicast", "pattern_port", "pattern_size")):
        size = combo["pattern_size"]
        count = size.value
        assert isinstance(count, int)
        for name, session in (("pattern_multicast", patterns.group), ("pattern_port", patterns.port)):
            pattern = combo[name]
            seen: dict[str | int, int] = {}
            for number in range(1, count + 1):
                try:
                    value = session(str(pattern.value), number)
                except ConfigError as exc:
                    origin = "by default" if size.origin == DEFAULT_ORIGIN else f"in {size.where}"
                    raise ConfigError(f"{_blame([pattern, size]).where}: {exc} (sessions run from 1 to"
                                      f" {size.name} = {count}, set {origin})") from None
                if value in seen:
                    raise ConfigError(f"{pattern.where}: [transport] {pattern.name} = {_shown(pattern.value)}"
                                      f" gives {value} to sessions {seen[value]} and {number}; each session"
                                      " needs its own: use * in the pattern")
                seen[value] = number


def _blame(settings: Sequence[Setting]) -> Setting:
    """Of values that do not go together, the first one a file set (a default is never to blame)."""
    given = [s for s in settings if s.origin != DEFAULT_ORIGIN]
    return (given or list(settings))[0]


def _shown(value: Value) -> str:
    """A value as an error message shows it: quoted, and cut when it is long."""
    text = str(value)
    return repr(text) if len(text) <= 80 else repr(text[:60]) + "..."


class Config:
    """The effective configuration: typed values, each with its origin, and the
    warnings met while reading the files (:attr:`warnings`, one line each).

    Build it with :meth:`load` (the standard files) or :meth:`from_files`.
    """

    def __init__(self, settings: dict[tuple[str, str], Setting], files: list[str],
                 server_host: str | None = None, warnings: list[str] | None = None,
                 schema: Schema | None = None) -> None:
        self._settings = settings
        self._schema = schema or Schema.every()
        self._index = self._schema.index
        self.files = files
        self.warnings: list[str] = list(warnings or [])
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
        unless they are listed in ``required``.  ConfigError on the first bad value."""
        schema = Schema.every()
        settings = _defaults(schema)
        must = {os.fspath(f) for f in required}
        read: list[str] = []
        warnings: list[str] = []
        for file in files:
            path = os.fspath(file)
            if not os.path.exists(path):
                if path in must:
                    raise ConfigError(f"config file {path!r} does not exist; fix the path"
                                      f" given with --config or ${ENV_VAR}")
                continue
            text = _read_text(path)
            parser = _parse(path, text)
            read.append(path)
            warnings += _layer(schema, settings, path, text, parser)
        _check_together(settings)
        for warning in warnings:
            log.warning("%s", warning)
        return cls(settings, read, warnings=warnings, schema=schema)

    @classmethod
    def from_text(cls, text: str, origin: str = "(text)") -> Config:
        """The defaults with ``text``, an ini file's content, over them (ConfigError as for a file):
        for a script or a test that builds its configuration itself."""
        schema = Schema.every()
        settings = _defaults(schema)
        warnings = _layer(schema, settings, origin, text, _parse(origin, text))
        _check_together(settings)
        return cls(settings, [], warnings=warnings, schema=schema)

    def _setting(self, section: str, name: str, host: str | None) -> Setting:
        if (section, name) not in self._index:
            raise KeyError(f"no such config key [{section}] {name}")
        for who in (host, self.server_host):
            if who:
                found = self._settings.get((section, f"{name}.{who.split('.')[0].lower()}"))
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
        """A key's value as text."""
        return str(self.get(section, name, host))

    def get_words(self, section: str, name: str, host: str | None = None) -> list[str]:
        """A ``words`` key's value split as a shell would (it was checked to split when read)."""
        return shlex.split(self.get_str(section, name, host))

    def get_int(self, section: str, name: str, host: str | None = None) -> int:
        """An ``int`` key's value."""
        value = self.get(section, name, host)
        assert isinstance(value, int)
        return value

    def get_float(self, section: str, name: str, host: str | None = None) -> float:
        """A ``seconds`` key's value."""
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
        order = {(k.section, k.name): i for i, k in enumerate(self._schema.keys)}
        yield from sorted(self._settings.values(),
                          key=lambda s: (order[(s.section, s.name.split(".")[0])], s.name))


def _defaults(schema: Schema) -> dict[tuple[str, str], Setting]:
    """Every key of ``schema`` at its default."""
    return {(k.section, k.name): Setting(k.section, k.name, _convert(k, k.default, DEFAULT_ORIGIN, k.name),
                                         DEFAULT_ORIGIN) for k in schema.keys}


def _layer(schema: Schema, settings: dict[tuple[str, str], Setting], path: str, text: str,
           parser: configparser.ConfigParser) -> list[str]:
    """Put the file's values over ``settings`` (ConfigError on a bad one); return its warnings."""
    lines = _line_numbers(text)
    warnings = []

    def where(section: str, name: str) -> str:
        line = lines.get((section, name))
        return f"{path}:{line}" if line else path

    for section in parser.sections():
        if section not in schema.sections:
            warnings.append(f"{where(section, '')}: [{section}] is not a known section"
                            f"{_suggest_section(schema, section)}; its keys are ignored")
            continue
        for name, raw in parser.items(section):
            base, dot, host = name.partition(".")
            known = schema.index.get((section, base))
            if known is None:
                warnings.append(f"{where(section, name)}: [{section}] {name} is not a known key"
                                f"{_suggest_key(schema, section, base)}; ignored")
                continue
            if dot and not _HOST.fullmatch(host):
                warnings.append(f"{where(section, name)}: [{section}] {name}: {host!r} is not a short hostname"
                                f" (write {base}.fit07); ignored")
                continue
            if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" and known.kind != "words":
                warnings.append(f"{where(section, name)}: [{section}] {name} = {raw}: the quotes are kept"
                                " as part of the value; remove them")
            value = _convert(known, raw, where(section, name), name)
            settings[(section, name)] = Setting(section, name, value, path, lines.get((section, name), 0))
    return warnings


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
    for key in keys():
        if key.section != section:
            section = key.section
            lines += ["", f"[{section}]"]
        lines += [f"# {key.doc} ({key.allowed()})", f"# {key.name} = {key.default}".rstrip()]
    return "\n".join(lines) + "\n"
