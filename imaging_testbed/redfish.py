"""The emulated nodes' Redfish BMCs (``up --power redfish``): sushy-tools' emulator, its systems the nodes.

One ``sushy-emulator`` application (OpenStack's Redfish emulator, which Ironic's own tests run against)
serves ``/redfish/v1/Systems/<uuid>`` for every node, in the server namespace, on :data:`PORT` of every
address there: each node's management address reaches it, as each node's BMC would be reached.  Its fake
systems driver keeps a power state of its own, changed 1 to 11 s late; here its power is the node's card
instead (``status`` asked of the card, ``On``/``ForceOff``/``ForceRestart`` sent to it at once), so the
node's power state machine, and its faults, are the same whichever way the product drives it.  HTTP basic
authentication against a bcrypt password file (the login of :mod:`.bmc`'s credentials file).

Run as ``python -m imaging_testbed.redfish SETTINGS.json`` (:func:`write_settings` writes it).
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

from .bmc import FOLDER
from .layout import Layout

PORT = 8000
SETTINGS = "redfish.json"  # in the testbed's bmc folder
STATE = "redfish-state"
CARD_TIMEOUT = 3.0
# what a Redfish ResetType asks of the card
CARD_VERBS = {"On": "on", "ForceOn": "on", "ForceOff": "off", "GracefulShutdown": "off",
              "ForceRestart": "reset", "GracefulRestart": "reset", "PowerCycle": "reset"}


def system_id(node_name: str) -> str:
    """The Redfish system id of a node: a UUID derived from its name (the same at every ``up``)."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{node_name}.imaging-testbed"))


def write_settings(folder: Path, user: str, password: str, cards: dict[str, str], listen: str = "0.0.0.0",
                   port: int = PORT) -> Path:
    """The emulator's settings, written in ``folder`` readable by root only: a system per node of ``cards``
    (node name -> its card's ``host[:port]``), the login, where it listens (the testbed's: every address of
    the server namespace); their path."""
    import bcrypt

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    users = folder / "redfish-users"
    users.write_text(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")
    users.chmod(0o600)
    settings = {"listen": listen, "port": port, "users": str(users), "state": str(folder / STATE),
                "systems": [{"uuid": system_id(name), "name": name, "card": card, "power_state": "Off"}
                            for name, card in cards.items()]}
    path = folder / SETTINGS
    path.write_text(json.dumps(settings, indent=1) + "\n")
    path.chmod(0o600)
    return path


def write_testbed_settings(layout: Layout, user: str, password: str) -> Path:
    """:func:`write_settings` for the nodes of ``layout``, in its BMC folder."""
    return write_settings(layout.directory / FOLDER, user, password, {n.name: n.cmc_ip for n in layout.nodes()})


def serve(settings: dict[str, Any]) -> None:
    """Run the emulator with the card driver, in the foreground."""
    import requests
    from sushy_tools import error
    from sushy_tools.emulator import main as emulator
    from sushy_tools.emulator.resources.systems import fakedriver

    class CardDriver(fakedriver.FakeDriver):  # type: ignore[misc]
        """sushy's fake systems, whose power is the node's card."""

        def _card(self, identity: str, verb: str) -> str:
            card = self._get(identity)["card"]
            try:
                answer = requests.get(f"http://{card}/{verb}", timeout=CARD_TIMEOUT)
            except requests.RequestException as exc:
                raise error.FishyError(f"the card of {identity} did not answer {verb}: {exc}") from None
            return str(answer.text).strip()

        def get_power_state(self, identity: str) -> str:
            answer = self._card(identity, "status")
            if answer not in ("on", "off"):  # a card out of order: the BMC cannot tell (an HTTP 500)
                raise error.FishyError(f"the card of {identity} answered {answer[:40]!r} to status")
            return "On" if answer == "on" else "Off"

        def set_power_state(self, identity: str, state: str) -> None:
            verb = CARD_VERBS.get(state)
            if verb is None:
                raise error.NotSupportedError(f"Power state {state} is not supported")
            if self._card(identity, verb) != "ok":
                raise error.FishyError(f"the card of {identity} did not take {verb}")

    fakedriver.FakeDriver = CardDriver  # what the emulator instantiates with SUSHY_EMULATOR_FAKE_DRIVER
    app = emulator.app
    app.configure(extra_config={
        "SUSHY_EMULATOR_FAKE_DRIVER": True, "SUSHY_EMULATOR_FAKE_SYSTEMS": settings["systems"],
        "SUSHY_EMULATOR_AUTH_FILE": settings["users"], "SUSHY_EMULATOR_STATE_DIR": settings["state"],
        "SUSHY_EMULATOR_LISTEN_IP": settings["listen"], "SUSHY_EMULATOR_LISTEN_PORT": settings["port"]})
    app.run(host=settings["listen"], port=settings["port"], threaded=True)


def main() -> int:
    """``python -m imaging_testbed.redfish SETTINGS.json``."""
    serve(json.loads(Path(sys.argv[1]).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
