#!/usr/bin/env python3
"""Run any imaging command from a checkout, without installing:
``bin/imaging-load …`` (a symlink to this file) or ``bin/imaging-main.py load …``.
When the checkout has a ``.venv`` (``make test`` or ``make demo`` made it), its
Python, which has the dependencies, runs the command."""

import os
import sys

CHECKOUT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
VENV_PYTHON = os.path.join(CHECKOUT, ".venv", "bin", "python")

if os.path.exists(VENV_PYTHON) and os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(CHECKOUT, ".venv")):
    os.execv(VENV_PYTHON, [VENV_PYTHON, *sys.argv])  # argv[0] keeps the command's name

sys.path.insert(0, CHECKOUT)

from imaging.cli.main import entry  # noqa: E402

if __name__ == "__main__":
    entry()
