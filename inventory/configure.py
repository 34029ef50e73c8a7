#!/usr/bin/env python3
"""Build the JSON inventory from a short site description.

The site description has one line per slot of the testbed::

    # slot  control-mac        data-mac           cmc-mac            [hosts NODE]
    1       00:03:1d:0e:03:19  00:03:1d:0e:03:18  02:00:00:00:00:01
    15      00:03:1d:0e:63:2c  -                  02:00:00:00:00:0f  41

A slot is normally node number SLOT; a fifth column says the hardware in that
slot serves as another node (on R2lab, node 41's machine sits in slot 15),
whose hostnames and IPs are then derived from that number.  ``-`` as data MAC
means the node has no data interface.  Hostnames and IPs come from printf
patterns applied to the node number (``fit%02d``, ``192.168.3.%d``).  Slots and
node numbers are ASCII numbers from 1 to 99999, each slot on one line; the
result gets the checks the inventory gets when it is loaded, and is written
only if it passes them.

Usage: configure.py SITE [-o inventory.json] [--control-ip 192.168.3.%d] …
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from imaging.errors import ImagingError
from imaging.inventory import ROLES, Inventory, normalize_mac, parse_entries
from imaging.selector import MAX_NODE, parse_number, shown

PATTERNS = {
    "control_name": "fit%02d", "cmc_name": "reboot%02d", "data_name": "data%02d",
    "control_ip": "192.168.3.%d", "cmc_ip": "192.168.1.%d", "data_ip": "192.168.2.%d",
}
Entry = dict[str, dict[str, str]]


class SiteError(Exception):
    """A site description, a pattern or the output path is wrong."""


def expand(pattern: str, number: int, option: str) -> str:
    """Apply a printf pattern holding one integer conversion to a node number."""
    try:
        return pattern % number
    except (TypeError, ValueError):
        raise SiteError(f"--{option.replace('_', '-')} {pattern!r} must hold one %d") from None


def _number(word: str, what: str, where: str) -> int:
    number = parse_number(word)
    if not number:
        raise SiteError(f"{where}: {what} {shown(word)} must be a number from 1 to {MAX_NODE}"
                        " (ASCII digits)")
    return number


def entries(lines: list[str], patterns: dict[str, str], source: str) -> list[Entry]:
    """The inventory entries described by the lines of a site description."""
    result: list[Entry] = []
    slots: dict[int, str] = {}
    for lineno, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{source}:{lineno}"
        if len(words) not in (4, 5):
            raise SiteError(f"{where}: want 'SLOT CONTROL-MAC DATA-MAC CMC-MAC [NODE]',"
                            f" got {len(words)} words")
        slot = _number(words[0], "slot", where)
        number = _number(words[4], "node", where) if len(words) == 5 else slot
        if slot in slots:
            raise SiteError(f"{where}: slot {slot} is also on {slots[slot]}; describe each slot once")
        slots[slot] = where
        try:
            macs = [None if mac == "-" else normalize_mac(mac) for mac in words[1:4]]
        except ValueError as exc:
            raise SiteError(f"{where}: {exc}") from None
        if macs[0] is None or macs[2] is None:
            raise SiteError(f"{where}: the control and CMC MACs are required")
        entry: Entry = {}
        for role, mac in zip(("control", "data", "cmc"), macs, strict=True):
            if mac is not None:
                entry[role] = {
                    "hostname": expand(patterns[f"{role}_name"], number, f"{role}_name"),
                    "ip": expand(patterns[f"{role}_ip"], number, f"{role}_ip"),
                    "mac": mac,
                }
        result.append({role: entry[role] for role in ROLES if role in entry})
    if not result:
        raise SiteError(f"{source} describes no slot: write one line per slot,"
                        " 'SLOT CONTROL-MAC DATA-MAC CMC-MAC [NODE]'")
    return result


def read_site(path: str) -> list[str]:
    """The lines of the site description."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except UnicodeDecodeError as exc:
        raise SiteError(f"{path} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except OSError as exc:
        raise SiteError(f"cannot read {path}: {exc.strerror}") from None


def write_output(path: str, text: str) -> None:
    """Write the inventory to ``path`` (``-``: standard output)."""
    if path == "-":
        sys.stdout.write(text)
        return
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except IsADirectoryError:
        raise SiteError(f"-o {path} is a folder: name the file,"
                        f" e.g. -o {os.path.join(path, 'imaging-inventory.json')}") from None
    except FileNotFoundError:
        raise SiteError(f"-o {path}: folder {os.path.dirname(path) or '.'} does not exist;"
                        " create it or write elsewhere") from None
    except OSError as exc:
        raise SiteError(f"cannot write {path}: {exc.strerror}; choose another -o") from None


def main(argv: list[str] | None = None) -> int:
    """Read the site description, check the inventory, write it."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("site", help="the site description")
    parser.add_argument("-o", "--output", default="-", help="the inventory file (default: stdout)")
    for key, default in PATTERNS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, default=default,
                            help=f"pattern (default {default.replace('%', '%%')})")
    args = parser.parse_args(argv)
    patterns = {key: getattr(args, key) for key in PATTERNS}
    try:
        result = entries(read_site(args.site), patterns, args.site)
        Inventory(parse_entries(result, args.site), args.site)  # the same checks as at load time
        write_output(args.output, json.dumps(result, indent=1) + "\n")
    except (SiteError, ImagingError) as exc:
        print(f"configure.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
