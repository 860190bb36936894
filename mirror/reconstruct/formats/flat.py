"""Flattened post pages: a post and its comments with every marker stripped.

One paragraph per line, no blank lines, no headers. The only marker that
may survive is a first line ``cross-posted from: URL``. The post body and
the comments are cut by the rules in :mod:`mirror.reconstruct.segment`; the
comments belong to the post, but their authors and parents stay unknown.
"""

from __future__ import annotations

from datetime import datetime

from mirror.reconstruct import segment
from mirror.reconstruct.bodies import CROSS_POSTED, derive_title
from mirror.reconstruct.formats.lines import content_lines, cut_comments
from mirror.reconstruct.model import Confidence, DumpKind, ParsedDump, ParsedPost
from mirror.reconstruct.text import join_paragraphs


def parse(lines: list[str], captured_at: datetime | None) -> ParsedDump:
    content = content_lines(lines)
    cross_post = None
    if content and (match := CROSS_POSTED.match(content[0].text)):
        cross_post = match["url"]
        content = content[1:]
    paras = [line.text for line in content]
    end = segment.post_body_end(paras)
    post_paras = paras[:end]
    first = content[0].number if content else 1
    last = content[end - 1].number if end else first
    derived = derive_title(post_paras)
    post = ParsedPost(
        ref=0,
        first_line=1 if cross_post else first,
        last_line=last,
        # The post is where the page starts; where it ends is a guess.
        confidence=Confidence.LOW,
        title=derived,
        title_derived=derived is not None,
        body=join_paragraphs(post_paras),
        cross_posted_from=cross_post,
    )
    comments = cut_comments(content[end:], post=0)
    return ParsedDump(
        kind=DumpKind.FLAT, posts=(post,), comments=tuple(comments), notes=segment.RULES
    )
