"""imaging: put disk images on the nodes of a network testbed, and save them back."""

import logging

__version__ = "0.1.0"

# until a command sets up its log file, log records go nowhere (never to the terminal)
logging.getLogger("imaging").addHandler(logging.NullHandler())
