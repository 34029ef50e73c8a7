"""Node specs: the grammar shared with rhubarbe and the original tool.

An argument is a comma-separated list of items; an item is an optional ``~``
(remove instead of add) followed by ``N``, ``N-M`` or ``N-M-STEP``, where each
bound may carry a hostname prefix (``fit7``, ``reboot07``, ``fit15-reboot18``)
and leading zeros (``007``), or by a folded set as ClusterShell writes it
(``fit[01-03,07]``, what :func:`fold_hostnames` prints).  Numbers are ASCII
digits only.  Arguments are applied in order, so ``~4 1-5`` keeps 4 while
``1-5 ~4`` drops it.  ``-a`` adds the configured ``all_scope`` before the
arguments.

The way back: :func:`format_ranges` folds numbers into a spec (``1-3,7``),
:func:`fold_hostnames` folds hostnames keeping their zero padding
(``fit[01-03,07]``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .errors import SelectorError

MAX_NODE = 99_999
_NUMBER = r"(?P<{0}p>[A-Za-z]*)(?P<{0}>[0-9]+)"
_ITEM_RE = re.compile(
    r"\A(?P<neg>~?)" + _NUMBER.format("lo")
    + r"(?:-" + _NUMBER.format("hi") + r"(?:-(?P<step>[0-9]+))?)?\Z"
)
_RANGE = r"[0-9]+(?:-[0-9]+)?"
_FOLDED_RE = re.compile(rf"\A(?P<neg>~?)(?P<prefix>[A-Za-z]*)\[(?P<body>{_RANGE}(?:,{_RANGE})*)\]\Z")
_BRACKETS_OR_COMMA = re.compile(r"\[[^\[\]]*\]|,")
_HOSTNAME_NUMBER_RE = re.compile(r"\A[A-Za-z]*(?P<digits>[0-9]+)\Z")
_DIGITS = "0123456789"
_SHOWN = 40  # longest user input quoted whole in a message
_FOLDED_DIGITS = 18  # a longer number in a hostname is not folded (nor given to int())


@dataclass(frozen=True)
class Term:
    """One item of a spec: add (or remove) the numbers of a range."""

    add: bool
    numbers: range


def shown(text: str) -> str:
    """``text`` quoted for a one-line message, cut when it is long."""
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:_SHOWN // 2]!r}… ({len(text)} characters)"


def parse_number(digits: str) -> int | None:
    """The value of a string of ASCII digits when it is at most MAX_NODE, else None.

    Never converts a long string (Python refuses more than 4300 digits), and
    refuses the other Unicode digits ``int()`` would take (``１``, ``٣``).
    """
    if not digits.isascii() or not digits.isdigit():
        return None
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(MAX_NODE)):
        return None
    value = int(significant)
    return value if value <= MAX_NODE else None


def hostname_number(hostname: str) -> int | None:
    """The node number of a hostname whose short name is letters then digits.

    ``fit07`` and ``fit07.r2lab.inria.fr`` give 7; ``fit1a2``, ``fit-7``,
    ``server`` and a number of 0 or above MAX_NODE give None.
    """
    match = _HOSTNAME_NUMBER_RE.match(hostname.split(".", 1)[0])
    number = parse_number(match["digits"]) if match else None
    return number or None


def _bound(prefix: str, digits: str, prefixes: Sequence[str], item: str) -> int:
    if prefix and prefix.lower() not in {p.lower() for p in prefixes if p}:
        raise SelectorError(f"{shown(item)} is not a node: unknown prefix {shown(prefix)}"
                            f" (use a number or {'/'.join(p for p in prefixes if p)}N)")
    value = parse_number(digits)
    if value is None:
        raise SelectorError(f"{shown(item)} is not a node: number too large"
                            f" (node numbers go up to {MAX_NODE})")
    return value


def _folded_terms(match: re.Match[str], prefixes: Sequence[str], item: str) -> list[Term]:
    terms = []
    for part in match["body"].split(","):
        low_digits, _, high_digits = part.partition("-")
        low = _bound(match["prefix"], low_digits, prefixes, item)
        high = _bound(match["prefix"], high_digits, prefixes, item) if high_digits else low
        if high < low:
            raise SelectorError(f"{shown(item)}: range {part} goes backwards; write {high}-{low}")
        terms.append(Term(add=not match["neg"], numbers=range(low, high + 1)))
    return terms


def _items(spec: str) -> list[str]:
    """The comma-separated items of a spec, a comma inside brackets not splitting."""
    items, start = [], 0
    for token in _BRACKETS_OR_COMMA.finditer(spec):
        if token.group() == ",":
            items.append(spec[start:token.start()])
            start = token.end()
    items.append(spec[start:])
    return items


def parse(spec: str, prefixes: Sequence[str] = ("fit", "reboot")) -> list[Term]:
    """The terms of one argument; raises SelectorError on anything malformed."""
    terms = []
    for item in _items(spec):
        folded = _FOLDED_RE.match(item)
        if folded is not None:
            terms.extend(_folded_terms(folded, prefixes, item))
            continue
        match = _ITEM_RE.match(item)
        if match is None:
            if any(char.isdigit() and not char.isascii() for char in item):
                raise SelectorError(f"{shown(item)} is not a node spec: write its numbers"
                                    " with the ASCII digits 0-9")
            raise SelectorError(f"{shown(item or spec)} is not a node spec"
                                " (expected e.g. 7, fit07, 1-12, 1-9-2, ~4, fit[01-03,07])")
        low = _bound(match["lop"], match["lo"], prefixes, item)
        high = low if match["hi"] is None else _bound(match["hip"], match["hi"], prefixes, item)
        step = 1 if match["step"] is None else parse_number(match["step"])
        if high < low:
            raise SelectorError(f"{shown(item)}: range goes backwards; write {high}-{low}")
        if not step:
            raise SelectorError(f"{shown(item)}: the step must be a positive number"
                                f" up to {MAX_NODE}")
        terms.append(Term(add=not match["neg"], numbers=range(low, high + 1, step)))
    return terms


def _runs(numbers: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted maximal runs of consecutive numbers: ``(first, last)``."""
    runs: list[tuple[int, int]] = []
    for number in sorted(set(numbers)):
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


def format_ranges(numbers: Iterable[int]) -> str:
    """Compact form of a set of numbers: ``1-3,7,9-12`` (itself a valid spec)."""
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in _runs(numbers))


def _padded_runs(numerals: set[str]) -> list[str]:
    """Fold digit strings into ranges, each keeping one zero padding:
    ``{"01", "02", "03", "7"}`` → ``["01-03", "7"]``."""
    runs: list[tuple[int, int, int]] = []  # (first, last, width)
    for numeral in sorted(numerals, key=lambda s: (int(s), len(s))):
        number = int(numeral)
        if runs and number == runs[-1][1] + 1 and f"{number:0{runs[-1][2]}d}" == numeral:
            runs[-1] = (runs[-1][0], number, runs[-1][2])
        else:
            runs.append((number, number, len(numeral) if numeral.startswith("0") else 0))
    return [f"{low:0{width}d}" if low == high else f"{low:0{width}d}-{high:0{width}d}"
            for low, high, width in runs]


def _split_last_number(hostname: str) -> tuple[str, str, str]:
    """``(head, digits, tail)`` around the last number of the short name:
    ``fit07.a.org`` → ``("fit", "07", ".a.org")``; digits are empty if it has none."""
    short, dot, domain = hostname.partition(".")
    end = len(short)
    while end and short[end - 1] not in _DIGITS:
        end -= 1
    start = end
    while start and short[start - 1] in _DIGITS:
        start -= 1
    return short[:start], short[start:end], short[end:] + dot + domain


def fold_hostnames(hostnames: Iterable[str]) -> str:
    """Hostnames folded as ClusterShell's ``nodeset -f`` does: ``fit[01-03,07]``.

    The last number of each short name is folded, its zero padding kept;
    names differing elsewhere (``fit01.a.org``, ``reboot01``) make groups of
    their own, joined by commas.  Without a domain, with the ``fit`` or
    ``reboot`` prefix, the result is itself a valid spec.
    """
    groups: dict[tuple[str, str], set[str]] = {}
    parts: list[tuple[str, str, str]] = []  # (head, tail, text), sorted at the end
    for hostname in set(hostnames):
        head, digits, tail = _split_last_number(hostname)
        if not digits or len(digits) > _FOLDED_DIGITS:
            parts.append((hostname, "", hostname))
        else:
            groups.setdefault((head, tail), set()).add(digits)
    for (head, tail), numerals in groups.items():
        ranges = _padded_runs(numerals)
        folded = ranges[0] if len(ranges) == 1 and "-" not in ranges[0] else f"[{','.join(ranges)}]"
        parts.append((head, tail, f"{head}{folded}{tail}"))
    return ",".join(text for _, _, text in sorted(parts))


def select(specs: Sequence[str], *, all_scope: str | None = None,
           prefixes: Sequence[str] = ("fit", "reboot"),
           known: Iterable[int] | None = None,
           skip_unknown: Callable[[str], None] | None = None) -> list[int]:
    """Apply ``all_scope`` (when given, i.e. ``-a``) then each spec in order.

    Returns the sorted node numbers; raises SelectorError when a spec is
    malformed, the result is empty, or (with ``known``) names unknown nodes.
    With ``skip_unknown`` as well, unknown nodes are dropped instead, and
    ``skip_unknown`` is called with a one-line note naming them (``1-42`` on
    a site without 38-41); it is an error still when no known node is left.
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
        known = frozenset(known)
        unknown = chosen - known
        if unknown and (skip_unknown is None or unknown == chosen):
            has = format_ranges(known) or "none"
            raise SelectorError(f"no node {format_ranges(unknown)} in the inventory"
                                f" (it has {has})")
        if unknown and skip_unknown is not None:
            skip_unknown(f"skipping {format_ranges(unknown)}: not in the inventory")
            chosen -= unknown
    return sorted(chosen)
