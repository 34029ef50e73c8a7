"""imaging-wait: until each node answers ssh (or the imaging OS's telnet)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from .. import ssh, telnet
from ..events import NodeResult
from ..inventory import Node
from .pernode import for_each_node


async def wait(nodes: Sequence[Node], timeout: float, *, ssh_settings: ssh.SshSettings | None = None,
               telnet_settings: telnet.TelnetSettings | None = None) -> AsyncIterator[NodeResult]:
    """Yield each node's result as soon as it is up or has failed.

    With ``telnet_settings`` wait for the imaging OS, else for ssh.  Every
    node gets the same deadline, ``timeout`` seconds from now.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    if ssh_settings is not None:
        ssh_settings = ssh.with_keys(ssh_settings)  # once for all nodes; an unreadable key stops here

    async def work(node: Node) -> str:
        if telnet_settings is not None:
            await telnet.wait_until_up(node.control.ip, telnet_settings, deadline)
            return "telnet up"
        assert ssh_settings is not None
        await ssh.wait_until_up(node.control.ip, ssh_settings, deadline)
        return "ssh up"

    async for result in for_each_node(nodes, work, timeout + 0.5):
        yield result
