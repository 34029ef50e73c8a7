"""`imaging-main` and every `imaging-<command>` land here.

The command is taken from the program's name (``imaging-load`` → load), so every
command is this one program reached through a console script or a symlink;
``imaging-main load …`` works too.  Command modules are imported only once
chosen, so ``--help`` answers without loading the network libraries.

A command module ``imaging.cli.<name>`` provides ``add_arguments(parser)`` and
``run(args, ctx) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

# name -> (module, one-line summary); summaries live here so that listing
# the commands imports none of them.
COMMANDS: dict[str, tuple[str, str]] = {
    "load": ("imaging.cli.load", "load an image on nodes by multicast"),
    "save": ("imaging.cli.save", "save a node's disk into an image"),
    "wait": ("imaging.cli.wait", "wait until nodes answer ssh"),
    "rescue": ("imaging.cli.rescue", "boot nodes into the imaging OS and leave them there (--list, --reset)"),
    "list": ("imaging.cli.list", "list the image repository"),
    "status": ("imaging.cli.power", "print the power status of nodes (CMC)"),
    "on": ("imaging.cli.power", "turn nodes on (CMC)"),
    "off": ("imaging.cli.power", "turn nodes off (CMC)"),
    "reset": ("imaging.cli.power", "reboot nodes, checking they really went down (CMC)"),
    "info": ("imaging.cli.power", "print what the CMCs say of their nodes"),
    "nodes": ("imaging.cli.nodes", "print the hostnames a node spec selects"),
    "inventory": ("imaging.cli.inventory", "print the nodes of the inventory: hostname, number, interfaces"),
    "resolve": ("imaging.cli.resolve", "print the file that -i NAME would load"),
    "share": ("imaging.cli.share", "move a save into the image repository"),
    "leases": ("imaging.cli.leases", "show the leases and whether you may act on the nodes now"),
    "config": ("imaging.cli.config", "print the effective configuration and where each value comes from"),
    "monitor": ("imaging.cli.monitor", "every node's power, OS and image, live: a web page, JSON, Prometheus"),
    "testbed": ("imaging_testbed.cli", "run the emulated testbed shipped with the product"),
}
MAIN_NAMES = ("imaging-main", "imaging", "__main__")


def _command_from_argv0(argv0: str) -> str | None:
    name = os.path.basename(argv0)
    for suffix in (".py",):
        name = name.removesuffix(suffix)
    if name in MAIN_NAMES:
        return None
    if name.startswith("imaging-") and name[len("imaging-"):] in COMMANDS:
        return name[len("imaging-"):]
    known = ", ".join(f"imaging-{c}" for c in COMMANDS)
    print(f"{name}: error: unknown command name {name!r}; known: imaging-main, {known}", file=sys.stderr)
    raise SystemExit(2)


def _main_parser() -> argparse.ArgumentParser:
    lines = "\n".join(f"  {name:<9} {summary}" for name, (_, summary) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="imaging-main",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load disk images on the nodes of a testbed, and save them back.",
        epilog=f"commands:\n{lines}\n\nEach command is also installed as imaging-<command>;"
               " 'imaging-main COMMAND --help' tells more.",
    )
    parser.add_argument("command", choices=list(COMMANDS), metavar="COMMAND")
    parser.add_argument("--version", action="version", version=_version())
    return parser


def _version() -> str:
    from .. import __version__
    return f"imaging {__version__}"


def main(argv: list[str] | None = None) -> int:
    """Run the command named by ``argv[0]`` (or ``argv[1]`` for imaging-main); return the exit code."""
    argv = list(sys.argv if argv is None else argv)
    command = _command_from_argv0(argv[0])
    rest = argv[1:]
    if command is None:
        if not rest or rest[0].startswith("-"):
            _main_parser().parse_args(rest)  # exits: --help and --version 0, anything else 2
            return 2  # only a command name gets past parse_args
        if rest[0] not in COMMANDS:
            _main_parser().parse_args(rest[:1])
        command, rest = rest[0], rest[1:]
    module_name, summary = COMMANDS[command]
    module = importlib.import_module(module_name)
    prog = f"imaging-{command}"
    parser = argparse.ArgumentParser(prog=prog, description=summary)
    from .common import add_common_arguments, execute
    add_common_arguments(parser)
    parser.set_defaults(command=command, parser=parser)  # the retry line replays the options given
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return execute(prog, module.run, args, argv)


def entry(argv: list[str] | None = None) -> None:
    """Console-script entry point (``bin/imaging-main.py`` and ``python -m imaging`` too)."""
    code = main(argv)
    # the command is over: a Ctrl-C or SIGTERM from now on (a user pressing again while it ended) must
    # not kill the interpreter while it exits and replace the exit code; Python keeps an ignored signal
    # ignored through its finalization
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    entry()
