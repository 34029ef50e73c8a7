#!/usr/bin/env python3
"""The monitor at scale: ``imaging-monitor`` over 400 cards answering 50 ms late (``--cmc-only`` testbed,
``cmc=slow:50`` on all), measured in one run:

(a) one full look at every node (``--once``, median of 3 after a warm-up): with every card on (the
    nodes behind them do not exist on a CMC-only testbed, so each node's control-interface probes run
    out their ``probe_timeout``: the worst case of a cycle), then with every card off (the power
    probe alone, as for nodes switched off);
(b) the service at its default 5 s cycle for 30 s: its CPU share, and how fresh each node's view stays
    (the oldest ``updated`` of ``/api/nodes`` at the end, against cycle + probe_timeout);
(c) R2lab's ``rhubarbe monitornodes`` on the same cards, where it can be run (a Python 3.12 virtual
    environment with ``rhubarbe`` installed, named by ``$RHUBARBE``, e.g. ``/tmp/rh/bin/rhubarbe``, and
    ``ping``): its CPU share at the same cycle over the same 30 s.  It reaches the cards by their
    hostnames: for the run, the server namespace gets an ``/etc/hosts`` of its own
    (``/etc/netns/<namespace>/hosts``, which ``ip netns exec`` mounts), removed afterwards.

Needs root (network namespaces), like the testbed.  Every testbed it starts is torn down.  Run it from
the checkout:

    .venv/bin/python bench/monitor.py
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from control import cpu_seconds, slow_cards
from testbeds import in_server, lacks_root, product_env, rhubarbe_site, temporary_testbed

if TYPE_CHECKING:
    from imaging_testbed.layout import Layout

NODES = 400
CMC_LATENCY_MS = 50
ONCE_RUNS = 3
CYCLE = 5.0
WINDOW = 30.0  # seconds the service runs while its CPU is measured
PORT = 18091
BIN = Path(sys.executable).parent


def once(layout: object, argv: list[str]) -> tuple[float, list[dict[str, object]]]:
    """Run ``imaging-monitor -a --once``; its wall time and the nodes it reported."""
    started = time.perf_counter()
    done = subprocess.run(in_server(layout, argv), env=product_env(layout), capture_output=True, text=True,
                          timeout=300, check=False)
    seconds = time.perf_counter() - started
    return seconds, json.loads(done.stdout) if done.stdout.strip().startswith("[") else []


def no_key(layout: object) -> str:
    """A config file for a CMC-only testbed, which has no ssh key (its nodes do not exist): the user's usual
    keys instead; its path."""
    path = Path(layout.directory) / "monitor.conf"  # type: ignore[attr-defined]
    path.write_text("[networking]\nssh_key =\n")
    return str(path)


def full_cycle(layout: object, label: str) -> None:
    """(a): median of ``ONCE_RUNS`` full looks, after a warm-up."""
    argv = [str(BIN / "imaging-monitor"), "-a", "--once", "--config", no_key(layout)]
    times, views = [], []
    for run in range(ONCE_RUNS + 1):
        seconds, views = once(layout, argv)
        if run:
            times.append(seconds)
    powers: dict[str, int] = {}
    for view in views:
        powers[str(view["power"])] = powers.get(str(view["power"]), 0) + 1
    latencies = [float(v["latency"]["power"]) for v in views if isinstance(v.get("latency"), dict)]  # type: ignore[index]
    print(f"  {label:<34} {statistics.median(times):6.2f} s  (runs {', '.join(f'{t:.2f}' for t in times)});"
          f" answers {powers}; card latency median {statistics.median(latencies) * 1000:.0f} ms")


def service_share(layout: object, argv: list[str], label: str, pid_of: str | None = None,
                  cwd: Path | None = None) -> float:
    """(b)/(c): run ``argv`` in the server namespace (in ``cwd``) for ``WINDOW`` seconds after a first cycle;
    its CPU share (of one core).  ``pid_of``: the process whose CPU counts, found by this text in its
    command line."""
    process = subprocess.Popen(in_server(layout, argv), env=product_env(layout), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True, cwd=cwd)
    try:
        time.sleep(CYCLE + 2)  # its first cycle
        pid = process.pid
        if pid_of:
            found = subprocess.run(["pgrep", "-f", pid_of], capture_output=True, text=True).stdout.split()
            pid = int(found[-1]) if found else pid
        before = cpu_seconds(pid, children=True)
        time.sleep(WINDOW)
        share = (cpu_seconds(pid, children=True) - before) / WINDOW
        print(f"  {label:<34} CPU {share * 100:5.1f} % of a core over {WINDOW:g} s at a {CYCLE:g} s cycle")
        return share
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def freshness(layout: object) -> None:
    """(b): how old the oldest node's view is, the service running."""
    argv = [str(BIN / "imaging-monitor"), "-a", "--cycle", str(CYCLE), "--listen", f"127.0.0.1:{PORT}",
            "--config", no_key(layout)]
    process = subprocess.Popen(in_server(layout, argv), env=product_env(layout), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(3 * CYCLE)
        done = subprocess.run(in_server(layout, ["curl", "-s", "-m", "10", f"http://127.0.0.1:{PORT}/api/nodes"]),
                              capture_output=True, text=True, check=False)
        now = time.time()
        ages = [now - float(view["updated"]) for view in json.loads(done.stdout)]
        print(f"  views of {len(ages)} nodes: oldest {max(ages):.2f} s, median {statistics.median(ages):.2f} s old"
              f" (a look every {CYCLE:g} s)")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


def rhubarbe(layout: Layout) -> None:
    """(c), where ``$RHUBARBE`` names a runnable ``rhubarbe`` (:func:`testbeds.rhubarbe_site`)."""
    with rhubarbe_site(layout, CYCLE) as folder:
        if folder is not None:
            service_share(layout, [os.environ["RHUBARBE"], "monitornodes", "-a", "-c", str(CYCLE), "-u",
                                   "ws://127.0.0.1:9/", "--prometheus-port", "0"], "rhubarbe monitornodes",
                          pid_of="monitornodes", cwd=folder)


def main() -> int:
    """Every part, on one testbed."""
    if lacks_root(__file__):
        return 2
    print(f"monitor benchmark: {NODES} CMC-only nodes, every card answering {CMC_LATENCY_MS} ms late,"
          f" on {os.cpu_count()} cores")
    started = time.monotonic()
    import asyncio
    with temporary_testbed(NODES, prefix="bench-monitor-", cmc_only=True) as layout:
        asyncio.run(slow_cards(layout, CMC_LATENCY_MS))
        print("\n(a) one look at every node (imaging-monitor -a --once)")
        full_cycle(layout, "cards on (control probes time out)")
        subprocess.run(in_server(layout, [str(BIN / "imaging-off"), "-a"]), env=product_env(layout),
                       capture_output=True, check=False, timeout=120)
        full_cycle(layout, "cards off (power probe only)")
        subprocess.run(in_server(layout, [str(BIN / "imaging-on"), "-a"]), env=product_env(layout),
                       capture_output=True, check=False, timeout=120)
        print(f"\n(b) the service, every {CYCLE:g} s")
        service_share(layout, [str(BIN / "imaging-monitor"), "-a", "--cycle", str(CYCLE), "--listen",
                               f"127.0.0.1:{PORT}", "--config", no_key(layout)], "imaging-monitor")
        freshness(layout)
        print("\n(c) side by side")
        rhubarbe(layout)
    print(f"\nbenchmark wall time: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
