"""``python -m imaging COMMAND …`` is ``imaging-main COMMAND …``."""

import sys

from .cli.main import main

sys.exit(main(["imaging-main", *sys.argv[1:]]))
