"""Dump text -> the `source` markdown and the `content` HTML of an object.

The dumps hold text as the page rendered it, not markdown. `source` must
survive a markdown renderer as written, so every character markdown would
read is escaped (URLs go in autolinks, where nothing is escaped); `content`
is HTML built from the paragraphs, lists and links, then sanitised.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import nh3

URL = re.compile(r"https?://[^\s<>\"']+")
#: Punctuation that ends a sentence rather than a URL.
URL_TAIL = ".,;:!?)]}’”"
BULLET = re.compile(r"^\s*(?:[-*•‣◦]|\u2022)\s+")
NUMBERED = re.compile(r"^\s*(?:\(?\d{1,3}[.)])\s+")
#: Characters markdown (CommonMark, and Lemmy's markdown-it) may read anywhere; `&`
#: starts an entity (`&copy;`).
MD_INLINE = re.compile(r"([\\`*_\[\]<>~|!&])")
#: Characters that start a block only at the start of a line.
MD_BLOCK_MARK = re.compile(r"^(\s*)([#+\-=])")
MD_ORDERED = re.compile(r"^(\s*\d+)([.)])")
ALLOWED_TAGS = {"p", "br", "a", "ul", "ol", "li", "em", "strong", "small", "hr"}


def paragraphs(text: str) -> list[str]:
    return [p.strip("\n") for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def _split_url(match: str) -> tuple[str, str]:
    url = match
    tail = ""
    while url and url[-1] in URL_TAIL:
        # A closing bracket that opens inside the URL belongs to it (Wikipedia links).
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        tail = url[-1] + tail
        url = url[:-1]
    return url, tail


def _pieces(line: str) -> Iterator[tuple[bool, str]]:
    """(is_url, text) runs of one line."""
    position = 0
    for match in URL.finditer(line):
        url, tail = _split_url(match.group(0))
        if match.start() > position:
            yield False, line[position : match.start()]
        yield True, url
        position = match.start() + len(url)
        del tail
    if position < len(line):
        yield False, line[position:]


# -- markdown source ------------------------------------------------------------


def escape_line(line: str) -> str:
    out = []
    for is_url, text in _pieces(line):
        out.append(f"<{text}>" if is_url else MD_INLINE.sub(r"\\\1", text))
    escaped = "".join(out)
    # Block marks at the start of a line: `- x` is a list, `1. x` too, `# x` a heading.
    escaped = MD_BLOCK_MARK.sub(r"\1\\\2", escaped, count=1)
    return MD_ORDERED.sub(r"\1\\\2", escaped, count=1)


def to_markdown(text: str) -> str:
    """Markdown that renders as the text was written: paragraphs, lines, characters."""
    blocks = []
    for paragraph in paragraphs(text):
        # A hard line break (backslash at the end) keeps single newlines.
        blocks.append("\\\n".join(escape_line(line) for line in paragraph.split("\n")))
    return "\n\n".join(blocks)


# -- HTML content -----------------------------------------------------------------


def _inline_html(line: str) -> str:
    out = []
    for is_url, text in _pieces(line):
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
