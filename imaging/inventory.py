"""The JSON inventory: one record per node with its cmc, control and data interfaces.

The format is R2lab's: a list of objects ``{"cmc": IF, "control": IF, "data": IF}``
where ``IF`` is ``{"hostname": …, "ip": …, "mac": …}`` and ``data`` is optional.
A node's number is the digits of its control hostname (``fit07`` → 7).
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

MAC_RE = re.compile(r"\A[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
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
        yield self.cmc
        yield self.control
        if self.data is not None:
            yield self.data


def _interface(entry: dict[str, Any], role: str, where: str) -> Interface:
    raw = entry.get(role)
    if not isinstance(raw, dict):
        raise InventoryError(f"{where}: '{role}' must be an object with hostname, ip and mac")
    try:
        hostname, ip, mac = (raw[k] for k in ("hostname", "ip", "mac"))
    except KeyError as exc:
        raise InventoryError(f"{where}: '{role}' lacks {exc.args[0]!r}") from None
    if not isinstance(hostname, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", hostname):
        raise InventoryError(f"{where}: '{role}' hostname {hostname!r} is not a hostname")
    try:
        ipaddress.ip_address(ip)
    except (ValueError, TypeError):
        raise InventoryError(f"{where}: '{role}' ip {ip!r} is not an IP address") from None
    try:
        mac = normalize_mac(str(mac))
    except ValueError:
        raise InventoryError(f"{where}: '{role}' mac {mac!r} is malformed (want aa:bb:cc:dd:ee:ff)") from None
    return Interface(hostname, str(ip), mac)


def parse_entries(entries: Any, source: str) -> list[Node]:
    """Check a decoded inventory and build its nodes; errors name the entry's index."""
    if not isinstance(entries, list):
        raise InventoryError(f"inventory {source} must be a JSON list of nodes")
    nodes: list[Node] = []
    for index, entry in enumerate(entries):
        where = f"inventory {source}, entry {index}"
        if not isinstance(entry, dict):
            raise InventoryError(f"{where}: must be an object with cmc, control and data")
        control = _interface(entry, "control", where)
        cmc = _interface(entry, "cmc", where)
        data = _interface(entry, "data", where) if entry.get("data") is not None else None
        digits = re.sub(r"\D", "", control.hostname)
        if not digits or int(digits) == 0:
            raise InventoryError(f"{where}: control hostname {control.hostname!r}"
                                 " carries no node number")
        nodes.append(Node(int(digits), cmc, control, data))
    return nodes


class Inventory:
    """The nodes of the testbed, looked up by number, hostname or MAC."""

    def __init__(self, nodes: list[Node], source: str = "(memory)") -> None:
        self.source = source
        self._by_number: dict[int, Node] = {}
        self._by_name: dict[str, Node] = {}
        self._by_mac: dict[str, Node] = {}
        for index, node in enumerate(nodes):
            where = f"inventory {source}, entry {index}"
            if node.number in self._by_number:
                raise InventoryError(f"{where}: node number {node.number} appears twice")
            self._by_number[node.number] = node
            for interface in node.interfaces():
                name = interface.hostname.lower()
                if name in self._by_name:
                    raise InventoryError(f"{where}: hostname {interface.hostname} appears twice")
                if interface.mac in self._by_mac:
                    raise InventoryError(f"{where}: MAC {interface.mac} appears twice")
                self._by_name[name] = node
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
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InventoryError(f"inventory {path} is not valid JSON: {exc.msg}"
                                 f" at line {exc.lineno}") from None
        return cls(parse_entries(entries, str(path)), str(path))

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
