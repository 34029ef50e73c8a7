"""ssh to a node's installed OS (asyncssh): reachability and commands."""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NodeFailure, UsageError
from .retry import DeadlineExceeded, describe, retry_until

if TYPE_CHECKING:  # asyncssh is imported when a node is reached, not by every command
    from asyncssh import SSHClientConnection

log = logging.getLogger(__name__)
# the node's ed25519 host key first, as OpenSSH prefers it, then asyncssh's defaults: its signature costs
# the node far less than an RSA one, at every login of every node
HOST_KEY_ALGS = "^ssh-ed25519"


@dataclass(frozen=True)
class SshSettings:
    """How to reach a node's installed OS."""

    user: str = "root"
    key: Path | None = None
    port: int = 22
    connect_timeout: float = 3.0
    backoff: float = 1.0
    command_timeout: float = 10.0  # a command that never ends is a failed attempt, not a hung one
    client_keys: tuple[Any, ...] | None = None  # ``key`` once read (:func:`with_keys`), for every connection


def with_keys(settings: SshSettings) -> SshSettings:
    """The settings with the configured private key read once, before any node is tried: a key that
    cannot be read is the user's to fix (UsageError, exit 2), not a network error to retry until the
    deadline.  Without a configured key, asyncssh uses the user's usual keys."""
    if settings.key is None or settings.client_keys is not None:
        return settings
    import asyncssh
    try:
        key = asyncssh.read_private_key(str(settings.key))
    except OSError as exc:
        raise UsageError(f"cannot read the ssh key {settings.key} ({exc.strerror}); set [networking] ssh_key"
                         " to a private key you can read, or empty for your usual keys") from None
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise UsageError(f"the ssh key {settings.key} is not a usable private key ({exc}); set [networking]"
                         " ssh_key to an unencrypted private key") from None
    return replace(settings, client_keys=(key,))


def connect(host: str, settings: SshSettings) -> AbstractAsyncContextManager[SSHClientConnection]:
    """A connection to ``host``, logged in as ``settings.user`` (``async with connect(…) as connection``).

    Raises OSError, asyncssh.Error or TimeoutError when the node cannot be reached or refuses the login;
    the attempt is bounded by ``connect_timeout``.
    """
    import asyncssh
    settings = with_keys(settings)
    options = {"client_keys": list(settings.client_keys)} if settings.client_keys else {}
    return asyncssh.connect(host, settings.port, username=settings.user, known_hosts=None,
                            server_host_key_algs=HOST_KEY_ALGS, connect_timeout=settings.connect_timeout, **options)


async def run(host: str, command: str, settings: SshSettings) -> tuple[int, str]:
    """Run ``command``; return its exit status and standard output.

    Raises as :func:`connect` does; the command is bounded by ``command_timeout`` (asyncssh.TimeoutError).
    """
    async with connect(host, settings) as connection:
        done = await connection.run(command, check=False, timeout=settings.command_timeout)
    output = done.stdout if isinstance(done.stdout, str) else ""
    return int(done.exit_status or 0), output


async def wait_until_up(host: str, settings: SshSettings, deadline: float) -> None:
    """Retry until an ssh login succeeds (the node's sshd answers and accepts the key), or raise
    NodeFailure at the deadline.  No command is run: a login is what "up" means to a user about to ssh
    in, and a command would cost every node a shell (its login files included) for nothing."""
    import asyncssh

    async def attempt() -> None:
        async with connect(host, settings):
            pass

    try:
        await retry_until(attempt, deadline=deadline, backoff=settings.backoff, what=f"ssh {host}",
                          retry_on=(OSError, TimeoutError, EOFError, asyncssh.Error))
    except DeadlineExceeded as exc:
        raise NodeFailure(f"ssh not up ({describe(exc.last_error)})") from None
