"""Community listing pages of old-reddit-style frontends, bodies expanded.

After the sidebar, each post is::

    <rank>                                  digits only
    <score>                                 optional, digits only, right after the rank
    <Title> (<domain>)                      optional
    submitted T ago[*...] by <user> to c/<community>    optional
    <NBSP>
    <NBSP>

    body paragraphs

Score lines are digit-only too, so a rank is recognised by what follows it
(the NBSP spacer lines), not by its digits alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

from mirror.reconstruct.bodies import derive_title, split_cross_post
from mirror.reconstruct.headers import Header, parse_submitted, split_title_domain
from mirror.reconstruct.model import (
    Confidence,
    DumpKind,
    ParsedAuthor,
    ParsedCommunity,
    ParsedDump,
    ParsedPost,
    Votes,
)
from mirror.reconstruct.sidebar import parse_sidebar
from mirror.reconstruct.text import is_blank, is_nbsp_only, join_paragraphs, paragraphs

PAGINATION = re.compile(r"^view more:", re.IGNORECASE)


def item_starts(lines: list[str], start: int) -> list[int]:
    """Indices of rank lines: digits, then up to three header lines, then NBSP spacers."""
    return list(iter_item_starts(lines, start))


def iter_item_starts(lines: list[str], start: int) -> Iterator[int]:
    """:func:`item_starts` one at a time (telling a listing needs only the first)."""
    last = -2
    for i in range(start, len(lines)):
        if not _is_rank(lines[i]):
            continue
        if i > start and not is_blank(lines[i - 1]) and not _is_rank(lines[i - 1]):
            continue
        if last == i - 1:
            continue  # the score line right under a rank
        # A rank line is followed, after at most score + title + submitted
        # lines, by the NBSP spacer.
        for j in range(i + 1, min(i + 5, len(lines))):
            if is_nbsp_only(lines[j]):
                last = i
                yield i
                break
            if is_blank(lines[j]):
                break


def _is_rank(line: str) -> bool:
    """A rank: one to seven digits (isdecimal is regex's \\d), spaces around."""
    text = line.strip()
    return text.isdecimal() and len(text) <= 7


def parse(lines: list[str], captured_at: datetime | None) -> ParsedDump:
    sidebar = parse_sidebar(lines, captured_at)
    community = sidebar.community if sidebar else None
    begin = sidebar.end if sidebar else 0
    end_of_page = next(
        (
            i
            for i in range(begin, len(lines))
            if ":" in lines[i] and PAGINATION.match(lines[i].strip())
        ),
        len(lines),
    )
    starts = item_starts(lines[:end_of_page], begin)

    # The handle of the page's community is known only from "to c/..." lines.
    named = None
    for i in starts:
        for j in range(i + 1, min(i + 4, end_of_page)):
            header = parse_submitted(lines[j], captured_at)
            if header and header.community:
                named = header.community
                break
        if named:
            break
    if named and community and _is_page_community(named, lines, starts):
        community = replace(community, name=named.name, instance=named.instance)

    posts = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else end_of_page
        posts.append(_parse_item(lines, start, end, n, community, captured_at))
    return ParsedDump(kind=DumpKind.LISTING, posts=tuple(posts), page_community=community)


def _is_page_community(named: ParsedCommunity, lines: list[str], starts: list[int]) -> bool:
    """A community listing shows one community: every ``to c/`` line must name it."""
    for i in starts:
        for j in range(i + 1, min(i + 4, len(lines))):
            header = parse_submitted(lines[j], None)
            if header and header.community and header.community.handle != named.handle:
                return False
    return True


def _parse_item(
    lines: list[str],
    start: int,
    end: int,
    ref: int,
    community: ParsedCommunity | None,
    captured_at: datetime | None,
) -> ParsedPost:
    rank = int(lines[start].strip())
    i = start + 1
    score: int | None = None
    if i < end and _is_rank(lines[i]):
        score = int(lines[i].strip())
        i += 1
    head: list[str] = []
    while i < end and not is_nbsp_only(lines[i]) and not is_blank(lines[i]) and len(head) < 2:
        head.append(lines[i])
        i += 1
    submitted: Header | None = None
    title: str | None = None
    domain: str | None = None
    for line in head:
        header = parse_submitted(line, captured_at)
        if header:
            submitted = header
        else:
            title, domain = split_title_domain(line)

    body_lines = [line for line in lines[i:end] if not is_nbsp_only(line)]
    paras, cross_post = split_cross_post(paragraphs(body_lines))
    last = next((k for k in range(end - 1, start - 1, -1) if not is_blank(lines[k])), start)

    author: ParsedAuthor | None = None
    item_community = community
    if submitted:
        if submitted.author and submitted.author.instance:
            author = submitted.author
        if submitted.community and (
            community is None or submitted.community.handle != community.handle
        ):
            item_community = submitted.community
    derived = None if title else derive_title(paras)
    return ParsedPost(
        ref=ref,
        first_line=start + 1,
        last_line=last + 1,
        confidence=Confidence.HIGH,
        author=author,
        community=item_community,
        title=title or derived,
        title_derived=title is None and derived is not None,
        body=join_paragraphs(paras),
        votes=Votes(score=score),
        published=submitted.published if submitted else None,
        edited=submitted.edited if submitted else None,
        edited_at=submitted.edited_at if submitted else None,
        cross_posted_from=cross_post,
        link_domain=domain,
        listing_rank=rank,
    )
