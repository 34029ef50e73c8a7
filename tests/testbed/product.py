"""Running the product's own commands inside a testbed's server namespace, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.testbed.conftest import Testbed

BIN = Path(sys.executable).parent


@dataclass
class Run:
    """A finished product command: exit code, outputs, wall time."""

    code: int
    out: str
    err: str
    seconds: float

    def lines(self) -> dict[str, str]:
        """``fitNN: detail`` lines as a dict."""
        return dict(line.split(": ", 1) for line in self.out.splitlines() if ": " in line)

    def json_lines(self) -> list[dict[str, Any]]:
        """The output's JSON lines."""
        return [json.loads(line) for line in self.out.splitlines() if line.startswith("{")]


def product(bed: Testbed, command: str, *args: str, timeout: float = 120.0) -> Run:
    """Run ``imaging-<command> args…`` in the testbed's server namespace."""
    start = time.monotonic()
    done: subprocess.CompletedProcess[str] = bed.run(str(BIN / f"imaging-{command}"), *args, timeout=timeout)
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - start)
