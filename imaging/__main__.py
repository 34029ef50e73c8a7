"""``python -m imaging COMMAND …`` is ``imaging-main COMMAND …``."""

import sys

from .cli.main import entry

entry(["imaging-main", *sys.argv[1:]])
