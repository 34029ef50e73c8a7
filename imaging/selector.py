"""Node specs: the grammar shared with rhubarbe and the original tool.

An argument is a comma-separated list of items; an item is an optional ``~``
(remove instead of add) followed by ``N``, ``N-M`` or ``N-M-STEP``, where each
bound may carry a hostname prefix (``fit7``, ``reboot07``, ``fit15-reboot18``)
and leading zeros (``007``).  Arguments are applied in order, so ``~4 1-5``
keeps 4 while ``1-5 ~4`` drops it.  ``-a`` adds the configured ``all_scope``
before the arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import SelectorError

MAX_NODE = 99_999
_NUMBER = r"(?P<{0}p>[A-Za-z]*)(?P<{0}>\d+)"
_ITEM_RE = re.compile(
    r"\A(?P<neg>~?)" + _NUMBER.format("lo")
    + r"(?:-" + _NUMBER.format("hi") + r"(?:-(?P<step>\d+))?)?\Z"
)


@dataclass(frozen=True)
class Term:
    """One item of a spec: add (or remove) the numbers of a range."""

    add: bool
    numbers: range


def _bound(prefix: str, digits: str, prefixes: Sequence[str], item: str) -> int:
    if prefix and prefix.lower() not in {p.lower() for p in prefixes if p}:
        raise SelectorError(f"{item!r} is not a node: unknown prefix {prefix!r}"
                            f" (use a number or {'/'.join(p for p in prefixes if p)}N)")
    value = int(digits)
    if value > MAX_NODE:
        raise SelectorError(f"{item!r} is not a node: number too large")
    return value


def parse(spec: str, prefixes: Sequence[str] = ("fit", "reboot")) -> list[Term]:
    """The terms of one argument; raises SelectorError on anything malformed."""
    terms = []
    for item in spec.split(","):
        match = _ITEM_RE.match(item)
        if match is None:
            raise SelectorError(f"{item or spec!r} is not a node spec"
                                " (expected e.g. 7, fit07, 1-12, 1-9-2, ~4)")
        low = _bound(match["lop"], match["lo"], prefixes, item)
        high = low if match["hi"] is None else _bound(match["hip"], match["hi"], prefixes, item)
        step = 1 if match["step"] is None else int(match["step"])
        if high < low:
            raise SelectorError(f"{item!r}: range goes backwards; write {high}-{low}")
        if step == 0:
            raise SelectorError(f"{item!r}: the step must be a positive number")
        terms.append(Term(add=not match["neg"], numbers=range(low, high + 1, step)))
    return terms


def format_ranges(numbers: Iterable[int]) -> str:
    """Compact form of a set of numbers: ``1-3,7,9-12`` (itself a valid spec)."""
    parts: list[str] = []
    run: list[int] = []
    for number in sorted(set(numbers)):
        if run and number == run[-1] + 1:
            run.append(number)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [number]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def select(specs: Sequence[str], *, all_scope: str | None = None,
           prefixes: Sequence[str] = ("fit", "reboot"),
           known: Iterable[int] | None = None) -> list[int]:
    """Apply ``all_scope`` (when given, i.e. ``-a``) then each spec in order.

    Returns the sorted node numbers; raises SelectorError when a spec is
    malformed, the result is empty, or (with ``known``) names unknown nodes.
    """
    chosen: set[int] = set()
    arguments = ([all_scope] if all_scope is not None else []) + list(specs)
    for spec in arguments:
        for term in parse(spec, prefixes):
            if term.add:
                chosen.update(term.numbers)
            else:
                chosen.difference_update(term.numbers)
    if not chosen:
        raise SelectorError(f"{' '.join(arguments) or 'nothing'}: selects no node")
    if known is not None:
        unknown = chosen - set(known)
        if unknown:
            has = format_ranges(known) or "none"
            raise SelectorError(f"no node {format_ranges(unknown)} in the inventory"
                                f" (it has {has})")
    return sorted(chosen)
