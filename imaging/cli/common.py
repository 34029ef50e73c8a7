"""What every command shares: common options, the context (config, inventory),
node selection from the command line, and error handling with exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Callable, Coroutine
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ImagingError, SelectorError

if TYPE_CHECKING:
    from ..config import Config
    from ..events import NodeResult
    from ..images import Repository
    from ..inventory import Inventory, Node
    from ..jobs.imagingos import Emit, JobState

log = logging.getLogger("imaging.cli")
CLEANUP_GRACE = 3.0  # seconds past a job's deadline for stopping senders and closing sessions


def seconds(text: str) -> float:
    """argparse type: a number of seconds as the config takes them (more than 0, at most a week)."""
    from ..config import MAX_SECONDS, parse_seconds
    try:
        return parse_seconds(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from more than 0"
                                         f" to {MAX_SECONDS:g}") from None


def mibps(text: str) -> int:
    """argparse type: a bandwidth in Mibit/s, with the bounds of ``[nodes] bandwidth``."""
    from ..config import key
    bandwidth = key("nodes", "bandwidth")
    try:
        value = bandwidth.check(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {bandwidth.allowed()}") from None
    assert isinstance(value, int)
    return value


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every command takes."""
    parser.add_argument("--config", metavar="FILE", action="append", default=[],
                        help="read this config file after the standard ones (repeatable)")
    parser.add_argument("--debug", action="store_true",
                        help="show a traceback on errors")


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    """The node selection arguments: ``-a`` and node specs."""
    parser.add_argument("-a", "--all-nodes", action="store_true",
                        help="add the configured all_scope ([testbed] all_scope)")
    parser.add_argument("-k", "--known", action="store_true",
                        help="keep only the nodes the inventory knows (a site's holes), saying which were skipped")
    parser.add_argument("specs", nargs="*", metavar="SPEC",
                        help="nodes: 7, fit07, reboot7, 1-12, fit15-reboot18, 1-9-2 (step),"
                             " 1,3,5, ~4-6 (remove), fit[01-03,07]; applied in order; default $NODES")


class Context:
    """What a command runs with: its name, arguments, config and inventory,
    each loaded once on first use."""

    def __init__(self, prog: str, args: argparse.Namespace,
                 environ: dict[str, str] | None = None) -> None:
        self.prog = prog
        self.args = args
        self.environ = dict(os.environ if environ is None else environ)

    @cached_property
    def config(self) -> Config:
        """The effective configuration."""
        from ..config import Config
        return Config.load(extra=self.args.config, environ=self.environ)

    @cached_property
    def inventory(self) -> Inventory:
        """The inventory named by ``[testbed] inventory``."""
        from ..inventory import Inventory
        return Inventory.load(self.config.get_path("testbed", "inventory"))

    @cached_property
    def repository(self) -> Repository:
        """The image repository: ``[images] images_dir`` plus the current directory."""
        from ..images import Repository
        return Repository.from_config(self.config)

    def names_nodes(self) -> bool:
        """Whether ``-a``, the specs or ``$NODES`` name some nodes."""
        return bool(self.args.specs or self.args.all_nodes or self.environ.get("NODES", "").split())

    def select_nodes(self, default_all: bool = False) -> list[Node]:
        """The nodes chosen by ``-a`` and the specs (or ``$NODES``), validated; with ``default_all``, every
        node of the inventory when none of them names any (commands that look, like ``--list``)."""
        from ..selector import select
        config = self.config
        if not self.names_nodes():
            if default_all:
                return list(self.inventory)
            raise SelectorError("no nodes given: name some (e.g. 1-5), use -a, or set $NODES")
        specs = list(self.args.specs) or ([] if self.args.all_nodes else self.environ.get("NODES", "").split())
        try:
            numbers = select(
                specs,
                all_scope=config.get_str("testbed", "all_scope") if self.args.all_nodes else None,
                prefixes=(config.get_str("testbed", "regularname"),
                          config.get_str("testbed", "rebootname")),
                known=self.inventory.numbers(),
                skip_unknown=self._warn if getattr(self.args, "known", False) else None,
            )
        except SelectorError as exc:
            raise SelectorError(self._suggest_image(specs, str(exc))) from None
        return [self.inventory.by_number(n) for n in numbers]

    def require_lease(self, nodes: list[Node], lasting: float | None = None) -> None:
        """Refuse (LeaseError, exit 1) unless the user may act on ``nodes`` now; warn when
        the lease ends before ``lasting`` seconds from now (a load's or save's deadline)."""
        import asyncio
        from datetime import UTC, datetime, timedelta

        from ..leases import LeaseError, authorize, current_login
        from .settings import lease_settings
        verdict = asyncio.run(authorize(lease_settings(self.config), current_login(), [n.number for n in nodes]))
        if not verdict.allowed:
            raise LeaseError(verdict.reason)
        log.info("lease check: %s", verdict.reason)
        now = datetime.now(UTC)
        if lasting is not None and verdict.until is not None and verdict.until < now + timedelta(seconds=lasting):
            left = int((verdict.until - now).total_seconds() // 60)
            print(f"{self.prog}: warning: your lease ends at {verdict.until:%H:%M} UTC, in {left} min,"
                  f" before this command's deadline ({lasting:g}s)", file=sys.stderr)

    def _warn(self, message: str) -> None:
        """Tell the user something on stderr, as one ``<prog>: warning:`` line."""
        print(f"{self.prog}: warning: {message}", file=sys.stderr)

    def _suggest_image(self, specs: list[str], message: str) -> str:
        """Add a hint when a spec that is not a node names an image (a forgotten -i)."""
        from ..images import validate_name
        if not hasattr(self.args, "image"):
            return message
        for spec in specs:
            try:
                validate_name(spec)
                self.repository.resolve(spec)
            except ImagingError:
                continue
            return f"{spec!r} is not a node, but an image has that name: did you mean -i {spec}?"
        return message


NOT_REPLAYED = frozenset({"help", "all_nodes", "known", "specs", "json", "curses", "debug", "command", "parser"})


def replayed_options(args: argparse.Namespace, **given: str) -> list[str]:
    """The options of this command line that a retry must repeat: every option the user set to other
    than its default, ``--config`` files included, each in its first spelling; ``given`` replaces a
    value by what it resolved to (``image="ubuntu-24.ndz"``).  Node selection and display are left out."""
    options: list[str] = []
    parser: argparse.ArgumentParser = args.parser
    for action in parser._actions:  # argparse keeps its actions there; there is no public accessor
        if not action.option_strings or action.dest in NOT_REPLAYED:
            continue
        value = getattr(args, action.dest, None)
        if value == action.default or value is None:
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            options.append(flag)
        elif isinstance(action, argparse._AppendAction):
            options += [part for item in value for part in (flag, str(item))]
        else:
            options += [flag, given.get(action.dest, f"{value:g}" if isinstance(value, float) else str(value))]
    return options


def run_node_job(prog: str, nodes: list[Node], job: Callable[[JobState, Emit], Coroutine[Any, Any, list[NodeResult]]],
                 state: JobState, timeout: float, args: argparse.Namespace, retry_options: list[str],
                 lock_dir: Path) -> int:
    """Run a load or a save with its display, published on the job board under ``lock_dir`` for the
    monitor; whatever ends it, undo what it holds (``state.cleanup()``, synchronously), print the summary
    with the line that retries the failed nodes, and return the exit code (0 only if every node succeeded)."""
    from ..events import Event
    from ..jobboard import JobBoard
    from ..jobs.runner import Interrupted, run_job
    from ..leases import current_login
    from ..selector import format_ranges
    from .display import make_display

    hostnames = [n.hostname for n in nodes]
    display = make_display(hostnames, as_json=args.json, table=getattr(args, "curses", False))
    board = JobBoard.start(lock_dir, args.command, current_login(), hostnames)

    def emit(event: Event) -> None:
        display.event(event)
        board.event(event)

    try:
        with display:  # the whole command gets the deadline, lock waits included, plus its cleanup
            results = run_job(job(state, emit), state.cleanup, timeout + CLEANUP_GRACE)
        code = 0 if all(r.ok for r in results) else 1
    except Interrupted as exc:
        results, code = state.unfinished(nodes, exc.message), exc.exit_code
    except TimeoutError:
        results, code = state.unfinished(nodes, f"timeout after {timeout:g}s"), 1
    finally:
        board.close()
    failed = [r.node.number for r in results if not r.ok]
    retry = shlex.join([prog, *retry_options, format_ranges(failed)]) if failed else None
    display.summary(results, retry)
    return code


def execute(prog: str, run: Callable[[argparse.Namespace, Context], int],
            args: argparse.Namespace, argv: list[str]) -> int:
    """Run a command: set up the log, map errors to one line and an exit code."""
    from .logfile import setup_logging, silence
    silence()  # until the log file is open (a config error can come first)
    ctx = Context(prog, args)
    try:
        warning = setup_logging(ctx.config, argv)
        for text in [*ctx.config.warnings, *([warning] if warning else [])]:
            print(f"{prog}: warning: {text}", file=sys.stderr)
            log.warning("config: %s", text)  # read before the log file was open
        code = run(args, ctx)
        log.info("%s exits %d", prog, code)
        return code
    except ImagingError as exc:
        log.error("%s: %s", prog, exc.message, exc_info=True)
        if args.debug:
            raise
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        log.warning("%s interrupted", prog)
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `imaging-list | head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
