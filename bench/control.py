#!/usr/bin/env python3
"""The control plane: how long the product takes to ask many CMCs, and to give up
on a node that does not answer, side by side with naive baselines run in the same run.

(a) ``imaging-status -a`` on a ``--cmc-only`` testbed of 400 management cards,
    median of 5 runs, against the same 400 ``GET /status`` made one after the
    other: by one Python process opening a fresh HTTP connection per request
    (like a naive tool), and by a shell loop of ``curl``.  Every figure is the
    wall time of a whole command (interpreter start included) run in the
    testbed's server namespace; ratio = baseline / product.  Also: each
    command's CPU time, the CPU of the one process serving every emulated CMC,
    and each command's fixed cost (one CMC), to compare the cost per extra CMC.
    Then the same with every card answering 50 ms late (``cmc=slow:50``), as
    real cards do: product (median of 5) against the sequential loop (one run).
(b) ``imaging-wait -t 5`` on a full testbed of 37 nodes, all up on ssh: one node
    alone, then ``-a`` with every node healthy, then ``-a`` with fit17
    black-holed (``loss=100%`` on its link, set while it is up): total wall time,
    CPU, when the healthy nodes were all reported (the times the product prints
    per node, and when their lines reached us), the black-holed node's verdict
    and time, wall / timeout (expected ≈ 1, at most timeout + 1 s) and the exit
    code (1 expected).
(c) ``imaging-status -a`` per power driver, side by side in one run: on ``--cmc-only``
    testbeds of 37 and 100 nodes brought up with ``--power cmc``, ``ipmi`` (an
    OpenIPMI ``ipmi_sim`` per node, the product running ``ipmitool`` per node) and
    ``redfish`` (sushy-tools' emulator, the product's aiohttp session): median of 3
    runs after a warm-up, the command's CPU, and each driver's wall time over the
    CMC's for the same node count.  The BMCs hand every action to the same cards,
    so the differences are the drivers' and their protocols'.
(d) ``imaging-wait -t 5`` at scale, nodes already up: on 1, 8 and 37 nodes of a testbed of 37, and on
    1 and 100 of one of 100 (fit001…fit100, which rhubarbe cannot name), side by side with R2lab's
    ``rhubarbe wait`` where it can be run (``$RHUBARBE``, see ``testbeds.rhubarbe_site``): medians of
    alternated rounds after a warm-up, the largest per-node time the product prints, the ratios
    (rhubarbe / imaging, and each count over one node), and the CPU the nodes' own sshd spent on the
    logins: the emulated nodes share this machine's cores, so one node's time plus that CPU over the
    cores is the least a run can take here (its "floor").

Needs root (network namespaces), like the testbed.  Every testbed it starts is
torn down, whatever happens.  Takes about 2 minutes.  Run it from the checkout:

    .venv/bin/python bench/control.py [status] [wait] [drivers] [scale]   # the parts to run (default: all)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from testbeds import (
    SETTLE_TIMEOUT,
    in_server,
    lacks_root,
    product_env,
    rhubarbe_site,
    temporary_testbed,
    wait_for_stage,
)

if TYPE_CHECKING:  # imported lazily: the baseline helper must start as fast as a naive script
    from imaging_testbed.layout import Layout

BIN = Path(sys.executable).parent
STATUS_NODES = 400
STATUS_RUNS = 5
WAIT_NODES = 37
WAIT_TIMEOUT = 5.0
BLACKHOLED = 17
CMC_LATENCY_MS = 50  # what a real card may take to answer: the emulated ones answer at once
BOOT_DELAY = 0.3
COMMAND_TIMEOUT = 60.0  # no single command of this benchmark may take longer
SCALE_BEDS = ((37, (1, 8, 37)), (100, (1, 100)))  # (d): testbeds, and the node counts waited for on each
SCALE_ROUNDS = 5
DRIVERS = ("cmc", "ipmi", "redfish")  # the power drivers compared in (c)
DRIVER_NODES = (37, 100)
DRIVER_RUNS = 3
DRIVER_TIMEOUT = 20.0  # [nodes] cmc_timeout of (c): the emulated BMCs, one Python process for Redfish, are slow
HELPER = "--sequential-status"  # internal: the Python baseline, run in the server namespace
RESULT_LINE = re.compile(r"^(?P<node>\S+): (?P<detail>.*) \((?P<seconds>[\d.]+)s\)$")


def testbed(count: int, *, cmc_only: bool = False, power: str = "cmc") -> AbstractContextManager[Layout]:
    """A testbed of ``count`` nodes in a fresh temporary folder, always torn down."""
    return temporary_testbed(count, prefix="bench-control-", boot_delay=BOOT_DELAY, cmc_only=cmc_only, power=power)


def machine_ticks() -> tuple[int, int]:
    """Busy and total CPU ticks of the whole machine so far (``/proc/stat``; idle and iowait are not busy)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # guest time is already counted in user
    return total - fields[3] - fields[4], total


def busy_since(before: tuple[int, int]) -> float:
    """The fraction of the machine's CPU (all cores) that was busy since ``before``."""
    busy, total = machine_ticks()
    return (busy - before[0]) / max(1, total - before[1])


def children_cpu() -> float:
    """User + system CPU seconds of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(layout: Layout, argv: list[str],
              stdin: str | None = None) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Run ``argv`` in the server namespace (cwd: the testbed's directory, so its
    ``imaging.log`` lands there); its wall time and CPU time in seconds, and its result."""
    cpu = children_cpu()
    start = time.perf_counter()
    done = subprocess.run(in_server(layout, argv), env=product_env(layout), cwd=layout.directory, input=stdin,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    return time.perf_counter() - start, children_cpu() - cpu, done


def sequential_status(urls: list[str]) -> list[str]:
    """The naive baseline: ``GET`` each URL in turn, a fresh connection each time; the bodies."""
    bodies = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=3) as answer:
                bodies.append(answer.read().decode(errors="replace").strip())
        except OSError as exc:
            bodies.append(f"error: {exc}")
    return bodies


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU time used so far by process ``pid`` (0 if it is gone); with ``children``, that of
    its children waited for too."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    used = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return used / os.sysconf("SC_CLK_TCK")


def server_pids(layout: Layout) -> list[int]:
    """The PIDs of the processes answering the product: the testbed's controller (every emulated CMC), and
    the BMCs' (ipmi_sim per node, or the Redfish emulator) when there are."""
    from imaging_testbed.procs import tracked

    return [p.pid for p in tracked(layout.run_dir) if p.name == "controller" or p.name.startswith(("bmc-", "redfish"))]


@dataclass(frozen=True)
class Timing:
    """The runs of one command: median wall time and how many answers were right."""

    name: str
    median: float
    runs: list[float]
    good_answers: int  # the fewest right answers in one run
    expected: int
    client_cpu: float  # median CPU seconds of the command itself (and its children)
    server_cpu: float  # median CPU seconds the emulated CMCs' process used during one run


def measure(layout: Layout, name: str, argv: list[str], stdin: str | None, expected: int,
            runs: int = STATUS_RUNS) -> Timing:
    """Median of ``runs`` runs (after one warm-up); answers counted as lines ending in ``on``.  The server
    CPU is that of the processes answering: the cards' controller, and the BMCs (with their children) when
    the testbed has some."""
    times, client, server, good = [], [], [], expected
    servers = server_pids(layout)
    for run in range(runs + 1):
        before = sum(cpu_seconds(pid, children=True) for pid in servers)
        seconds, used, done = timed_run(layout, argv, stdin)
        served = sum(cpu_seconds(pid, children=True) for pid in servers) - before
        answers = sum(1 for line in done.stdout.splitlines() if line.strip().endswith("on"))
        if run:  # run 0 warms the caches up
            times.append(seconds)
            client.append(used)
            server.append(served)
            good = min(good, answers)
        if answers != expected:
            print(f"  warning: {name}: {answers}/{expected} CMCs answered 'on' (exit {done.returncode});"
                  f" stderr: {done.stderr.strip()[-300:]}")
    return Timing(name, statistics.median(times), times, good, expected, statistics.median(client),
                  statistics.median(server))


async def slow_cards(layout: Layout, milliseconds: int) -> None:
    """Make every card answer ``milliseconds`` late (the testbed's ``cmc=slow:MS`` fault)."""
    from imaging_testbed import lifecycle
    for node in layout.nodes():
        await lifecycle.set_fault(layout.directory, node.name, f"cmc=slow:{milliseconds}")


def bench_status() -> None:
    """(a): imaging-status -a on 400 CMCs against sequential requests; and each one's fixed cost (1 CMC)."""
    print(f"(a) imaging-status -a on a --cmc-only testbed of {STATUS_NODES} CMCs"
          f" (median of {STATUS_RUNS} runs after a warm-up; wall time of the whole command)")
    status = str(BIN / "imaging-status")
    helper = [sys.executable, str(Path(__file__).resolve()), HELPER]
    with testbed(STATUS_NODES, cmc_only=True) as layout:
        urls = "".join(f"http://{node.cmc_ip}/status\n" for node in layout.nodes())
        first = urls.splitlines()[0] + "\n"
        product = measure(layout, "imaging-status -a", [status, "-a"], None, STATUS_NODES)
        python_loop = measure(layout, "urllib loop", helper, urls, STATUS_NODES)
        curl_loop = measure(layout, "curl loop", ["sh", "-c", 'while read -r url; do curl -sS -m 3 "$url"; done'],
                            urls, STATUS_NODES)
        product_one = measure(layout, "imaging-status 1", [status, "1"], None, 1)
        python_one = measure(layout, "urllib, 1 URL", helper, first, 1)
        asyncio.run(slow_cards(layout, CMC_LATENCY_MS))
        product_slow = measure(layout, "imaging-status -a, slow CMCs", [status, "-a"], None, STATUS_NODES)
        python_slow = measure(layout, "urllib loop, slow CMCs", helper, urls, STATUS_NODES, runs=1)
    print(f"  {'command':<50} {'median':>9} {'min':>8} {'max':>8} {'answers':>8} {'its CPU':>9}"
          f" {'CMCs CPU':>9} {'baseline/product':>17}")
    rows = [("imaging-status -a (product: concurrent)", product, None),
            (f"sequential urllib, new connection each ({STATUS_NODES})", python_loop, product),
            (f"sequential curl in a shell loop ({STATUS_NODES})", curl_loop, product),
            ("imaging-status 1 (the product's fixed cost)", product_one, None),
            ("urllib, 1 request (the loop's fixed cost)", python_one, None),
            (f"imaging-status -a, CMCs answering in {CMC_LATENCY_MS} ms", product_slow, None),
            (f"sequential urllib, CMCs answering in {CMC_LATENCY_MS} ms", python_slow, product_slow)]
    for label, timing, versus in rows:
        ratio = f"{timing.median / versus.median:16.2f}x" if versus else ""
        print(f"  {label:<50} {timing.median * 1000:6.0f} ms {min(timing.runs) * 1000:5.0f} ms"
              f" {max(timing.runs) * 1000:5.0f} ms {timing.good_answers:>4}/{timing.expected:<3}"
              f" {timing.client_cpu * 1000:6.0f} ms {timing.server_cpu * 1000:6.0f} ms {ratio:>17}")
    product_more = product.median - product_one.median
    python_more = python_loop.median - python_one.median
    print(f"  beyond the fixed cost, {STATUS_NODES - 1} more CMCs take {product_more * 1000:.0f} ms in the product"
          f" ({product_more / (STATUS_NODES - 1) * 1000:.2f} ms each), {python_more * 1000:.0f} ms in the urllib"
          f" loop ({python_more / (STATUS_NODES - 1) * 1000:.2f} ms each): ratio"
          f" {python_more / product_more if product_more > 0 else float('nan'):.1f}x")


@dataclass(frozen=True)
class WaitRun:
    """One ``imaging-wait`` run: wall time, exit code, and per node (detail, printed s, seen-at s)."""

    wall: float
    cpu: float  # CPU seconds of the command
    busy: float  # fraction of the machine's CPU busy during the run
    code: int
    nodes: dict[str, tuple[str, float, float]]
    stray: list[str]


def run_wait(layout: Layout, spec: str) -> WaitRun:
    """Run ``imaging-wait -t WAIT_TIMEOUT SPEC``, timestamping each line as it arrives."""
    argv = in_server(layout, [str(BIN / "imaging-wait"), "-t", f"{WAIT_TIMEOUT:g}", spec])
    nodes: dict[str, tuple[str, float, float]] = {}
    stray: list[str] = []
    cpu = children_cpu()
    ticks = machine_ticks()
    start = time.perf_counter()
    with subprocess.Popen(argv, env=product_env(layout), cwd=layout.directory, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as process:
        assert process.stdout is not None
        watchdog = threading.Timer(COMMAND_TIMEOUT, process.kill)  # bounds the line-by-line reading
        watchdog.start()
        try:
            for line in process.stdout:
                seen = time.perf_counter() - start
                found = RESULT_LINE.match(line.strip())
                if found:
                    nodes[found["node"]] = (found["detail"], float(found["seconds"]), seen)
                elif line.strip():
                    stray.append(line.strip())
            code = process.wait(timeout=COMMAND_TIMEOUT)
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
    return WaitRun(time.perf_counter() - start, children_cpu() - cpu, busy_since(ticks), code, nodes, stray)


def bench_wait() -> None:
    """(b): imaging-wait -a -t 5 on 37 nodes: one node alone, all healthy, then one black-holed."""
    from imaging_testbed import lifecycle

    bad = f"fit{BLACKHOLED:02d}"
    print(f"\n(b) imaging-wait -t {WAIT_TIMEOUT:g} on a testbed of {WAIT_NODES} nodes, all up on ssh;"
          f" then {bad} black-holed (loss=100% on its link, set while it is up)")
    with testbed(WAIT_NODES) as layout:
        wait_for_stage(layout, "ssh", timeout=SETTLE_TIMEOUT)
        alone = run_wait(layout, "1")
        healthy = run_wait(layout, "-a")
        asyncio.run(lifecycle.set_fault(layout.directory, bad, "loss=100%"))
        faulty = run_wait(layout, "-a")
    print(f"  {'run':<36} {'wall':>7} {'its CPU':>7} {'machine':>7} {'exit':>4} {'healthy up':>10} {'last healthy':>12}"
          f" {'(line seen)':>11}  {bad + ' verdict (printed time, line seen)':<44} {'wall/timeout':>12}")
    runs = (("imaging-wait 1 (one node)", alone, None), ("imaging-wait -a, all healthy", healthy, None),
            (f"imaging-wait -a, {bad} black-holed", faulty, bad))
    for label, run, excluded in runs:
        good = [v for name, v in run.nodes.items() if name != excluded]
        up = [v for v in good if v[0].endswith(" up")]
        last = f"{max(v[1] for v in up):.1f} s" if up else "-"
        seen = f"{max(v[2] for v in up):.2f} s" if up else "-"
        verdict = run.nodes.get(bad)
        text = f"{verdict[0]} ({verdict[1]:.1f} s, {verdict[2]:.2f} s)" if verdict else "-"
        print(f"  {label:<36} {run.wall:5.2f} s {run.cpu:5.2f} s {run.busy:6.0%} {run.code:>4}"
              f" {len(up):>5}/{len(good):<4} {last:>12} {seen:>11}  {text:<44} {run.wall / WAIT_TIMEOUT:11.2f}x")
        for line in run.stray:
            print(f"    (other output) {line}")
    limit = WAIT_TIMEOUT + 1
    print(f"  with {bad} black-holed: wall {faulty.wall:.2f} s for a {WAIT_TIMEOUT:g} s timeout"
          f" ({'within' if faulty.wall <= limit else 'OVER'} timeout + 1 s = {limit:g} s),"
          f" exit code {faulty.code} (1 expected); {len(faulty.nodes)} nodes reported")


def run_rhubarbe_wait(layout: Layout, folder: Path, spec: str) -> tuple[float, int]:
    """``rhubarbe wait -t WAIT_TIMEOUT SPEC`` from its site folder, in the server namespace: wall time, exit."""
    env = product_env(layout) | {"HOME": str(folder / "home")}
    start = time.perf_counter()
    done = subprocess.run(in_server(layout, [os.environ["RHUBARBE"], "wait", "-t", f"{WAIT_TIMEOUT:g}", spec]),
                          env=env, cwd=folder, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    return time.perf_counter() - start, done.returncode


def sshd_cpu() -> float:
    """CPU seconds used so far by the nodes' sshd (every ``dropbear`` of the machine, its finished logins
    included): what the emulated nodes spend on the logins, on this machine's cores."""
    pids = subprocess.run(["pgrep", "-x", "dropbear"], capture_output=True, text=True, check=False).stdout.split()
    return sum(cpu_seconds(int(pid), children=True) for pid in pids)


def bench_wait_scale() -> None:
    """(d): imaging-wait on 1, 8, 37 and 100 nodes already up, rhubarbe wait alternated with it."""
    cores = os.cpu_count() or 1
    print(f"\n(d) imaging-wait -t {WAIT_TIMEOUT:g} on nodes already up on ssh, on testbeds of"
          f" {' and '.join(str(size) for size, _ in SCALE_BEDS)} (medians of {SCALE_ROUNDS} alternated rounds"
          " after a warm-up)")
    print(f"  {'nodes':>5} {'imaging-wait':>12} {'/ 1 node':>8} {'largest per node':>16} {'its CPU':>8}"
          f" {'nodes sshd CPU':>14} {'floor':>7} {'/ floor':>7} {'rhubarbe wait':>13} {'rhubarbe / imaging':>18}")
    for size, counts in SCALE_BEDS:
        with testbed(size) as layout:
            wait_for_stage(layout, "ssh", timeout=2 * SETTLE_TIMEOUT)
            # rhubarbe writes a node's name with two digits (fit01): it cannot name a testbed's fit001
            padded = len(layout.node(1).name) > len("fit01")
            with rhubarbe_site(layout) if not padded else contextlib.nullcontext() as folder:
                alone = 0.0
                for count in counts:
                    row = wait_scale_row(layout, "1" if count == 1 else f"1-{count}", count, folder)
                    alone = alone or row[0]
                    wall, slowest, cpu, served, theirs = row
                    # the least the logins can take here: one node's wall time, plus the nodes' sshd CPU spread
                    # over the machine's cores (on a real testbed every node has its own)
                    floor = alone + served / cores
                    versus = (f"{theirs:10.2f} s" if theirs is not None
                              else "fit001: no" if padded else "-")
                    ratio = f"{theirs / wall:17.2f}x" if theirs is not None else "-"
                    print(f"  {count:>5} {wall:10.2f} s {wall / alone:7.2f}x {slowest:14.2f} s {cpu:6.2f} s"
                          f" {served:12.2f} s {floor:5.2f} s {wall / floor:6.2f}x {versus:>13} {ratio:>18}", flush=True)
    print(f"  (floor: one node's wall time + the nodes' sshd CPU / {cores} cores: the emulated nodes share this"
          " machine's cores, a real testbed's do not; rhubarbe names nodes fit01-fit99 only)")


def wait_scale_row(layout: Layout, spec: str, count: int,
                   folder: Path | None) -> tuple[float, float, float, float, float | None]:
    """Alternated rounds of ``imaging-wait`` and ``rhubarbe wait`` (when ``folder``) on ``spec``: the medians
    of the product's wall time, largest per-node time, CPU, the nodes' sshd CPU, and rhubarbe's wall time."""
    ours: list[float] = []
    slowest: list[float] = []
    cpu: list[float] = []
    nodes_cpu: list[float] = []
    theirs: list[float] = []
    for round_ in range(SCALE_ROUNDS + 1):
        before = sshd_cpu()
        run = run_wait(layout, spec)
        served = sshd_cpu() - before
        up = [v[1] for v in run.nodes.values() if v[0].endswith(" up")]
        if run.code != 0 or len(up) != count:
            print(f"  warning: imaging-wait {spec}: exit {run.code}, {len(up)}/{count} up")
        wall = None
        if folder is not None:
            wall, code = run_rhubarbe_wait(layout, folder, spec)
            if code != 0:
                print(f"  warning: rhubarbe wait {spec}: exit {code}")
        if round_:  # round 0 warms up
            ours.append(run.wall)
            slowest.append(max(up, default=float("nan")))
            cpu.append(run.cpu)
            nodes_cpu.append(served)
            if wall is not None:
                theirs.append(wall)
    return (statistics.median(ours), statistics.median(slowest), statistics.median(cpu), statistics.median(nodes_cpu),
            statistics.median(theirs) if theirs else None)


def bench_drivers() -> None:
    """(c): imaging-status -a through each power driver on 37 and 100 nodes."""
    import importlib.util

    drivers = [d for d in DRIVERS if d != "redfish" or importlib.util.find_spec("sushy_tools") is not None]
    print(f"\n(c) imaging-status -a per power driver on --cmc-only testbeds (median of {DRIVER_RUNS} runs after a"
          " warm-up; the BMCs hand every action to the same cards)")
    status = str(BIN / "imaging-status")
    results: dict[tuple[str, int], Timing] = {}
    for count in DRIVER_NODES:
        for driver in drivers:
            with testbed(count, cmc_only=True, power=driver) as layout:
                patient = layout.directory / "patient.conf"  # the emulated BMCs are slower than the product
                patient.write_text(f"[nodes]\ncmc_timeout = {DRIVER_TIMEOUT:g}\n")
                results[driver, count] = measure(layout, f"{driver}, {count} nodes",
                                                 [status, "-a", "--config", str(patient)], None, count,
                                                 runs=DRIVER_RUNS)
    print(f"  {'driver':<10} {'nodes':>5} {'median':>9} {'min':>8} {'max':>8} {'answers':>8} {'its CPU':>9}"
          f" {'BMCs+cards CPU':>14} {'per node':>9} {'/ cmc':>7}")
    for (driver, count), timing in results.items():
        versus = results.get(("cmc", count))
        ratio = f"{timing.median / versus.median:6.2f}x" if versus else "-"
        print(f"  {driver:<10} {count:>5} {timing.median * 1000:6.0f} ms {min(timing.runs) * 1000:5.0f} ms"
              f" {max(timing.runs) * 1000:5.0f} ms {timing.good_answers:>4}/{timing.expected:<3}"
              f" {timing.client_cpu * 1000:6.0f} ms {timing.server_cpu * 1000:11.0f} ms"
              f" {timing.median / count * 1000:6.1f} ms {ratio:>7}")
    for driver in drivers:
        small, big = results.get((driver, DRIVER_NODES[0])), results.get((driver, DRIVER_NODES[-1]))
        if small and big:
            print(f"  {driver}: {DRIVER_NODES[-1]} nodes / {DRIVER_NODES[0]} nodes = {big.median / small.median:.2f}x")


def main() -> int:
    """Run every part; the exit code is 0 unless the benchmark itself could not run."""
    if len(sys.argv) > 1 and sys.argv[1] == HELPER:
        for body in sequential_status(sys.stdin.read().split()):
            print(body)
        return 0
    if lacks_root("bench/control.py"):
        return 2
    started = time.perf_counter()
    print(f"control plane benchmark on {os.cpu_count()} cores"
          f" (figures are noisy when other work shares the machine)\n")
    parts = sys.argv[1:] or ["status", "wait", "drivers", "scale"]
    if "status" in parts:
        bench_status()
    if "wait" in parts:
        bench_wait()
    if "drivers" in parts:
        bench_drivers()
    if "scale" in parts:
        bench_wait_scale()
    print(f"\nbenchmark wall time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
