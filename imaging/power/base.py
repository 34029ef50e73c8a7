"""The power interface: what a driver answers for a node, and the command run's set of drivers.

A driver speaks the verbs of R2lab's cards, whatever its wire: ``status`` answers ``on`` or ``off``;
``on``, ``off`` and ``reset`` answer ``ok`` once the controller took the order; ``info`` answers free text;
a driver whose controller can choose the next boot device takes ``boot_from_network`` before a reset into the
imaging OS (a BMC's boot override; nodes that always boot from the network first need none).
Anything else (no answer, a timeout, refused credentials, an answer outside this) is a :class:`PowerError`
for that node, naming the driver.  :class:`Power` holds the drivers one command run uses, each opened once
(one HTTP session, one credentials file) and closed at its end, and sends each node's verbs to the driver its
config names (``[nodes] power``, ``power.<host>`` per node).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, cast

from .. import registry
from ..config import Config
from ..errors import NodeFailure

if TYPE_CHECKING:
    from ..config import Key
    from ..inventory import Node
    from .credentials import Credentials

EXPECTED: dict[str, tuple[str, ...] | None] = {"status": ("on", "off"), "on": ("ok",), "off": ("ok",),
                                               "reset": ("ok",), "info": None}
VERBS = tuple(EXPECTED)


class PowerError(NodeFailure):
    """A node's power controller did not answer, refused us, or answered outside the interface."""


@dataclass(frozen=True)
class PowerOptions:
    """How the command run reaches the nodes' power controllers."""

    timeout: float  # seconds for one request
    drivers: Mapping[int, str] = field(default_factory=dict)  # node number -> driver name (others: default)
    default: str = "cmc"
    credentials: Credentials | None = None  # the BMCs' logins (ipmi, redfish), never logged
    config: Config = field(default_factory=lambda: Config.from_text(""))  # where each driver reads its KEYS

    def driver_of(self, node: Node) -> str:
        """The name of the driver of ``node``."""
        return self.drivers.get(node.number, self.default)


class PowerDriver(ABC):
    """One way of driving the power of nodes: a module of :mod:`imaging.power` and a registry line."""

    name: ClassVar[str]
    label: ClassVar[str]  # how messages name the controller: "CMC", "BMC (ipmi)"
    needs_login: ClassVar[bool] = False  # it logs in with [power] credentials
    KEYS: ClassVar[tuple[Key, ...]] = ()  # its config keys, read from PowerOptions.config

    def __init__(self, options: PowerOptions) -> None:
        self.options = options

    async def open(self) -> None:  # noqa: B027 (a driver with nothing to open keeps it)
        """Get ready for a command run (an HTTP session, say)."""

    async def close(self) -> None:  # noqa: B027
        """Release what :meth:`open` took."""

    @abstractmethod
    async def send(self, node: Node, verb: str) -> str:
        """Carry out one verb of :data:`VERBS` on the node's controller; its answer in the interface's words
        (``on``/``off`` for status, ``ok`` for a change, text for info), or PowerError."""

    async def boot_from_network(self, node: Node) -> None:  # noqa: B027 (a controller without the notion keeps it)
        """Make the node's next boot a network one, where the controller can (a BMC's one-time boot device
        override); PowerError when the controller refuses.  R2lab's cards have no such thing: their nodes
        boot from the network first, always."""


class Power:
    """The drivers of one command run; use as ``async with Power(options) as power: await power.status(node)``."""

    def __init__(self, options: PowerOptions) -> None:
        self.options = options
        self._drivers: dict[str, PowerDriver] = {}

    async def __aenter__(self) -> Power:
        """Open each driver the nodes use; when one cannot open, those already open are closed again."""
        try:
            for name in sorted({self.options.default, *self.options.drivers.values()}):
                driver = cast(type[PowerDriver], registry.resolve(registry.power(name).target))(self.options)
                await driver.open()
                self._drivers[name] = driver
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        traceback: TracebackType | None) -> None:
        drivers, self._drivers = list(self._drivers.values()), {}
        for driver in drivers:
            await driver.close()

    async def request(self, node: Node, verb: str) -> str:
        """Send one verb to the node's controller; its answer (checked against :data:`EXPECTED`) or PowerError."""
        if verb not in EXPECTED:
            raise ValueError(f"unknown power verb {verb!r}")
        name = self.options.driver_of(node)
        assert name in self._drivers, "use Power as an async context manager"
        answer = await self._drivers[name].send(node, verb)
        expected = EXPECTED[verb]
        if expected is not None and answer not in expected:
            shown = answer if len(answer) <= 40 else answer[:37] + "..."
            raise PowerError(f"unexpected answer {shown!r} to {verb}")
        return answer

    async def status(self, node: Node) -> str:
        """``on`` or ``off``."""
        return await self.request(node, "status")

    async def boot_from_network(self, node: Node) -> None:
        """Ask the node's controller to boot it from the network next time (a hint: the boot decision on the
        server still chooses what that boot runs); PowerError when the controller refuses."""
        name = self.options.driver_of(node)
        assert name in self._drivers, "use Power as an async context manager"
        await self._drivers[name].boot_from_network(node)

    def label(self, node: Node) -> str:
        """How messages name the node's controller."""
        return self._drivers[self.options.driver_of(node)].label
