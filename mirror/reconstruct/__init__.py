"""Dump text -> typed posts and comments. Pure: no database, no network.

Entry points: :func:`parse_dump` for text and :func:`decode` for bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from mirror.reconstruct.decode import decode
from mirror.reconstruct.detect import NotADump, detect
from mirror.reconstruct.formats import bare, flat, listing, profile, thread
from mirror.reconstruct.model import (
    Confidence,
    DumpKind,
    ParsedAuthor,
    ParsedComment,
    ParsedCommunity,
    ParsedDump,
    ParsedPost,
    Votes,
)
from mirror.reconstruct.text import split_lines
from mirror.reconstruct.times import Moment

__all__ = [
    "Confidence",
    "DumpKind",
    "Moment",
    "NotADump",
    "ParsedAuthor",
    "ParsedComment",
    "ParsedCommunity",
    "ParsedDump",
    "ParsedPost",
    "Votes",
    "decode",
    "detect",
    "parse_dump",
]

PARSERS: dict[DumpKind, Callable[[list[str], datetime | None], ParsedDump]] = {
    DumpKind.PROFILE: profile.parse,
    DumpKind.THREAD: thread.parse,
    DumpKind.FLAT: flat.parse,
    DumpKind.BARE: bare.parse,
    DumpKind.LISTING: listing.parse,
}


def parse_dump(
    text: str, *, kind: DumpKind | None = None, captured_at: datetime | None = None
) -> ParsedDump:
    """Reconstruct the posts and comments of one dump.

    ``kind`` forces a page kind instead of detecting it. Relative times are
    estimated from ``captured_at``. Raises NotADump (and nothing else) when
    the text is not a dump of a known kind.
    """
    lines = split_lines(text)
    chosen = kind or detect(lines)
    dump = PARSERS[chosen](lines, captured_at)
    if not dump.posts and not dump.comments:
        raise NotADump(f"no posts or comments found (read as {chosen.value})")
    return dump
