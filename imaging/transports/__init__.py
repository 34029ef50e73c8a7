"""The ways an image travels: one module per transport, one interface (base.py)."""

from __future__ import annotations

from ..config import Config
from ..errors import ConfigError
from .base import Transport


def transport_for(kind: str, config: Config) -> Transport:
    """The transport named ``kind`` (frisbee or udpcast), set up from the config."""
    if kind == "udpcast":
        from .udpcast import Udpcast
        return Udpcast.from_config(config)
    if kind == "frisbee":
        from .frisbee import Frisbee
        return Frisbee.from_config(config)
    raise ConfigError(f"[transport] kind = {kind!r}: want frisbee or udpcast")
