"""The server side of a save: an asyncio TCP listener that writes one node's
stream to ``<name>.partial`` with a running sha256 and byte count, and
publishes it under its real name (plus a ``<name>.sha256`` sidecar) by an
atomic rename, only when the node's pipeline exited 0 and the stream ended
cleanly.  Whatever else happens, the partial file is removed (or kept as
``.partial`` when asked): nothing is ever left under a real name half-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from .errors import ImagingError, NodeFailure

log = logging.getLogger(__name__)
CHUNK = 1 << 20
KEEP_DRAIN = 1.0  # seconds a kept partial file may take to get what is still in flight
FILE_MODE = 0o644  # images and sidecars: readable by every user of the server, written by their owner


class SaveReceiver:
    """Receives one stream from ``peer`` on ``host:port`` into ``target``."""

    def __init__(self, target: Path, host: str, port: int, peer: str,
                 on_progress: Callable[[int], None] | None = None) -> None:
        self.target = target
        self.partial = target.with_name(target.name + ".partial")
        self.host, self.port, self.peer = host, port, peer
        self.on_progress = on_progress
        self.bytes = 0
        self.sha256 = hashlib.sha256()
        self.done: asyncio.Future[None] | None = None
        self._server: asyncio.Server | None = None
        self._handler: asyncio.Task[None] | None = None  # the connection being received

    async def start(self) -> None:
        """Listen; the partial file is created when the node connects."""
        self.done = asyncio.get_running_loop().create_future()
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as exc:
            raise ImagingError(f"cannot listen on {self.host}:{self.port} ({exc.strerror});"
                               " another program uses the port, or set [transport] pattern_port") from None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")
        assert self.done is not None
        if self.done.done() or (address and address[0] != self.peer):
            log.warning("save receiver on port %d: refused a connection from %s", self.port, address)
            writer.close()
            return
        self._handler = asyncio.current_task()
        try:
            with open(self.partial, "wb") as output:
                while chunk := await reader.read(CHUNK):
                    output.write(chunk)
                    self.sha256.update(chunk)
                    self.bytes += len(chunk)
                    if self.on_progress is not None:
                        self.on_progress(self.bytes)
                output.flush()
                os.fsync(output.fileno())
            if not self.done.done():
                self.done.set_result(None)
        except OSError as exc:
            reason = "the server's disk is full" if exc.errno == 28 else exc.strerror
            if not self.done.done():
                self.done.set_exception(NodeFailure(f"writing {self.partial} failed: {reason}"))
        except asyncio.CancelledError:
            # the save was stopped (Ctrl-C, SIGTERM, deadline) mid-stream: nothing awaits this task, and a
            # cancellation escaping it would be printed by asyncio as an error of the stream's callback
            log.info("save receiver on port %d: stopped mid-stream at %d bytes", self.port, self.bytes)
        finally:
            writer.close()

    async def finished(self) -> None:
        """Wait until the stream has ended (EOF) and is on disk; NodeFailure if writing failed."""
        assert self.done is not None
        await asyncio.shield(self.done)

    def append(self, data: bytes) -> None:
        """Add ``data`` after the stream (an image's trailer), in the checksum and the count too;
        NodeFailure when the server cannot write it."""
        try:
            with open(self.partial, "ab") as output:
                output.write(data)
                output.flush()
                os.fsync(output.fileno())
        except OSError as exc:
            reason = "the server's disk is full" if exc.errno == 28 else exc.strerror
            raise NodeFailure(f"writing {self.partial} failed: {reason}") from None
        self.sha256.update(data)
        self.bytes += len(data)

    def publish(self) -> str:
        """Rename the partial file to its real name and write the sidecar; the sha256."""
        digest = self.sha256.hexdigest()
        sidecar = self.target.with_name(self.target.name + ".sha256")
        temporary = sidecar.with_name(sidecar.name + ".partial")
        temporary.write_text(f"{digest}  {self.target.name}\n")
        for path in (self.partial, temporary):
            os.chmod(path, FILE_MODE)
        os.replace(self.partial, self.target)
        os.replace(temporary, sidecar)
        log.info("published %s (%d bytes, sha256 %s)", self.target, self.bytes, digest)
        return digest

    async def close(self, keep_partial: bool = False) -> None:
        """Stop listening; remove the partial file unless ``keep_partial``."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        if self._handler is not None and not self._handler.done():
            if keep_partial:  # what the node sent before failing is still in the socket: keep it too
                await asyncio.wait({self._handler}, timeout=KEEP_DRAIN)
            self._handler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._handler
        if self.done is not None and not self.done.done():
            self.done.cancel()
        self.discard(keep_partial)

    def discard(self, keep_partial: bool = False) -> None:
        """Synchronously remove what was not published (for a ``finally``); never raises."""
        if not keep_partial:
            with contextlib.suppress(OSError):
                self.partial.unlink()
