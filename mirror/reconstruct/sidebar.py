"""The community sidebar of old-reddit-style pages (post pages and listings).

::

    this post was submitted on 26 Apr 2025     (post pages only)
    22 points (95.8% liked)                    (post pages only)

    Socialism                                  community title
    5821 readers
    12 users here now
    Rules TBD.                                 description paragraphs
    founded 6 years ago
    MODERATORS
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from mirror.reconstruct.model import ParsedCommunity, Votes
from mirror.reconstruct.text import paragraphs
from mirror.reconstruct.times import Moment, parse_date, parse_moment

SUBMITTED_ON = re.compile(r"^this post was submitted on (?P<date>.+)$")
POINTS = re.compile(r"^(?P<score>-?\d+) points? \((?P<ratio>\d+(?:\.\d+)?)% liked\)$")
READERS = re.compile(r"^(?P<n>[\d,]+) (?:readers|subscribers|members)$")
USERS_NOW = re.compile(r"^(?P<n>[\d,]+) users? here now$")
FOUNDED = re.compile(r"^founded (?P<time>.+)$")
MODERATORS = "MODERATORS"


@dataclass(frozen=True, slots=True)
class Sidebar:
    community: ParsedCommunity | None
    #: Facts about the page's post (post pages only).
    post_published: Moment | None
    post_votes: Votes
    #: Index of the first line after the sidebar.
    end: int


def find_sidebar_end(lines: list[str], limit: int = 200) -> int | None:
    """Index of the MODERATORS line that closes a sidebar near the top, if any."""
    for index, line in enumerate(lines[:limit]):
        if line.strip() == MODERATORS:
            return index
    return None


def parse_sidebar(lines: list[str], captured_at: datetime | None) -> Sidebar | None:
    """Read the sidebar at the top of ``lines``; None when there is none."""
    moderators = find_sidebar_end(lines)
    readers_at = next(
        (i for i, line in enumerate(lines[: moderators or 0]) if READERS.match(line.strip())),
        None,
    )
    if moderators is None or readers_at is None:
        return None

    published: Moment | None = None
    votes = Votes()
    title: str | None = None
    for line in lines[:readers_at]:
        text = line.strip()
        if not text:
            continue
        if match := SUBMITTED_ON.match(text):
            date = parse_date(match["date"])
            published = (
                Moment(match["date"], date, 12 * 3600, absolute=True)
                if date
                else parse_moment(match["date"], captured_at)
            )
        elif match := POINTS.match(text):
            votes = Votes(score=int(match["score"]), like_ratio=float(match["ratio"]) / 100)
        else:
            title = text  # the last other line before "N readers" is the heading

    readers = _count(READERS, lines[readers_at])
    users_now: int | None = None
    founded: Moment | None = None
    description_lines: list[str] = []
    for line in lines[readers_at + 1 : moderators]:
        text = line.strip()
        if (count := _count(USERS_NOW, text)) is not None and users_now is None:
            users_now = count
        elif match := FOUNDED.match(text):
            founded = parse_moment(match["time"], captured_at)
        else:
            description_lines.append(line)
    description = "\n\n".join(paragraphs(description_lines)) or None

    end = moderators + 1
    community = ParsedCommunity(
        name=None,
        instance=None,
        title=title,
        description=description,
        readers=readers,
        users_now=users_now,
        founded=founded,
    )
    return Sidebar(community, published, votes, end)


def _count(pattern: re.Pattern[str], text: str) -> int | None:
    match = pattern.match(text.strip())
    return int(match["n"].replace(",", "")) if match else None
