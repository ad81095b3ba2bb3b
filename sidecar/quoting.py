"""How a value read from outside is shown in a message: quoted, and cut short when long."""

from __future__ import annotations

# How much of a bad value a message quotes: enough to recognise it, never a megabyte.
QUOTE_LIMIT = 200


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr`` of a value for a message, cut to about ``limit`` characters."""
    return shorten(repr(value), limit)


def shorten(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` as it is if short, else its first ``limit`` characters and its length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"
