"""The monitor as a command runs it: one snapshot, or the service until interrupted."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..power.base import Power, PowerOptions
from .probe import ProbeSettings
from .state import Monitor

if TYPE_CHECKING:
    from ..inventory import Node

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def snapshot(nodes: Sequence[Node], power: PowerOptions, settings: ProbeSettings,
                   lock_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every node looked at once: the JSON of ``/api/nodes``."""
    monitor = Monitor(nodes, settings, cycle=0.0, lock_dir=lock_dir)
    async with Power(power) as drivers:
        await monitor.once(drivers)
    return monitor.snapshot()


async def serve(nodes: Sequence[Node], power: PowerOptions, settings: ProbeSettings, cycle: float,
                host: str, port: int, prog: str, lock_dir: Path | None = None) -> None:
    """Probe the nodes every ``cycle`` seconds and serve what is seen on ``host``:``port`` until SIGINT or
    SIGTERM; UsageError when the address cannot be listened on."""
    from aiohttp import web

    from .web import make_app

    monitor = Monitor(nodes, settings, cycle, lock_dir)
    runner = web.AppRunner(make_app(monitor), handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:  # aiohttp's message repeats the address: the system's reason is enough
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise UsageError(f"cannot listen on {host}:{port} ({reason}): choose another with --listen"
                             " or [monitor] listen") from None
        print(f"{prog}: {len(monitor.nodes)} nodes, every {cycle:g}s; serving http://{host}:{port}/", flush=True)
        log.info("monitor of %d nodes serving on %s:%d", len(monitor.nodes), host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in STOP_SIGNALS:  # a service's end: stop probing, close the sessions, exit 0
            loop.add_signal_handler(number, stop.set)
        async with Power(power) as drivers:
            probing = asyncio.create_task(monitor.run(drivers))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({probing, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (probing, stopping):
                task.cancel()
            await asyncio.gather(probing, stopping, return_exceptions=True)
    finally:
        await runner.cleanup()
    log.info("monitor stopped")
