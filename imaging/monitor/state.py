"""What the monitor last saw of every node, and who wants to hear of each change."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..jobboard import read_jobs
from .probe import NodeView, ProbeSettings, probe_node

if TYPE_CHECKING:
    from ..inventory import Node
    from ..power.base import Power

log = logging.getLogger(__name__)
QUEUE_SIZE = 1000  # changes a slow subscriber may lag behind before it is dropped
JOBS_INTERVAL = 0.5  # seconds between two readings of the job board (a load's progress moves fast)


class Monitor:
    """Every node's view, probed in a loop of its own every ``cycle`` seconds."""

    def __init__(self, nodes: Sequence[Node], settings: ProbeSettings, cycle: float, lock_dir: Path | None = None,
                 parallel: int = 64) -> None:
        self.nodes = list(nodes)
        self.settings = settings
        self.cycle = cycle
        self.lock_dir = lock_dir  # where the running loads and saves publish themselves (imaging.jobboard)
        self.views = {node.number: NodeView(node.hostname, node.number) for node in self.nodes}
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._ssh_slots = asyncio.Semaphore(parallel)  # 400 nodes do not open 400 ssh sessions at once

    def snapshot(self) -> list[dict[str, Any]]:
        """Every node as JSON, in node order."""
        return [self.views[node.number].as_json() for node in self.nodes]

    def update(self, view: NodeView) -> None:
        """Record a node's new view; tell the subscribers when its state changed."""
        old = self.views.get(view.number)
        self.views[view.number] = view
        if old is None or old.state() != view.state():
            self._publish(json.dumps(view.as_json()))

    def _publish(self, message: str) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:  # a subscriber that does not read: it is dropped, not waited for
                self._subscribers.discard(queue)
                log.warning("a subscriber lagged %d changes behind: dropped", QUEUE_SIZE)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[str]]:
        """A queue of the changes (each a node's JSON) for the duration of the block."""
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    async def probe(self, node: Node, power: Power) -> None:
        """Look at one node now and record it; never raises for the node's faults."""
        try:
            view = await probe_node(node, power, self.settings, self.views[node.number], self._ssh_slots)
        except Exception:  # a bug in a probe must not stop the monitor: the node keeps its last view
            log.exception("%s: probe failed", node.hostname)
            return
        view.job = self.views[node.number].job  # the job board's, which may have moved while the probe ran
        self.update(view)

    def follow_jobs(self) -> None:
        """Give each node the load or save the job board says runs on it now (or none)."""
        jobs = read_jobs(self.lock_dir) if self.lock_dir is not None else {}
        for node in self.nodes:
            view = self.views[node.number]
            job = jobs.get(node.hostname)
            if job != view.job:
                self.update(replace(view, job=job))

    async def once(self, power: Power) -> None:
        """One round: every node probed once, all at once, and the jobs running on them."""
        self.follow_jobs()
        await asyncio.gather(*(self.probe(node, power) for node in self.nodes))

    async def run(self, power: Power) -> None:
        """Probe every node every ``cycle`` seconds, each in its own loop (a slow node delays only itself),
        until cancelled."""
        loop = asyncio.get_running_loop()

        async def follow(node: Node) -> None:
            while True:
                started = loop.time()
                await self.probe(node, power)
                await asyncio.sleep(max(0.0, self.cycle - (loop.time() - started)))

        async def jobs() -> None:
            while True:
                self.follow_jobs()
                await asyncio.sleep(min(self.cycle, JOBS_INTERVAL))

        await asyncio.gather(jobs(), *(follow(node) for node in self.nodes))
