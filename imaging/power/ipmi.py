"""The ``ipmi`` power driver: a BMC over IPMI 2.0 (RMCP+), by ``ipmitool -I lanplus`` in a subprocess.

No Python IPMI library is asyncio, so each verb runs ``ipmitool`` under asyncio (killed at the request's
timeout: its own ``-N``/``-R`` retries come first, the outer deadline is ours): ``chassis power status``
(``Chassis Power is on``), ``chassis power on|off|reset``, ``mc info``; ``chassis bootdev pxe`` before a
reset into the imaging OS.  The BMC is the node's management address (the inventory's ``cmc`` record) on
``[power] ipmi_port``; the login comes from ``[power] credentials``, the password through the
environment (``-E``), never on a command line other users see.
``-C`` is the cipher suite (``[power] ipmi_cipher``; 3, which every IPMI 2.0 BMC offers: without it ipmitool
first tries 17, which OpenIPMI's BMC does not have, and each call takes seconds more).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from typing import TYPE_CHECKING

from ..config import Key
from ..errors import ConfigError
from .base import PowerDriver, PowerError

if TYPE_CHECKING:
    from ..inventory import Node

log = logging.getLogger(__name__)
COMMANDS = {"status": ("chassis", "power", "status"), "on": ("chassis", "power", "on"),
            "off": ("chassis", "power", "off"), "reset": ("chassis", "power", "reset"), "info": ("mc", "info"),
            "bootdev pxe": ("chassis", "bootdev", "pxe")}  # the next boot only: what IPMI's override means
POWER_IS = "Chassis Power is "
REFUSED = ("RAKP 2 HMAC is invalid", "unauthorized name", "Invalid user name", "insufficient resources for session")


class Ipmi(PowerDriver):
    """Runs ``ipmitool`` once per verb and node."""

    name = "ipmi"
    KEYS = (
        Key("power", "ipmitool", "word", "ipmitool", "the IPMI client the ipmi driver runs"),
        Key("power", "ipmi_port", "int", "623", "UDP port of the BMCs' IPMI service", low=1, high=65535),
        Key("power", "ipmi_cipher", "int", "3", "IPMI 2.0 cipher suite (ipmitool -C)", low=0, high=17),
    )
    label = "BMC (ipmi)"
    needs_login = True

    def argv(self, node: Node, verb: str, user: str) -> list[str]:
        """The ``ipmitool`` command line of one verb (the password goes by the environment)."""
        wait = max(1, int(self.options.timeout / 2))  # ipmitool's own timeout, in whole seconds, and 1 retry
        config, host = self.options.config, node.hostname
        return [config.get_str("power", "ipmitool"), "-v", "-I", "lanplus",
                "-C", str(config.get_int("power", "ipmi_cipher", host=host)), "-H", node.cmc.ip,
                "-p", str(config.get_int("power", "ipmi_port", host=host)), "-U", user, "-E", "-N", str(wait),
                "-R", "1", *COMMANDS[verb]]

    async def _ipmitool(self, node: Node, verb: str) -> str:
        """Run the ipmitool command of ``verb`` (a key of :data:`COMMANDS`); its output, or PowerError."""
        if self.options.credentials is None:
            raise ConfigError("the ipmi power driver needs the BMCs' logins: set [power] credentials")
        login = self.options.credentials.login(node.hostname)
        timeout = self.options.timeout
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv(node, verb, login.user), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env={**os.environ, "IPMI_PASSWORD": login.password})
        except OSError as exc:
            program = self.options.config.get_str("power", "ipmitool")
            raise ConfigError(f"cannot run {program} ({exc.strerror}): install ipmitool, or set [power] ipmitool"
                              ) from None
        try:
            async with asyncio.timeout(timeout):  # before the command's own deadline, which adds half a second
                out, err = await process.communicate()
        except TimeoutError:
            raise PowerError(self._unreachable()) from None
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        output, errors = out.decode(errors="replace"), err.decode(errors="replace")
        log.debug("%s: ipmi %s -> %s %r", node.hostname, verb, process.returncode, output[-200:])
        if process.returncode != 0:
            raise PowerError(self._failure(errors, verb))
        return output

    async def send(self, node: Node, verb: str) -> str:
        """Run the verb's ipmitool command; the answer in the interface's words, or PowerError."""
        output = await self._ipmitool(node, verb)
        if verb == "status":
            for line in output.splitlines():
                if line.startswith(POWER_IS):
                    return line.removeprefix(POWER_IS).strip()
            raise PowerError(f"BMC (ipmi) said no power state: {output.strip()[-80:]!r}")
        return output.strip() if verb == "info" else "ok"

    async def boot_from_network(self, node: Node) -> None:
        """``chassis bootdev pxe``: the next boot from the network."""
        await self._ipmitool(node, "bootdev pxe")

    def _unreachable(self) -> str:
        """The failure of a BMC that gave no session in time (ipmitool gave up, or we stopped it)."""
        return f"BMC (ipmi) unreachable (no session within {self.options.timeout:g}s)"

    def _failure(self, errors: str, verb: str) -> str:
        """One line from ipmitool's complaint."""
        if any(sign in errors for sign in REFUSED):
            return "BMC (ipmi) refused the login: wrong credentials (check [power] credentials)"
        if "Unable to establish" in errors:
            return self._unreachable()
        lines = [line for line in errors.splitlines() if line.strip() and not line.startswith(("Loading", ">"))]
        return f"BMC (ipmi) failed {verb}: {lines[-1].strip() if lines else 'no reason given'}"
