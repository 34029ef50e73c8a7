"""imaging: put disk images on the nodes of a network testbed, and save them back."""

__version__ = "0.1.0"
