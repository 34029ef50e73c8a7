"""Which testbed a command acts on: the folder given with ``--dir``, else the
testbed the current folder is in (that folder or one above it), else a
default; also when the current folder, or the testbed's, was deleted (the
registry still knows a testbed that ran there)."""

from __future__ import annotations

import os
from pathlib import Path

from imaging import errors

from . import registry, state


def working_directory() -> Path:
    """The current folder; when it was deleted, the path it had."""
    try:
        return Path.cwd()
    except FileNotFoundError:
        return Path(os.readlink("/proc/self/cwd").removesuffix(" (deleted)"))


def absolute(directory: Path) -> Path:
    """``directory`` made absolute and resolved (also when the current folder was deleted)."""
    return (directory if directory.is_absolute() else working_directory() / directory).resolve()


def locate(directory: Path | None, default: Path) -> Path:
    """The folder of the testbed to act on: ``directory`` when given; else the current
    folder or the nearest one above it that holds a testbed (its ``testbed.json``, or
    a registry record when its files are gone); else ``default``."""
    if directory is not None:
        return absolute(directory)
    here = working_directory()
    recorded = {Path(entry.directory) for entry in registry.entries()}
    for folder in (here, *here.parents):
        if folder in recorded or (folder / state.STATE_FILE).is_file():
            return folder
    return absolute(default)


def load(directory: Path) -> state.TestbedState:
    """The record of the testbed in ``directory``; UsageError when there is none (naming the
    testbed to bring down when the registry knows one that ran there and lost its files)."""
    directory = absolute(directory)
    try:
        return state.load(directory)
    except errors.UsageError:
        entry = registry.by_directory(directory)
        if entry is None:
            raise
        raise errors.UsageError(f"testbed {entry.name} in {directory} has lost its files: bring it down with"
                                f" imaging-testbed down {entry.name}") from None
