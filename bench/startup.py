#!/usr/bin/env python3
"""How fast the commands answer: median of 10 runs of each, side by side with a
bare interpreter start, so the ratio shows what the tool adds.

    .venv/bin/python bench/startup.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RUNS = 10


def median_seconds(argv: list[str], env: dict[str, str], cwd: str) -> float:
    """Median wall time of RUNS runs of a command (one warm-up run first)."""
    times = []
    for _ in range(RUNS + 1):
        start = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    """Print the median of each command and its ratio to a bare `python -c pass`."""
    with tempfile.TemporaryDirectory() as work:
        images = Path(work) / "images"
        images.mkdir()
        for n in range(50):
            (images / f"image-{n:02d}.ndz").write_bytes(b"x" * 1024)
        conf = Path(work) / "imaging.conf"
        conf.write_text(f"[images]\nimages_dir = {images}\n"
                        f"[testbed]\ninventory = {ROOT / 'inventory' / 'sample-inventory.json'}\n")
        env = dict(os.environ, IMAGING_CONFIG=str(conf), HOME=work)
        cases = {
            "python -c pass (baseline)": [sys.executable, "-c", "pass"],
            "imaging-main --help": [str(BIN / "imaging-main"), "--help"],
            "imaging-list --help": [str(BIN / "imaging-list"), "--help"],
            "imaging-load --help": [str(BIN / "imaging-load"), "--help"],
            "imaging-main nodes -a ~4": [str(BIN / "imaging-main"), "nodes", "-a", "~4"],
            "imaging-list (50 images)": [str(BIN / "imaging-list")],
        }
        baseline = None
        print(f"{'command':<30} {'median':>9} {'x baseline':>11}   ({RUNS} runs each)")
        for name, argv in cases.items():
            seconds = median_seconds(argv, env, work)
            baseline = baseline or seconds
            print(f"{name:<30} {seconds * 1000:7.1f} ms {seconds / baseline:10.2f}x")


if __name__ == "__main__":
    main()
