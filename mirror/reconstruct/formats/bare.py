"""Bare comment bodies: paragraphs one per line, no markers, no metadata.

A paragraph break and a comment break look the same, so comments are cut by
the rules in :mod:`mirror.reconstruct.segment` (confidence "low"); their
post, parent and author are unknown. Copies of known comments are matched
after parsing, when the pieces are stored (see :mod:`mirror.ingest.match`).
"""

from __future__ import annotations

from datetime import datetime

from mirror.reconstruct import segment
from mirror.reconstruct.formats.lines import content_lines, cut_comments
from mirror.reconstruct.model import DumpKind, ParsedDump


def parse(lines: list[str], captured_at: datetime | None) -> ParsedDump:
    comments = cut_comments(content_lines(lines), post=None)
    return ParsedDump(kind=DumpKind.BARE, comments=tuple(comments), notes=segment.RULES[1:])
