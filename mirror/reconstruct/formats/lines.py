"""Marker-less dumps keep one paragraph per line; each keeps its line number."""

from __future__ import annotations

from dataclasses import dataclass

from mirror.reconstruct import segment
from mirror.reconstruct.model import Confidence, ParsedComment
from mirror.reconstruct.text import clean_line, is_blank, is_nbsp_only, join_paragraphs


@dataclass(frozen=True, slots=True)
class Line:
    number: int  # 1-based
    text: str


def content_lines(lines: list[str]) -> list[Line]:
    return [
        Line(index + 1, clean_line(line))
        for index, line in enumerate(lines)
        if not is_blank(line) and not is_nbsp_only(line)
    ]


def cut_comments(lines: list[Line], post: int | None) -> list[ParsedComment]:
    """Comments cut from marker-less lines by the stated rules (confidence low)."""
    return [
        ParsedComment(
            ref=ref,
            first_line=lines[a].number,
            last_line=lines[b].number,
            confidence=Confidence.LOW,
            body=join_paragraphs([line.text for line in lines[a : b + 1]]),
            post=post,
        )
        for ref, (a, b) in enumerate(segment.group_comments([line.text for line in lines]))
    ]
