"""The ways an image travels: one module per transport, one interface (base.py), one line each in
:data:`imaging.registry.TRANSPORTS`."""

from __future__ import annotations

from typing import cast

from .. import registry
from ..config import Config
from .base import Transport


def transport_for(kind: str, config: Config) -> Transport:
    """The transport named ``kind`` (a name of :data:`imaging.registry.TRANSPORTS`), set up from the config;
    ConfigError for another name."""
    backend = cast(type[Transport], registry.resolve(registry.transport(kind).target))
    return backend.from_config(config)
