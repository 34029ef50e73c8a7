"""What every transport provides: the sender's command line (on the server), the
receiver's command line (on the node, through telnet), a parser of the
receiver's output, and the save pipeline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ..config import Config, Key
    from ..disklayout import Layout
    from ..partclone import Steps


@dataclass(frozen=True)
class Channel:
    """The multicast group and port of one session."""

    group: str
    port: int


@dataclass(frozen=True)
class SendPlan:
    """Everything the sender of one session needs."""

    image: Path
    channel: Channel
    server_ip: str
    bandwidth_mibps: int  # mebibits per second
    receivers: int
    start_timeout: float  # seconds the sender waits for late receivers

    @property
    def bits_per_second(self) -> int:
        """The bandwidth cap in bits per second."""
        return self.bandwidth_mibps * 2**20


@dataclass(frozen=True)
class Progress:
    """What one line of receiver output said."""

    percent: float | None = None
    message: str = ""


class ProgressParser(ABC):
    """Reads a receiver's output line by line; knows how far it got and what went wrong.

    ``work`` is a count that grows whenever the receiver makes progress (bytes received, bytes
    written, chunks): a load judges a receiver alive by it, never by a fixed time.  ``steps``
    follows a file-system-aware transfer partition by partition (which one runs, how far)."""

    def __init__(self) -> None:
        self.failure: str | None = None
        self.finished = False
        self.work = 0
        self.steps: Steps | None = None  # a file-system-aware transfer's steps (partition by partition)

    @abstractmethod
    def feed(self, line: str) -> Progress | None:
        """Digest one line; return progress when the line tells some."""

    def partial(self, text: str) -> Progress | None:
        """Digest the last line of output while it is still being written (the whole line comes to
        :meth:`feed` once it ends); return progress when it tells some.  Most receivers end their lines."""
        return None


def pipeline(producer: str, consumer: str) -> str:
    """``producer | consumer`` whose exit status is 0 only when both succeed
    (POSIX sh has no ``pipefail``: the producer's status travels on fd 3)."""
    return (f"s=$( {{ {{ {producer}; echo $? >&3; }} | {consumer} >/dev/null || echo failed >&3; }} 3>&1 );"
            ' [ "$s" = 0 ]')


class Transport(ABC):
    """One way of moving images between the server and the nodes."""

    name: ClassVar[str]  # its name in imaging.registry.TRANSPORTS, whose line also gives the formats it loads
    KEYS: ClassVar[tuple[Key, ...]] = ()  # its config keys, read by from_config
    save_extension: ClassVar[str]  # what imaging-save writes
    raw_extension: ClassVar[str | None] = None  # what imaging-save --raw writes (None: no such format)
    layout_extensions: ClassVar[tuple[str, ...]] = ()  # images that record a disk layout (file-system-aware)

    @classmethod
    @abstractmethod
    def from_config(cls, config: Config) -> Transport:
        """The transport with the programs and options of its config section."""

    def records_layout(self, name: str) -> bool:
        """True when image file ``name`` is file-system-aware: it records the layout of the disk it holds."""
        return name.endswith(self.layout_extensions) if self.layout_extensions else False

    @property
    @abstractmethod
    def sender_program(self) -> str:
        """The server-side program (checked to exist before any node is touched)."""

    @abstractmethod
    def sender_argv(self, plan: SendPlan) -> list[str]:
        """The server-side program and its arguments."""

    @abstractmethod
    def receiver_command(self, channel: Channel, server_ip: str, node_ip: str, disk: str,
                         image: Path, layout: Layout | None = None) -> str:
        """The shell command run on the node to write ``disk`` (with the image's ``layout`` when it records
        one); values are shell-quoted."""

    async def disk_bytes_needed(self, image: Path) -> int | None:
        """How many bytes of disk the image fills, when that can be known without the node."""
        return None

    @abstractmethod
    def parser(self, image_size: int, content_size: int | None = None,
               layout: Layout | None = None) -> ProgressParser:
        """A fresh parser for one receiver's output; ``image_size`` is the image file's size,
        ``content_size`` what it expands to on the disk, when known."""

    @abstractmethod
    def save_command(self, disk: str, server_ip: str, port: int, layout: Layout | None = None,
                     disk_size: int | None = None, raw: bool = False) -> str:
        """The shell command run on the node to stream ``disk`` to server_ip:port: file-system-aware when
        given the disk's ``layout`` (or, for a format that reads the file systems itself, unless ``raw``);
        ``disk_size``, when known, is recorded where the format can say it."""

    def save_parser(self, layout: Layout) -> ProgressParser | None:
        """A parser of a file-system-aware save's output (None: the transport saves raw disks only)."""
        return None

    @abstractmethod
    def node_programs(self, image: Path | None, layout: Layout | None = None) -> tuple[str, ...]:
        """The programs the node's imaging OS must have: to load ``image``, or to save when None
        (checked on each node before they are run: a missing one is named, never waited on)."""
