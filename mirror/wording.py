"""Counts in words, for what the commands print: 1 point, 2 points."""

from __future__ import annotations


def counted(count: int, one: str, many: str | None = None) -> str:
    """``1 point``, ``2 points``, ``0 communities`` (``many`` when not ``one`` + s)."""
    return f"{count} {one if count == 1 else many or one + 's'}"
