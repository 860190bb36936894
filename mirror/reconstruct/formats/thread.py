"""Post pages of old-reddit-style frontends (mlmym-like): a post and its comments.

Sidebar, then optionally a title and ``submitted ... by ... to ...`` line,
then the post body, then comments. Each comment starts with a header::

    [–] name@host N points T ago[* (last edited T ago)][ (N children)]

Comments come in pre-order and ``(N children)`` counts all descendants
(Lemmy's child_count), which rebuilds the tree. In "single comment's
thread" mode the first comment's parent is not on the page: unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from mirror.reconstruct.bodies import derive_title, split_cross_post
from mirror.reconstruct.headers import (
    Header,
    parse_comment_header,
    parse_submitted,
    split_title_domain,
)
from mirror.reconstruct.model import (
    Confidence,
    DumpKind,
    ParsedComment,
    ParsedCommunity,
    ParsedDump,
    ParsedPost,
    Votes,
)
from mirror.reconstruct.sidebar import parse_sidebar
from mirror.reconstruct.text import is_blank, is_nbsp_only, join_paragraphs, paragraphs

SINGLE_THREAD = "you are viewing a single comment's thread"
# Frontend controls that survive in text dumps and are never content.
UI_LINES = frozenset(
    {
        SINGLE_THREAD,
        "view the rest of the comments",
        "view the rest of the comments →",
        "load more comments",
        "continue this thread",
    }
)


def is_ui_line(line: str) -> bool:
    text = line.strip().lower()
    return text in UI_LINES or text.startswith("load more comments")


@dataclass(slots=True)
class _RawComment:
    header: Header
    start: int
    lines: list[str]


def parse(lines: list[str], captured_at: datetime | None) -> ParsedDump:
    sidebar = parse_sidebar(lines, captured_at)
    community = sidebar.community if sidebar else None
    index = sidebar.end if sidebar else 0

    # Skip moderator names and the NBSP spacer lines under the sidebar.
    while index < len(lines) and (is_blank(lines[index]) or is_nbsp_only(lines[index])):
        index += 1

    headers = [i for i in range(index, len(lines)) if parse_comment_header(lines[i], captured_at)]
    single = any(line.strip() == SINGLE_THREAD for line in lines[index:])
    first_comment = headers[0] if headers else len(lines)
    body_end = next(
        (i for i in range(index, first_comment) if is_ui_line(lines[i])),
        first_comment,
    )

    # Optional title and "submitted" line at the top of the post (full pages).
    title: str | None = None
    domain: str | None = None
    submitted: Header | None = None
    top = [i for i in range(index, min(index + 3, body_end)) if not is_blank(lines[i])]
    for position, i in enumerate(top[:2]):
        header = parse_submitted(lines[i], captured_at)
        if header:
            submitted = header
            if position == 1:
                title, domain = split_title_domain(lines[top[0]])
            index = i + 1
            break

    body_lines = [line for line in lines[index:body_end] if not is_nbsp_only(line)]
    paras, cross_post = split_cross_post(paragraphs(body_lines))
    body_first = next((i for i in range(index, body_end) if not is_blank(lines[i])), None)
    post_first = body_first + 1 if body_first is not None else max(index, 1)
    post_last = _last_content_line(lines, index, body_end) or post_first

    author = submitted.author if submitted else None
    if submitted and submitted.community:
        community = _merge_community(community, submitted.community)
    derived = None if title else derive_title(paras)
    post_votes = sidebar.post_votes if sidebar else Votes()
    post = ParsedPost(
        ref=0,
        first_line=post_first,
        last_line=max(post_last, post_first),
        confidence=Confidence.HIGH if sidebar else Confidence.MEDIUM,
        author=author if author and author.instance else None,
        community=community,
        title=title or derived,
        title_derived=title is None and derived is not None,
        body=join_paragraphs(paras),
        votes=post_votes,
        published=(submitted.published if submitted else None)
        or (sidebar.post_published if sidebar else None),
        edited=submitted.edited if submitted else None,
        edited_at=submitted.edited_at if submitted else None,
        cross_posted_from=cross_post,
        link_domain=domain,
    )

    raw = _split_comments(lines, headers, captured_at)
    comments = _build_tree(raw, single_thread=single)
    notes = ("single comment's thread: the first comment's parent is not shown",) if single else ()
    return ParsedDump(
        kind=DumpKind.THREAD,
        posts=(post,),
        comments=tuple(comments),
        page_community=community,
        notes=notes,
    )


def _merge_community(sidebar: ParsedCommunity | None, named: ParsedCommunity) -> ParsedCommunity:
    """The sidebar gives the title, a ``to c/name@host`` line the handle."""
    if sidebar is None:
        return named
    return replace(sidebar, name=named.name, instance=named.instance)


def _last_content_line(lines: list[str], start: int, end: int) -> int | None:
    for i in range(end - 1, start - 1, -1):
        if not is_blank(lines[i]) and not is_ui_line(lines[i]):
            return i + 1
    return None


def _split_comments(
    lines: list[str], headers: list[int], captured_at: datetime | None
) -> list[_RawComment]:
    out = []
    for n, start in enumerate(headers):
        end = headers[n + 1] if n + 1 < len(headers) else len(lines)
        header = parse_comment_header(lines[start], captured_at)
        assert header is not None
        body = [line for line in lines[start + 1 : end] if not is_ui_line(line)]
        out.append(_RawComment(header, start, body))
    return out


def _build_tree(raw: list[_RawComment], *, single_thread: bool) -> list[ParsedComment]:
    comments: list[ParsedComment] = []
    # Open subtrees: [ref, descendants still to come].
    stack: list[list[int]] = []
    for ref, item in enumerate(raw):
        while stack and stack[-1][1] <= 0:
            stack.pop()
        if stack:
            parent: int | None = stack[-1][0]
            parent_known = True
            for frame in stack:
                frame[1] -= 1
        else:
            parent = None
            # Outside every shown subtree: top level on a full page, unknown
            # when the page shows a single thread.
            parent_known = not single_thread
        stack.append([ref, item.header.children or 0])

        paras = paragraphs(item.lines)
        last = _last_content_line(item.lines, 0, len(item.lines))
        header = item.header
        comments.append(
            ParsedComment(
                ref=ref,
                first_line=item.start + 1,
                last_line=item.start + 1 + (last or 0),
                confidence=Confidence.HIGH,
                body=join_paragraphs(paras),
                post=0,
                parent=parent,
                parent_known=parent_known,
                author=header.author if header.author and header.author.instance else None,
                votes=Votes(score=header.score),
                descendants=header.children,
                published=header.published,
                edited=header.edited,
                edited_at=header.edited_at,
            )
        )
    return comments
