"""The BMCs' logins: a file only its owner may read, named by ``[power] credentials``.

An ini file: ``[default]`` gives ``user`` and ``password`` for every node, a section named after a
node's hostname overrides either for that node::

    [default]
    user = ADMIN
    password = secret
    [fit07]
    password = other

It is read once per command run, before any node is touched, and refused when other users may read it.
Passwords never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import configparser
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

DEFAULT = "default"


@dataclass(frozen=True)
class Login:
    """One BMC login."""

    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Credentials:
    """The logins of a credentials file: ``default`` and per-hostname sections."""

    path: Path
    sections: Mapping[str, Mapping[str, str]] = field(repr=False)

    def login(self, hostname: str) -> Login:
        """The login of ``hostname``'s BMC; ConfigError naming the file when it has none."""
        values = {**self.sections.get(DEFAULT, {}), **self.sections.get(hostname, {})}
        missing = [key for key in ("user", "password") if key not in values]
        if missing:
            raise ConfigError(f"{self.path} gives no {' nor '.join(missing)} for {hostname}: add them to its"
                              f" [{DEFAULT}] or [{hostname}] section")
        return Login(values["user"], values["password"])


def read_credentials(path: Path) -> Credentials:
    """The credentials in ``path``; ConfigError (naming the fix, never a password) when the file cannot be
    read, other users may read it, or it is not an ini file of ``user`` and ``password`` keys."""
    try:
        with open(path, encoding="utf-8") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            text = handle.read()
    except OSError as exc:
        fix = "run as root, or ask an admin" if isinstance(exc, PermissionError) else "set [power] credentials"
        raise ConfigError(f"cannot read the BMC credentials {path} ({exc.strerror}): {fix}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the BMC credentials {path} are not UTF-8 text") from None
    if mode & 0o077:
        raise ConfigError(f"the BMC credentials {path} may be read by other users (mode"
                          f" {stat.S_IMODE(mode):04o}): chmod 600 {path}")
    parser = configparser.ConfigParser(interpolation=None, default_section="\0")
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"the BMC credentials {path} are not an ini file ({first.split(': ', 1)[0]})") from None
    sections = {name: dict(parser.items(name)) for name in parser.sections()}
    for name, values in sections.items():
        unknown = sorted(set(values) - {"user", "password"})
        if unknown:
            raise ConfigError(f"{path} [{name}]: unknown key {unknown[0]}; a section holds user and password")
    return Credentials(path, sections)
