"""Running commands and tracking the processes the testbed starts.

Every long-lived process (dnsmasq, the controller, each node's boot) is
recorded in a PID file ``<run_dir>/<name>.pid`` holding its PID and its start
time (field 22 of ``/proc/PID/stat``), so that ``down`` can stop it even
after the controller crashed, and never kills an unrelated process that
reused the PID.  :func:`run_forwarding` runs a command the way ``imaging-testbed
run`` does: to its end, with the signals that stop a command passed on to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from imaging.errors import ImagingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tracked:
    """A process recorded in a PID file."""

    name: str
    pid: int
    start: int  # start time in clock ticks since boot

    def alive(self) -> bool:
        """Whether this very process (same PID and start time) still exists."""
        return start_time(self.pid) == self.start


def start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks, or None if there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie is as good as gone
        return None
    return int(fields[19])


def track(run_dir: Path, name: str, pid: int) -> Tracked | None:
    """Record process ``pid`` as ``name``; None when it already exited."""
    start = start_time(pid)
    if start is None:
        return None
    tracked = Tracked(name, pid, start)
    path = run_dir / f"{name}.pid"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid} {start}\n")
    tmp.replace(path)
    return tracked


def untrack(run_dir: Path, name: str) -> None:
    """Forget the process recorded as ``name``."""
    with contextlib.suppress(FileNotFoundError):
        (run_dir / f"{name}.pid").unlink()


def tracked(run_dir: Path) -> list[Tracked]:
    """Every process recorded in ``run_dir`` (alive or not)."""
    found = []
    for path in sorted(run_dir.glob("*.pid")):
        try:
            pid, start = path.read_text().split()
            found.append(Tracked(path.stem, int(pid), int(start)))
        except FileNotFoundError:
            continue  # untracked since the folder was listed: its process ended
        except (OSError, ValueError):
            log.warning("ignoring unreadable PID file %s", path)
    return found


def kill(proc: Tracked, sig: int = signal.SIGKILL) -> bool:
    """Send ``sig`` to ``proc`` if it is still that process; True if sent."""
    if not proc.alive():
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
        return True
    return False


async def stop_all(procs: list[Tracked], grace: float = 2.0) -> None:
    """SIGTERM every live process of ``procs``, then SIGKILL what is left after ``grace`` s."""
    live = [p for p in procs if kill(p, signal.SIGTERM)]
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        live = [p for p in live if p.alive()]
    for proc in live:
        log.warning("%s (pid %d) ignored SIGTERM; killing it", proc.name, proc.pid)
        kill(proc)


def netns_exists(netns: str) -> bool:
    """Whether network namespace ``netns`` exists (``ip netns`` keeps it in /run/netns)."""
    return os.path.exists(f"/run/netns/{netns}")


def netns_pids(netns: str) -> list[int]:
    """The PIDs of every live process in network namespace ``netns`` (like
    ``ip netns pids``, without starting a process); none if it is gone."""
    try:
        target = os.stat(f"/run/netns/{netns}")
    except OSError:
        return []
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ns = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue
        if (ns.st_dev, ns.st_ino) == (target.st_dev, target.st_ino):
            found.append(int(entry.name))
    return found


def kill_netns(netns: str) -> int:
    """SIGKILL every process in network namespace ``netns``; how many there were."""
    pids = netns_pids(netns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SI_KERNEL = 0x80  # si_code of a signal the kernel sent: the terminal's Ctrl-C or hangup, to its foreground group
_RESTORED = (signal.SIGPIPE, signal.SIGXFSZ)  # ignored by Python; programs expect their default action


def run_forwarding(argv: list[str], env: dict[str, str]) -> int:
    """Run ``argv`` (looked up in our PATH) to its end, passing SIGINT, SIGTERM and
    SIGHUP on to it; its exit status, 128 + N when signal N killed it.

    Each signal reaches the command once.  When this process holds the terminal
    (it is the terminal's foreground process group) the command shares its process
    group: it reads the terminal, and gets the terminal's Ctrl-C and hangup itself,
    so those are not passed on again.  Otherwise the command gets a process group
    of its own: a signal sent to our group (``timeout``, ``kill 0``) reaches it
    through us only.  Raises ImagingError when the command cannot be started.
    """
    watched = {*FORWARDED_SIGNALS, signal.SIGCHLD}
    shared = _terminal_foreground()
    reaping = signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # SIG_IGN would reap the child before us
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)  # from here on, no signal is missed
    try:
        group = os.getpgrp() if shared else 0  # ours, or one of its own (0: its PID)
        try:
            pid = os.posix_spawnp(argv[0], argv, env, setpgroup=group, setsigmask=mask, setsigdef=_RESTORED)
        except OSError as exc:
            raise ImagingError(f"cannot run {argv[0]}: {exc.strerror}") from None
        while True:
            info = signal.sigwaitinfo(watched)
            if info.si_signo != signal.SIGCHLD:
                if not (shared and info.si_code == SI_KERNEL):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, info.si_signo)
                continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                return 128 - code if code < 0 else code
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGCHLD, reaping)


def _terminal_foreground() -> bool:
    """Whether this process is in the foreground process group of its controlling terminal."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:  # no controlling terminal
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


async def run(*argv: str, input: str | None = None, check: bool = True,
              env: dict[str, str] | None = None) -> str:
    """Run a command to completion (asyncio); its stdout.

    Raises ImagingError naming the command and its error when it fails and
    ``check`` is true.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = await proc.communicate(input.encode() if input is not None else None)
    if check and proc.returncode != 0:
        raise ImagingError(f"{' '.join(argv[:4])}… failed: {_first_line(err.decode(errors='replace'))}")
    return out.decode(errors="replace")


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"
