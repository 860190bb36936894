"""User profile overview pages in the lemmy-ui look (icon names survive as words).

::

    happybadger [he/him]                     display name [pronouns]
    Working class employee of ...            bio
      • 812 Posts                            stats (same bullet as items!)
      • 4K Comments
    Joined 5 years ago
    cake
    Cake day: October 7th, 2020
    help-circle
      • <author>@<host>to<Community>@<host><Post title>     item with a header
        link / fedilink / English / arrow-up / 2 / arrow-down / 2 / · / edit-2 / 4 hours ago
        body, indented four spaces
      • body of an item without a header

An item starts at a line of exactly two spaces and a bullet; a bullet
indented four spaces is a list inside a body. Items without a header show
no title and read as replies: they are taken to be comments of the profile
owner, with confidence "medium" (the kind is inferred).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

from mirror.reconstruct.handles import is_username, split_host_prefix, split_pronouns
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
from mirror.reconstruct.text import is_blank, join_paragraphs, paragraphs
from mirror.reconstruct.times import Moment, is_relative_time, parse_moment
from mirror.vocab import languages

ITEM = re.compile(r"^  • (?P<text>\S.*)$")
STAT = re.compile(r"^  • (?P<count>[\d.,]+[KkMm]?) (?P<what>Posts?|Comments?)\s*$")
JOINED = re.compile(r"^Joined (?P<time>.+)$")
CAKE_DAY = re.compile(r"^Cake day: (?P<date>.+)$")
LISTING_START = "help-circle"
# lemmy-ui icons whose names a text dump keeps as words.
ICONS = frozenset(
    {
        "link",
        "fedilink",
        "arrow-up",
        "arrow-down",
        "edit-2",
        "·",
        "more-vertical",
        "message-square",
        "star",
        "share",
        "flag",
        "bookmark",
        "trash",
        "copy",
        "lock",
        "pin",
        "cake",
        "help-circle",
        "external-link",
        "image",
        "minus-square",
        "plus-square",
        "reply",
        "mail",
        "check",
        "x",
    }
)
#: A language name as lemmy-ui prints it: one of Lemmy's list (mirror.vocab.languages,
#: "Русский" and "日本語" too), or a capitalised word for a name the list lacks.
LANGUAGE = re.compile(r"^[A-Z][a-zà-ÿ]+(?: \([^)]*\))?$")
NUMBER = re.compile(r"^-?[\d.,]+[KkMm]?$")


@dataclass(frozen=True, slots=True)
class _Header:
    author_display: str
    author_host: str
    community_title: str
    community_host: str
    post_title: str


def parse_glued_header(text: str) -> _Header | None:
    """Split ``name [pro]@hosttoTitle@hostPost title`` glued without spaces."""
    at = text.find("@")
    while at != -1:
        display, rest = text[:at], text[at + 1 :]
        for host, after in split_host_prefix(rest):
            if not after.startswith("to"):
                continue
            community = after[2:]
            cat = community.rfind("@")
            while cat > 0:
                for chost, title in split_host_prefix(community[cat + 1 :]):
                    if display.strip() and community[:cat].strip():
                        return _Header(
                            display.strip(),
                            host,
                            community[:cat].strip(),
                            chost,
                            title.strip(),
                        )
                cat = community.rfind("@", 0, cat)
        at = text.find("@", at + 1)
    return None


def parse_count(text: str) -> int | None:
    """``812`` -> 812; ``4K`` -> 4000 (the page rounds; so does this)."""
    text = text.strip().replace(",", "")
    factor = 1
    if text[-1:] in "Kk":
        factor, text = 1000, text[:-1]
    elif text[-1:] in "Mm":
        factor, text = 1_000_000, text[:-1]
    try:
        return round(float(text) * factor)
    except ValueError:
        return None


def parse(lines: list[str], captured_at: datetime | None) -> ParsedDump:
    owner, start = _parse_owner(lines, captured_at)
    starts = [i for i in range(start, len(lines)) if ITEM.match(lines[i])]
    comments: list[ParsedComment] = []
    posts: list[ParsedPost] = []
    for n, begin in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        _parse_item(lines, begin, end, owner, captured_at, posts, comments)
    if owner.instance is None:
        # The owner's host appears only in item headers; a header-less page
        # leaves the handle unknown, and the items unattributed.
        comments = [_without_author(c) for c in comments]
    return ParsedDump(
        kind=DumpKind.PROFILE,
        posts=tuple(posts),
        comments=tuple(comments),
        page_author=owner if owner.instance else None,
    )


def _without_author(comment: ParsedComment) -> ParsedComment:
    return replace(comment, author=None)


def _parse_owner(lines: list[str], captured_at: datetime | None) -> tuple[ParsedAuthor, int]:
    """The profile head; returns the owner and the index where items may start."""
    first = next((i for i, line in enumerate(lines) if not is_blank(line)), 0)
    display, pronouns = split_pronouns(lines[first]) if lines else ("", None)
    stats: dict[str, str] = {}
    joined: Moment | None = None
    cake: str | None = None
    bio_lines: list[str] = []
    start = first + 1
    in_bio = True
    for i in range(first + 1, len(lines)):
        line = lines[i]
        if line.strip() == LISTING_START:
            start = i + 1
            break
        if match := STAT.match(line):
            stats[match["what"].rstrip("s").lower()] = match["count"]
            in_bio = False
        elif match := JOINED.match(line.strip()):
            joined = parse_moment(match["time"], captured_at)
            in_bio = False
        elif match := CAKE_DAY.match(line.strip()):
            cake = match["date"]
            in_bio = False
        elif ITEM.match(line):
            start = i
            break
        elif in_bio:
            bio_lines.append(line)
        start = i + 1
    # The owner's host comes from the first item header (display name + @host).
    host = None
    for i in range(start, len(lines)):
        match = ITEM.match(lines[i])
        if match and (header := parse_glued_header(match["text"])):
            shown, _ = split_pronouns(header.author_display)
            if shown == display:
                host = header.author_host
                break
    owner = ParsedAuthor(
        # lemmy-ui prints the display name; when it is a valid user name it is
        # taken as the name (the only name the page shows).
        name=display if is_username(display) else None,
        instance=host,
        display_name=display or None,
        pronouns=pronouns,
        bio=join_paragraphs(paragraphs(bio_lines)) or None,
        posts_count_raw=stats.get("post"),
        comments_count_raw=stats.get("comment"),
        joined=joined,
        cake_day_raw=cake,
    )
    return owner, start


def _parse_item(
    lines: list[str],
    begin: int,
    end: int,
    owner: ParsedAuthor,
    captured_at: datetime | None,
    posts: list[ParsedPost],
    comments: list[ParsedComment],
) -> None:
    match = ITEM.match(lines[begin])
    assert match is not None
    header = parse_glued_header(match["text"])
    meta_end = begin + 1
    while meta_end < end and not is_blank(lines[meta_end]) and _is_meta(lines[meta_end]):
        meta_end += 1
    if header is None or meta_end == begin + 1:
        header = None
        body_lines = [match["text"], *lines[begin + 1 : end]]
    else:
        body_lines = lines[meta_end:end]
    paras = paragraphs(body_lines)
    last = next((k for k in range(end - 1, begin - 1, -1) if not is_blank(lines[k])), begin)

    if header is None:
        comments.append(
            ParsedComment(
                ref=len(comments),
                first_line=begin + 1,
                last_line=last + 1,
                confidence=Confidence.MEDIUM,
                body=join_paragraphs(paras),
                author=owner,
            )
        )
        return

    meta = _parse_meta([line.strip() for line in lines[begin + 1 : meta_end]], captured_at)
    shown, _ = split_pronouns(header.author_display)
    author = owner if shown == owner.display_name else _author_from_display(header)
    community = ParsedCommunity(
        name=None, instance=header.community_host, title=header.community_title
    )
    # The comment's post is known only by its title and community: a stub.
    post = ParsedPost(
        ref=len(posts),
        first_line=begin + 1,
        last_line=begin + 1,
        confidence=Confidence.HIGH,
        community=community,
        title=header.post_title or None,
        body=None,
    )
    posts.append(post)
    comments.append(
        ParsedComment(
            ref=len(comments),
            first_line=begin + 1,
            last_line=last + 1,
            confidence=Confidence.HIGH,
            body=join_paragraphs(paras),
            post=post.ref,
            author=author,
            votes=meta.votes,
            published=meta.published,
            edited=meta.edited,
            edited_at=meta.edited_at,
            language=languages.code_for(meta.language),
            language_name=meta.language,
        )
    )


def _author_from_display(header: _Header) -> ParsedAuthor:
    shown, pronouns = split_pronouns(header.author_display)
    return ParsedAuthor(
        name=shown if is_username(shown) else None,
        instance=header.author_host,
        display_name=shown,
        pronouns=pronouns,
    )


def _is_meta(line: str) -> bool:
    text = line.strip()
    return (
        text in ICONS
        or bool(NUMBER.match(text))
        or is_relative_time(text)
        or _is_language(text)
    )


def _is_language(text: str) -> bool:
    return languages.code_for(text) is not None or bool(LANGUAGE.match(text))


@dataclass(frozen=True, slots=True)
class _Meta:
    votes: Votes
    published: Moment | None
    edited: bool
    edited_at: Moment | None
    #: The language's name as the page printed it.
    language: str | None


def _parse_meta(tokens: list[str], captured_at: datetime | None) -> _Meta:
    up = down = None
    published = edited_at = None
    edited = False
    language = None
    previous = ""
    for token in tokens:
        if NUMBER.match(token):
            if previous == "arrow-up":
                up = parse_count(token)
            elif previous == "arrow-down":
                down = parse_count(token)
        elif is_relative_time(token):
            moment = parse_moment(token, captured_at)
            if previous == "edit-2":
                edited, edited_at = True, moment
            else:
                published = moment
        elif token == "edit-2":
            edited = True
        elif token not in ICONS and _is_language(token):
            language = token
        previous = token
    score = up - down if up is not None and down is not None else None
    return _Meta(
        Votes(score=score, upvotes=up, downvotes=down), published, edited, edited_at, language
    )
