#!/usr/bin/env python3
"""Run any imaging command from a checkout, without installing:
``bin/imaging-load …`` (a symlink to this file) or ``bin/imaging-main.py load …``."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from imaging.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
