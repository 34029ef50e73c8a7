"""The inventory: one record per node with its cmc, control and data interfaces.

The records are R2lab's: ``{"cmc": IF, "control": IF, "data": IF}`` where ``IF`` is
``{"hostname": …, "ip": …, "mac": …}`` and ``data`` is optional.  Two files hold them,
both read as they are: rhubarbe 9.0's ``inventory-nodes.json``, a JSON list of
records, and rhubarbe 9.5's ``inventory-nodes.yaml``, a YAML mapping whose ``nodes``
is that list.  The file's name chooses (``.json``, ``.yaml``, ``.yml``), else its
content (JSON starts with ``[`` or ``{``).
A node's number is the one its control hostname carries after its letters
(``fit07``, ``fit007`` and ``fit07.r2lab.inria.fr`` → 7).  No two nodes share a number, and no
two interfaces share a hostname, an IP address or a MAC.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InventoryError
from .selector import MAX_NODE, hostname_number, shown

MAC_RE = re.compile(r"\A[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
HOSTNAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9.-]*\Z")
MAX_HOSTNAME = 253
ROLES = ("cmc", "control", "data")


def normalize_mac(mac: str) -> str:
    """A MAC in the inventory's canonical form: lower case, colon separated.

    Accepts ``-`` or ``:`` separators and any case; raises ValueError otherwise.
    """
    canonical = mac.strip().lower().replace("-", ":")
    if not MAC_RE.match(canonical):
        raise ValueError(f"malformed MAC {mac!r}")
    return canonical


@dataclass(frozen=True)
class Interface:
    """One network interface of a node."""

    hostname: str
    ip: str
    mac: str


@dataclass(frozen=True)
class Node:
    """A node of the testbed, as the inventory describes it."""

    number: int
    cmc: Interface
    control: Interface
    data: Interface | None = None

    @property
    def hostname(self) -> str:
        """The node's name for users: its control hostname (``fit07``)."""
        return self.control.hostname

    def interfaces(self) -> Iterator[Interface]:
        """The node's interfaces that exist."""
        for _, interface in self.roles():
            yield interface

    def roles(self) -> Iterator[tuple[str, Interface]]:
        """The node's interfaces that exist, each with its role (``cmc``, ``control``, ``data``)."""
        yield "cmc", self.cmc
        yield "control", self.control
        if self.data is not None:
            yield "data", self.data


_KINDS = {bool: "a boolean", int: "a number", float: "a number", list: "a list",
               dict: "an object", type(None): "null"}
_EXAMPLES = {"hostname": "fit07", "ip": "192.168.3.7", "mac": "00:03:1d:0e:03:19"}
_FIXES = {"hostname": "its own hostname", "ip": "its own address", "mac": "its own MAC"}


def _string(raw: dict[str, Any], key: str, role: str, where: str, from_yaml: bool) -> str:
    try:
        value = raw[key]
    except KeyError:
        raise InventoryError(f"{where}: '{role}' lacks {key!r}") from None
    if not isinstance(value, str):
        kind = _KINDS.get(type(value), f"a {type(value).__name__}")
        mac = _sexagesimal_mac(value) if key == "mac" and from_yaml else None
        if mac is not None:
            raise InventoryError(f"{where}: '{role}' mac is a number, not a string (YAML reads an unquoted {mac}"
                                 f" as a number in base 60): quote it, \"{mac}\"")
        raise InventoryError(f"{where}: '{role}' {key} is {kind}, not a string: write it \"{_EXAMPLES[key]}\"")
    return value


def _sexagesimal_mac(value: Any) -> str | None:
    """The MAC a YAML 1.1 parser read as a base-60 number (``10:20:30:40:50:59``), written back; None when
    ``value`` is not such a number."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return None
    digits = []
    for _ in range(5):
        value, digit = divmod(value, 60)
        digits.append(digit)
    if not 0 < value < 100:  # the first group, in decimal digits as YAML read it (it starts with 1-9)
        return None
    digits.append(value)
    return ":".join(f"{d:02d}" for d in reversed(digits))


def _interface(entry: dict[str, Any], role: str, where: str, from_yaml: bool) -> Interface:
    raw = entry.get(role)
    if not isinstance(raw, dict):
        raise InventoryError(f"{where}: '{role}' must be an object with hostname, ip and mac")
    hostname, ip, mac = (_string(raw, key, role, where, from_yaml) for key in ("hostname", "ip", "mac"))
    if len(hostname) > MAX_HOSTNAME or not HOSTNAME_RE.match(hostname):
        raise InventoryError(f"{where}: '{role}' hostname {shown(hostname)} is not a hostname"
                             f" (letters, digits, '.' and '-', at most {MAX_HOSTNAME})")
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise InventoryError(f"{where}: '{role}' ip {shown(ip)} is not an IP address"
                             f" (e.g. \"{_EXAMPLES['ip']}\")") from None
    try:
        mac = normalize_mac(mac)
    except ValueError:
        raise InventoryError(f"{where}: '{role}' mac {shown(mac)} is malformed"
                             " (want aa:bb:cc:dd:ee:ff)") from None
    return Interface(hostname, str(address), mac)


def parse_entries(entries: Any, source: str, from_yaml: bool = False) -> list[Node]:
    """Check a decoded inventory and build its nodes; errors name the entry's index.

    A node's number is the one its control hostname carries: the short name
    must be letters then the number (``fit07``, ``fit07.r2lab.inria.fr``).
    """
    if isinstance(entries, dict) and "nodes" in entries:  # rhubarbe 9.5's YAML: nodes: [records]
        entries = entries["nodes"]
    if not isinstance(entries, list):
        raise InventoryError(f"inventory {source} must be a list of nodes (JSON), or a mapping whose"
                             " 'nodes' is that list (YAML)")
    nodes: list[Node] = []
    for index, entry in enumerate(entries):
        where = f"inventory {source}, entry {index}"
        if not isinstance(entry, dict):
            raise InventoryError(f"{where}: must be an object with cmc, control and data")
        control = _interface(entry, "control", where, from_yaml)
        cmc = _interface(entry, "cmc", where, from_yaml)
        data = _interface(entry, "data", where, from_yaml) if entry.get("data") is not None else None
        number = hostname_number(control.hostname)
        if number is None:
            raise InventoryError(f"{where}: control hostname {shown(control.hostname)} carries no"
                                 f" node number: name it letters then a number from 1 to {MAX_NODE}"
                                 " (fit07, or fit07.example.org)")
        nodes.append(Node(number, cmc, control, data))
    return nodes


def is_yaml(path: Path, text: str) -> bool:
    """Whether the inventory file is YAML (rhubarbe 9.5) rather than JSON (rhubarbe 9.0): by its name,
    else by its content."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml", ".json"):
        return suffix != ".json"
    return not text.lstrip().startswith(("[", "{"))


def _decode_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InventoryError(f"inventory {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except ValueError:  # json's own int() past Python's 4300 digits
        raise InventoryError(f"inventory {path} holds a number too long to read;"
                             " an inventory holds none: fix or rebuild it with inventory/configure.py") from None


def _decode_yaml(text: str, path: Path) -> Any:
    import yaml  # only for a YAML inventory
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InventoryError(f"inventory {path} is not valid YAML: {exc.problem or exc.context}{where}") from None
    except (yaml.YAMLError, ValueError) as exc:
        raise InventoryError(f"inventory {path} is not valid YAML: {str(exc).splitlines()[0]}") from None


class Inventory:
    """The nodes of the testbed, looked up by number, hostname or MAC.

    No two nodes share a number, and no two interfaces (of any nodes) share a
    hostname, an IP address or a MAC.
    """

    def __init__(self, nodes: list[Node], source: str = "(memory)") -> None:
        self.source = source
        self._by_number: dict[int, Node] = {}
        self._by_name: dict[str, Node] = {}
        self._by_mac: dict[str, Node] = {}
        entry_of: dict[int, int] = {}
        owners: dict[tuple[str, str], tuple[int, str]] = {}  # (field, value) -> (entry, role)
        for index, node in enumerate(nodes):
            where = f"inventory {source}, entry {index}"
            if node.number in entry_of:
                other = entry_of[node.number]
                raise InventoryError(f"{where}: node number {node.number} ({node.hostname}) is also"
                                     f" entry {other}'s ({nodes[other].hostname});"
                                     " each node needs its own number")
            entry_of[node.number] = index
            self._by_number[node.number] = node
            for role, interface in node.roles():
                for field, value in (("hostname", interface.hostname.lower()),
                                     ("ip", interface.ip), ("mac", interface.mac)):
                    if (field, value) in owners:
                        other, other_role = owners[field, value]
                        raise InventoryError(f"{where}: '{role}' {field} {value} is also entry {other}'s"
                                             f" '{other_role}' {field}; each interface needs {_FIXES[field]}")
                    owners[field, value] = (index, role)
                self._by_name[interface.hostname.lower()] = node
                self._by_mac[interface.mac] = node

    @classmethod
    def load(cls, path: Path) -> Inventory:
        """Read and check the inventory file."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InventoryError(f"inventory {path} does not exist; set [testbed] inventory"
                                 " in your config or create it (see inventory/configure.py)") from None
        except OSError as exc:
            raise InventoryError(f"cannot read inventory {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise InventoryError(f"inventory {path} is not UTF-8 text (byte {exc.start}):"
                                 " it must be JSON or YAML; rebuild it with inventory/configure.py") from None
        from_yaml = is_yaml(path, text)
        try:
            entries = _decode_yaml(text, path) if from_yaml else _decode_json(text, path)
        except RecursionError:
            raise InventoryError(f"inventory {path} nests too deeply to be an inventory:"
                                 " it must be a list of node objects (see inventory/configure.py)") from None
        return cls(parse_entries(entries, str(path), from_yaml), str(path))

    def __iter__(self) -> Iterator[Node]:
        return iter(sorted(self._by_number.values(), key=lambda n: n.number))

    def __len__(self) -> int:
        return len(self._by_number)

    def numbers(self) -> frozenset[int]:
        """The node numbers the inventory knows."""
        return frozenset(self._by_number)

    def by_number(self, number: int) -> Node:
        """The node with that number; KeyError if none."""
        return self._by_number[number]

    def by_hostname(self, hostname: str) -> Node | None:
        """The node one of whose interfaces has that hostname (short or not)."""
        name = hostname.lower()
        return self._by_name.get(name) or self._by_name.get(name.split(".")[0])

    def by_mac(self, mac: str) -> Node | None:
        """The node one of whose interfaces has that MAC (any case or separator)."""
        try:
            return self._by_mac.get(normalize_mac(mac))
        except ValueError:
            return None
