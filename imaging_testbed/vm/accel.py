"""Choosing the VMs' accelerator: KVM where it really works, else TCG.

``/dev/kvm`` existing proves little: some hosts offer a nested module on a
CPU without vmx/svm, where a guest never gets past its kernel's
decompressor.  So KVM is chosen only when the device opens, the CPU
advertises vmx or svm, and a time-limited probe boot of the imaging OS
reaches its first ``@state`` line; the verdict is cached (per qemu and
kernel) beside the builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
from pathlib import Path

from imaging.errors import UsageError

from ..programs import QEMU

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 20.0  # seconds: a KVM guest reaches its init in one or two
ACCELERATORS = ("auto", "tcg", "kvm")
RUN_INIT = b"Run /init as init process"  # the kernel's last word before the initramfs runs


def kvm_unusable(device: Path = Path("/dev/kvm"), cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """Why KVM cannot work here without even trying, or None when a probe boot may tell."""
    if not os.access(device, os.R_OK | os.W_OK):
        return f"{device} is missing or not accessible"
    try:
        flags = {word for line in cpuinfo.read_text().splitlines() if line.startswith("flags")
                 for word in line.split(":", 1)[1].split()}
    except OSError as exc:
        return f"cannot read {cpuinfo}: {exc}"
    if not flags & {"vmx", "svm"}:
        return "the CPU offers neither vmx nor svm (a nested or emulated /dev/kvm)"
    return None


async def probe_boot(kernel: Path, initrd: Path, qemu: str = QEMU, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the kernel boots to the imaging OS's init under KVM within ``timeout`` s
    (the kernel's ``Run /init`` line, or any ``@state`` line of the init)."""
    proc = await asyncio.create_subprocess_exec(
        qemu, "-accel", "kvm", "-cpu", "host", "-nodefaults", "-no-user-config", "-display", "none",
        "-m", "128", "-kernel", str(kernel), "-initrd", str(initrd), "-append", "console=ttyS0 imaging-os",
        "-serial", "stdio", "-no-reboot",
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(timeout):
            async for line in proc.stdout:
                if RUN_INIT in line or line.startswith(b"@state "):
                    return True
        return False
    except TimeoutError:
        return False
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def _qemu_version(qemu: str) -> str:
    proc = await asyncio.create_subprocess_exec(qemu, "--version", stdout=subprocess.PIPE,
                                                stderr=subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return out.decode(errors="replace").splitlines()[0] if out else "unknown"


async def choose(requested: str, kernel: Path, initrd: Path, cache_dir: Path, qemu: str = QEMU
                 ) -> tuple[str, str]:
    """The accelerator to use (``tcg`` or ``kvm``) and why.

    ``requested`` is ``auto``, ``tcg`` or ``kvm``; ``kvm`` that does not work
    is a UsageError (``auto`` falls back to TCG instead).
    """
    if requested not in ACCELERATORS:
        raise UsageError(f"--accel {requested}: choose one of {', '.join(ACCELERATORS)}")
    if requested == "tcg":
        return "tcg", "asked for"
    reason = kvm_unusable()
    if reason is None:
        verdicts = cache_dir / "kvm-probe.json"
        key = f"{await _qemu_version(qemu)} | {kernel.resolve()} {kernel.stat().st_size}"
        try:
            known: dict[str, bool] = json.loads(verdicts.read_text())
        except (OSError, ValueError):
            known = {}
        if key not in known:
            known[key] = await probe_boot(kernel, initrd, qemu)
            verdicts.parent.mkdir(parents=True, exist_ok=True)
            verdicts.write_text(json.dumps(known, indent=1) + "\n")
        if known[key]:
            return "kvm", "a probe boot under KVM reached the imaging OS"
        reason = f"a probe boot under KVM did not reach the imaging OS within {PROBE_TIMEOUT:g} s"
    if requested == "kvm":
        raise UsageError(f"--accel kvm: KVM does not work here ({reason}); use --accel tcg or auto")
    log.info("VMs run under TCG: %s", reason)
    return "tcg", reason
