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
patterns applied to the node number (``fit%02d``, ``192.168.3.%d``).

Usage: configure.py SITE [-o inventory.json] [--control-ip 192.168.3.%d] …
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))

from imaging.errors import ImagingError
from imaging.inventory import Inventory, normalize_mac, parse_entries

PATTERNS = {
    "control_name": "fit%02d", "cmc_name": "reboot%02d", "data_name": "data%02d",
    "control_ip": "192.168.3.%d", "cmc_ip": "192.168.1.%d", "data_ip": "192.168.2.%d",
}


class SiteError(Exception):
    """A site description or a pattern is wrong."""


def expand(pattern: str, number: int, option: str) -> str:
    """Apply a printf pattern holding one integer conversion to a node number."""
    try:
        return pattern % number
    except (TypeError, ValueError):
        raise SiteError(f"--{option.replace('_', '-')} {pattern!r} must hold one %d") from None


def entries(lines: list[str], patterns: dict[str, str], source: str) -> list[dict]:
    """The inventory entries described by the lines of a site description."""
    result = []
    for lineno, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{source}:{lineno}"
        if len(words) not in (4, 5):
            raise SiteError(f"{where}: want 'SLOT CONTROL-MAC DATA-MAC CMC-MAC [NODE]',"
                            f" got {len(words)} words")
        try:
            number = int(words[-1] if len(words) == 5 else words[0])
            int(words[0])
            macs = [None if mac == "-" else normalize_mac(mac) for mac in words[1:4]]
        except ValueError as exc:
            raise SiteError(f"{where}: {exc}") from None
        if macs[0] is None or macs[2] is None:
            raise SiteError(f"{where}: the control and CMC MACs are required")
        entry = {}
        for role, mac in zip(("control", "data", "cmc"), macs, strict=True):
            if mac is not None:
                entry[role] = {
                    "hostname": expand(patterns[f"{role}_name"], number, f"{role}_name"),
                    "ip": expand(patterns[f"{role}_ip"], number, f"{role}_ip"),
                    "mac": mac,
                }
        result.append({role: entry[role] for role in ("cmc", "control", "data") if role in entry})
    return result


def main(argv: list[str] | None = None) -> int:
    """Read the site description, check the inventory, write it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", help="the site description")
    parser.add_argument("-o", "--output", default="-", help="the inventory file (default: stdout)")
    for key, default in PATTERNS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, default=default,
                            help=f"pattern (default {default.replace('%', '%%')})")
    args = parser.parse_args(argv)
    patterns = {key: getattr(args, key) for key in PATTERNS}
    try:
        with open(args.site, encoding="utf-8") as handle:
            result = entries(handle.read().splitlines(), patterns, args.site)
        Inventory(parse_entries(result, args.site), args.site)  # the same checks as at load time
    except (OSError, SiteError, ImagingError) as exc:
        print(f"configure.py: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=1) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
