"""The product stands without its testbed: ``pip install imaging`` gives every command but
``imaging-testbed``'s VMs and Redfish BMCs, whose Python dependencies come with the ``[testbed]`` extra."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTBED_ONLY = ("qemu.qmp", "sushy-tools")
# every module of the product imported in a Python where the testbed and its dependencies cannot be
IMPORT_ALL = """
import importlib, pkgutil, sys
for blocked in ("imaging_testbed", "qemu", "qemu.qmp", "sushy_tools"):
    sys.modules[blocked] = None  # an import of it raises ImportError
import imaging
names = [m.name for m in pkgutil.walk_packages(imaging.__path__, "imaging.") if m.name != "imaging.__main__"]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_every_product_module_imports_without_the_testbed_and_its_dependencies() -> None:
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 50  # the jobs, the CLI, the backends: all of them


def test_the_testbeds_dependencies_are_its_extra_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [requirement.split(">")[0].split("=")[0].strip() for requirement in project["dependencies"]]
    assert not set(names) & set(TESTBED_ONLY)
    extra = " ".join(project["optional-dependencies"]["testbed"])
    assert all(name in extra for name in TESTBED_ONLY)
