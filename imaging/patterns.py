"""The ``pattern_multicast`` / ``pattern_port`` config values: ``*`` stands for
the session number, 1 … ``pattern_size``.

``234.5.6.*`` gives a multicast group; ``10000 + *`` (or ``10000 + 2 * *``)
gives a port.  The arithmetic (``+ - *`` and parentheses over integers) is
parsed here, never handed to ``eval``.
"""

from __future__ import annotations

import ipaddress
import re

from .errors import ConfigError

_TOKEN = re.compile(r"\s*(?:(\d+)|(.))")


def _tokens(text: str) -> list[str]:
    tokens = []
    for number, other in _TOKEN.findall(text):
        if other and other not in "+-*()":
            raise ValueError(f"unexpected {other!r}")
        tokens.append(number or other)
    return tokens


def evaluate(expression: str, star: int) -> int:
    """Value of an integer expression where ``*`` in operand position is ``star``."""
    tokens = _tokens(expression)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        if position >= len(tokens):
            raise ValueError("expression ends too early")
        position += 1
        return tokens[position - 1]

    def operand() -> int:
        token = take()
        if token == "*":
            return star
        if token == "(":
            value = total()
            if take() != ")":
                raise ValueError("unbalanced parenthesis")
            return value
        if token == "-":
            return -operand()
        if token.isdigit():
            return int(token)
        raise ValueError(f"unexpected {token!r}")

    def product() -> int:
        value = operand()
        while peek() == "*":
            take()
            value *= operand()
        return value

    def total() -> int:
        value = product()
        while peek() in ("+", "-"):
            value = value + product() if take() == "+" else value - product()
        return value

    value = total()
    if position != len(tokens):
        raise ValueError(f"unexpected {tokens[position]!r}")
    return value


def port(pattern: str, number: int) -> int:
    """The port of session ``number``; ConfigError when the pattern is not valid."""
    try:
        value = evaluate(pattern, number)
    except ValueError as exc:
        raise ConfigError(f"[transport] pattern_port = {pattern!r}: {exc}") from None
    if not 1 <= value <= 65535:
        raise ConfigError(f"[transport] pattern_port = {pattern!r} gives port {value} for session {number}")
    return value


def group(pattern: str, number: int) -> str:
    """The multicast group of session ``number``; ConfigError unless it is a multicast address."""
    text = pattern.strip().replace("*", str(number))
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise ConfigError(f"[transport] pattern_multicast = {pattern!r} gives {text!r},"
                          " not an IPv4 address") from None
    if not address.is_multicast:
        raise ConfigError(f"[transport] pattern_multicast = {pattern!r} gives {text}, not a multicast address")
    return text
