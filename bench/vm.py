"""The VM tier's cycle, timed: 3 qemu machines booting over PXE.

Starts a VM testbed (``imaging-testbed up 3 --vm``), then runs as a user would
``imaging-load -a`` (``--json``: the events give each phase's times),
``imaging-wait -a``, and prints per machine: power-on/reset to telnet (the
imaging OS up), the transfer, reset to ssh (the loaded image's OS up), the
whole cycle, and the qemu processes' peak memory (``VmHWM``).  Root; about
two minutes under TCG.

    .venv/bin/python bench/vm.py [--vms 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from testbeds import in_server, lacks_root, product_env, temporary_testbed, wait_for_stage

from imaging_testbed import lifecycle
from imaging_testbed.procs import tracked

BIN = Path(sys.executable).parent


def peak_memory_mib(layout_dir: Path) -> dict[str, float]:
    """Peak resident memory (VmHWM) of each live qemu of the testbed, by node name."""
    peaks = {}
    for proc in tracked(layout_dir / "run"):
        if not proc.name.startswith("fit") or not proc.alive():
            continue
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks[proc.name] = int(line.split()[1]) / 1024
    return peaks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=3, help="how many machines (default 3)")
    args = parser.parse_args()
    if lacks_root("bench/vm.py"):
        return 2
    started = time.monotonic()
    with temporary_testbed(args.vms, prefix="bench-vm-", vm=True) as layout:
        up_seconds = time.monotonic() - started
        wait_for_stage(layout, "ssh", timeout=300)
        first_boot = time.monotonic() - started
        env = product_env(layout)
        phases: dict[str, dict[str, float]] = {}
        cycle = time.monotonic()
        load = subprocess.Popen(in_server(layout, [str(BIN / "imaging-load"), "--json", "-a", "-t", "600"]),
                                env=env, stdout=subprocess.PIPE, text=True)
        assert load.stdout is not None
        for line in load.stdout:
            event = json.loads(line) if line.startswith("{") else {}
            if "node" in event and "phase" in event:
                seen = phases.setdefault(event["node"], {})
                seen.setdefault(event["phase"], time.monotonic() - cycle)
                if event["phase"] == "receiving" and (event.get("percent") or 0) > 0:
                    seen.setdefault("bytes flowing", time.monotonic() - cycle)
        load.wait()
        loaded = time.monotonic() - cycle
        waited = subprocess.run(in_server(layout, [str(BIN / "imaging-wait"), "-a", "-t", "300"]), env=env,
                                capture_output=True, text=True)
        whole = time.monotonic() - cycle
        peaks = peak_memory_mib(layout.directory)
        _, statuses = asyncio.run(lifecycle.status(layout.directory))
        ssh_after_reset = {s.name: s.boot_seconds for s in statuses}
    print(f"VM testbed of {args.vms}: up {up_seconds:.1f} s (builds cached or not), all at ssh {first_boot:.1f} s"
          f" after the start; load exit {load.returncode}, wait exit {waited.returncode}")
    print(f"{'node':<6} {'to telnet':>10} {'transfer':>9} {'reset→ssh':>10} {'peak MiB':>9}")
    for node, seen in sorted(phases.items()):
        telnet = seen.get("ready", seen.get("receiving", 0)) - seen.get("resetting", 0)
        transfer = seen.get("rebooting", 0) - seen.get("bytes flowing", seen.get("receiving", 0))
        ssh = ssh_after_reset.get(node)
        print(f"{node:<6} {telnet:>9.1f}s {transfer:>8.1f}s {ssh if ssh is not None else float('nan'):>9.1f}s"
              f" {peaks.get(node, float('nan')):>9.0f}")
    print(f"whole cycle (load of {args.vms}, then every machine at ssh): {whole:.1f} s (load {loaded:.1f} s);"
          f" peak memory of the qemus together {sum(peaks.values()):.0f} MiB")
    return 0 if load.returncode == 0 and waited.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
