"""Dump text -> the `source` markdown and the `content` HTML of an object.

The dumps hold text as the page rendered it, not markdown. `source` is the
text protected only where lemmy-ui or PieFed would read it as Markdown
(:mod:`mirror.publish.markdown_source`); `content` is HTML built from the
paragraphs, lists and links, then sanitised.
"""

from __future__ import annotations

import html
import re

import nh3

from mirror.publish.markdown_source import escape_line, paragraphs, pieces, to_markdown

__all__ = ["escape_line", "paragraphs", "sanitize", "to_html", "to_markdown"]

BULLET = re.compile(r"^\s*(?:[-*•‣◦]|\u2022)\s+")
NUMBERED = re.compile(r"^\s*(?:\(?\d{1,3}[.)])\s+")
ALLOWED_TAGS = {"p", "br", "a", "ul", "ol", "li", "em", "strong", "small", "hr"}


# -- HTML content -----------------------------------------------------------------


def _inline_html(line: str) -> str:
    out = []
    for is_url, text in pieces(line):
        if is_url:
            href = html.escape(text, quote=True)
            out.append(f'<a href="{href}" rel="nofollow noopener">{html.escape(text)}</a>')
        else:
            out.append(html.escape(text, quote=False))
    return "".join(out)


def _block_html(paragraph: str) -> str:
    lines = paragraph.split("\n")
    if len(lines) > 1 and all(BULLET.match(line) for line in lines):
        items = "".join(f"<li>{_inline_html(BULLET.sub('', line))}</li>" for line in lines)
        return f"<ul>{items}</ul>"
    if len(lines) > 1 and all(NUMBERED.match(line) for line in lines):
        items = "".join(f"<li>{_inline_html(NUMBERED.sub('', line))}</li>" for line in lines)
        return f"<ol>{items}</ol>"
    return "<p>" + "<br>".join(_inline_html(line) for line in lines) + "</p>"


def to_html(text: str) -> str:
    """Paragraphs, lists and linkified URLs as sanitised HTML."""
    return sanitize("".join(_block_html(p) for p in paragraphs(text)))


def sanitize(markup: str) -> str:
    return nh3.clean(
        markup,
        tags=ALLOWED_TAGS,
        attributes={"a": {"href"}},
        link_rel="nofollow noopener",
        url_schemes={"http", "https"},
    )
