"""`imaging-main inventory [SPEC…]`: the nodes of the inventory (all of them unless specs, ``-a`` or ``$NODES`` choose),
as a table or one JSON object per node; rhubarbe's JSON (9.0) and YAML (9.5) inventories are read as they are."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from ..inventory import Node
from .common import Context, add_node_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `inventory`."""
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per node: hostname, number, cmc, control, data")
    add_node_arguments(parser)


def record(node: Node) -> dict[str, Any]:
    """A node as JSON: its hostname and number, then its interfaces as the inventory gives them."""
    return {"hostname": node.hostname, "number": node.number, "cmc": asdict(node.cmc),
            "control": asdict(node.control), "data": asdict(node.data) if node.data else None}


def print_table(nodes: Sequence[Node], source: str) -> None:
    """The nodes as a table: hostname, number, control IP and MAC, CMC hostname and IP, data IP."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("hostname", "number", "control ip", "control mac", "cmc", "cmc ip", "data ip"):
        table.add_column(column, justify="right" if column == "number" else "left", no_wrap=True)
    for node in nodes:
        table.add_row(node.hostname, str(node.number), node.control.ip, node.control.mac, node.cmc.hostname,
                      node.cmc.ip, node.data.ip if node.data else "-")
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 1000, highlight=False)
    console.print(table)
    console.print(f"{len(nodes)} node(s) from {source}")


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Print the chosen nodes of the inventory."""
    nodes = ctx.select_nodes(default_all=True)
    if args.json:
        for node in nodes:
            print(json.dumps(record(node)))
    else:
        print_table(nodes, ctx.inventory.source)
    return 0
