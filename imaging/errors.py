"""The one exception hierarchy of the product.

Every failure a user can cause is an :class:`ImagingError` carrying a
one-line, user-facing message; the CLI prints it as ``<prog>: error: <message>``
and exits with :attr:`ImagingError.exit_code`.
"""

from __future__ import annotations


class ImagingError(Exception):
    """A failure with a message meant for the user (runtime failure, exit 1)."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(ImagingError):
    """The command line, a config file or an input file is wrong (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file cannot be read or holds a bad value."""


class InventoryError(UsageError):
    """The inventory cannot be read or is inconsistent."""


class SelectorError(UsageError):
    """A node spec cannot be parsed or selects nothing valid."""


class ImageError(UsageError):
    """An image name is invalid or does not resolve."""


class NodeFailure(ImagingError):
    """One node failed; carries a short reason shown beside the node's name."""
