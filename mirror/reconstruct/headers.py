"""Header lines of old-reddit-style pages: comment headers and "submitted" lines.

::

    [–] happybadger@hexbear.net 1 points 2 days ago* (last edited 2 days ago) (1 children)
    submitted 3 months ago* (last edited 3 months ago) by yogthos@lemmygrad.ml to c/x@lemmygrad.ml
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from mirror.reconstruct.handles import HOST, parse_community_handle, parse_handle
from mirror.reconstruct.model import ParsedAuthor, ParsedCommunity
from mirror.reconstruct.times import Moment, parse_moment

_TIME = r"(?:\d+|an?|one) [a-z]+? ago|just now"
COMMENT_HEADER = re.compile(
    r"^\[[–\-+]\] "
    r"(?P<author>\S+)"
    r"(?: (?P<score>-?\d+) points?)?"
    rf" (?P<time>{_TIME})"
    r"(?P<star>\*)?"
    rf"(?: \(last edited (?P<edited>{_TIME})\))?"
    r"(?: \((?P<children>\d+) child(?:ren)?\))?"
    r"\s*$"
)
SUBMITTED = re.compile(
    rf"^submitted (?P<time>{_TIME})"
    r"(?P<star>\*)?"
    rf"(?: \(last edited (?P<edited>{_TIME})\))?"
    r"(?: by (?P<author>\S+))?"
    r"(?: to (?P<community>\S+))?"
    r"\s*$"
)
TITLE_WITH_DOMAIN = re.compile(rf"^(?P<title>.+?) \((?P<domain>{HOST})\)$")


@dataclass(frozen=True, slots=True)
class Header:
    author: ParsedAuthor | None
    community: ParsedCommunity | None
    score: int | None
    published: Moment | None
    edited: bool
    edited_at: Moment | None
    children: int | None


def parse_author(text: str) -> ParsedAuthor | None:
    handle = parse_handle(text)
    if handle:
        return ParsedAuthor(name=handle[0], instance=handle[1])
    if re.match(r"^[A-Za-z0-9_]{1,64}$", text):
        # A local user of the page's own instance: the name without a host.
        return ParsedAuthor(name=text, instance=None)
    return None


def _header(match: re.Match[str], captured_at: datetime | None) -> Header:
    groups = match.groupdict()
    community = None
    if groups.get("community"):
        parsed = parse_community_handle(groups["community"])
        if parsed:
            community = ParsedCommunity(name=parsed[0], instance=parsed[1])
    score = groups.get("score")
    children = groups.get("children")
    edited_raw = groups.get("edited")
    return Header(
        author=parse_author(groups["author"]) if groups.get("author") else None,
        community=community,
        score=int(score) if score is not None else None,
        published=parse_moment(groups["time"], captured_at),
        # The star marks an edit even when the "(last edited ...)" part is missing.
        edited=bool(groups.get("star") or edited_raw),
        edited_at=parse_moment(edited_raw, captured_at) if edited_raw else None,
        children=int(children) if children is not None else None,
    )


def parse_comment_header(line: str, captured_at: datetime | None) -> Header | None:
    match = COMMENT_HEADER.match(line.strip())
    return _header(match, captured_at) if match else None


def parse_submitted(line: str, captured_at: datetime | None) -> Header | None:
    match = SUBMITTED.match(line.strip())
    return _header(match, captured_at) if match else None


def split_title_domain(line: str) -> tuple[str, str | None]:
    """``My thoughts on AI (lemmygrad.ml)`` -> (``My thoughts on AI``, ``lemmygrad.ml``)."""
    match = TITLE_WITH_DOMAIN.match(line.strip())
    if not match:
        return line.strip(), None
    return match["title"].strip(), match["domain"]
