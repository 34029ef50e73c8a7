"""The ``redfish`` power driver: a BMC's Redfish service, ``/redfish/v1/Systems/<id>``, over aiohttp.

``status`` reads the system's ``PowerState`` (``On`` and ``PoweringOff`` are on, ``Off`` and ``PoweringOn``
off); ``on``, ``off`` and ``reset`` post ``ComputerSystem.Reset`` with ``ResetType`` ``On``, ``ForceOff``
and ``ForceRestart``; ``info`` gives the system's maker, model and state; before a reset into the imaging
OS, a PATCH of ``Boot`` sets ``BootSourceOverrideTarget`` ``Pxe`` for the next boot (``Once``).  The BMC's base URL is
``[power] redfish_url`` with ``{ip}`` the node's management address (the inventory's ``cmc`` record); its
system is ``[power] redfish_system`` (``redfish_system.<host>`` per node), else the first the service lists.
HTTP basic authentication with the login of ``[power] credentials``; one aiohttp session per command run,
the request's timeout on every call.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import TYPE_CHECKING, Any

from ..config import Key
from ..errors import ConfigError
from .base import PowerDriver, PowerError

if TYPE_CHECKING:
    import aiohttp

    from ..inventory import Node
    from .credentials import Login

log = logging.getLogger(__name__)
SYSTEMS = "/redfish/v1/Systems"
RESET_TYPES = {"on": "On", "off": "ForceOff", "reset": "ForceRestart"}
STATES = {"On": "on", "PoweringOff": "on", "Off": "off", "PoweringOn": "off"}
BOOT_FROM_NETWORK = {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}


def basic_auth(login: Login) -> str:
    """The ``Authorization`` header of HTTP basic authentication."""
    return "Basic " + base64.b64encode(f"{login.user}:{login.password}".encode()).decode()


class Redfish(PowerDriver):
    """Talks to the Redfish services of many nodes through one HTTP session."""

    name = "redfish"
    KEYS = (
        Key("power", "redfish_url", "redfish url", "https://{ip}",
            "a BMC's Redfish service, {ip} standing for the node's management (cmc) address"),
        Key("power", "redfish_verify", "choice", "yes", "check the BMCs' TLS certificates (no: self-signed ones)",
            choices=("yes", "no")),
        Key("power", "redfish_system", "word or empty", "",
            "the node's Redfish system id (redfish_system.<host> per node); empty: the first the BMC lists"),
    )
    label = "BMC (redfish)"
    needs_login = True
    _session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """One HTTP session for the command run (``[power] redfish_verify``: check the BMCs' certificates)."""
        import aiohttp
        timeout = self.options.timeout
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout, connect=timeout),
            connector=aiohttp.TCPConnector(limit=0, force_close=True,
                                           ssl=self.options.config.get_str("power", "redfish_verify") == "yes"))
        self._systems: dict[int, str] = {}

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, node: Node, method: str, path: str, body: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
        """One request to the node's BMC; the JSON object a GET answers ({} for an action), or PowerError."""
        import aiohttp
        assert self._session is not None, "open the driver first"
        if self.options.credentials is None:
            raise ConfigError("the redfish power driver needs the BMCs' logins: set [power] credentials")
        login = self.options.credentials.login(node.hostname)
        base = self.options.config.get_str("power", "redfish_url", host=node.hostname)
        url = base.replace("{ip}", node.cmc.ip).rstrip("/") + path
        timeout = self.options.timeout
        try:
            async with asyncio.timeout(timeout + 0.5), self._session.request(
                    method, url, json=body, headers={"Authorization": basic_auth(login)}) as response:
                if response.status in (401, 403):
                    raise PowerError("BMC (redfish) refused the login: wrong credentials"
                                     " (check [power] credentials)")
                if response.status >= 300:
                    raise PowerError(f"BMC (redfish) answered HTTP {response.status} to {method} {path}")
                if method != "GET":  # an action: its answer's body, if any, says nothing we use
                    return {}
                answer = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise PowerError(f"BMC (redfish) unreachable (timeout {timeout:g}s)") from None
        except aiohttp.ClientConnectorError as exc:
            reason = "connection refused" if isinstance(exc.os_error, ConnectionRefusedError) else exc.strerror
            raise PowerError(f"BMC (redfish) unreachable ({reason})") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise PowerError(f"BMC (redfish) failed: {type(exc).__name__} {exc}".strip()) from None
        if not isinstance(answer, dict):
            raise PowerError(f"BMC (redfish) answered {path} with something else than a JSON object")
        return answer

    async def _system(self, node: Node) -> str:
        """The path of the node's system: configured, else the first the service lists."""
        if node.number in self._systems:
            return self._systems[node.number]
        configured = self.options.config.get_str("power", "redfish_system", host=node.hostname)
        if configured:
            path = f"{SYSTEMS}/{configured}"
        else:
            members = (await self._call(node, "GET", SYSTEMS)).get("Members") or []
            first = members[0].get("@odata.id") if isinstance(members[0], dict) else None
            if not isinstance(first, str) or not first.startswith("/"):
                raise PowerError("BMC (redfish) lists no system: set [power] redfish_system")
            path = first
        self._systems[node.number] = path
        return path

    async def boot_from_network(self, node: Node) -> None:
        """Override the system's next boot: from the network, once."""
        await self._call(node, "PATCH", await self._system(node), {"Boot": BOOT_FROM_NETWORK})
        log.debug("%s: redfish boot override %s", node.hostname, BOOT_FROM_NETWORK)

    async def send(self, node: Node, verb: str) -> str:
        """Carry out one verb on the node's Redfish system."""
        system = await self._system(node)
        if verb in RESET_TYPES:
            await self._call(node, "POST", f"{system}/Actions/ComputerSystem.Reset", {"ResetType": RESET_TYPES[verb]})
            log.debug("%s: redfish %s (%s)", node.hostname, verb, RESET_TYPES[verb])
            return "ok"
        answer = await self._call(node, "GET", system)
        state = answer.get("PowerState")
        if verb == "status":
            if state not in STATES:
                raise PowerError(f"BMC (redfish) said no power state ({state!r})")
            return STATES[str(state)]
        return " ".join(f"{key}: {answer[key]}" for key in ("Manufacturer", "Model", "Name", "PowerState")
                        if answer.get(key))
