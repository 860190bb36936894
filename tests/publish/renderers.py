"""What a reader sees of the renderers real servers run on `source`.

The renderers themselves are the sandbox's (mirror.sandbox.renderers: lemmy-ui's
markdown-it, PieFed's markdown2 with its passes). `text_of` turns HTML into
the text a reader sees: paragraphs and blocks separated by a blank line,
`<br>` as a newline, everything else inline.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from mirror.sandbox.renderers import PIEFED_TAGS, lemmy_ui, piefed

__all__ = ["RENDERERS", "layout", "lemmy_ui", "piefed", "seen", "text_of", "typography"]

# -- what a reader sees -----------------------------------------------------------

BLOCKS = frozenset(
    (
        "p", "div", "blockquote", "pre", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
        "table", "tr", "details", "summary", "hr", "section",
    )
)  # fmt: skip
VOID = frozenset(("br", "hr", "img", "input", "meta", "link", "source", "wbr"))


class _Text(HTMLParser):
    def __init__(self, allowed: frozenset[str] | None) -> None:
        super().__init__(convert_charrefs=True)
        self.allowed = allowed
        self.out: list[str] = []
        self.dropped = 0  # depth inside tags the site removes with their contents

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.allowed is not None and (self.dropped or tag not in self.allowed):
            if tag not in VOID:
                self.dropped += 1
            return
        if tag == "br":
            self.out.append("\n")
        elif tag in BLOCKS:
            self.out.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if self.dropped:
            if tag not in VOID:
                self.dropped -= 1
            return
        if tag in BLOCKS:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.dropped:
            # A newline in HTML source shows as a space.
            self.out.append(data.replace("\n", " "))


def text_of(html: str, *, allowed: frozenset[str] | None = None) -> str:
    """The text a reader sees, paragraphs and lines kept; ``allowed``: drop other tags."""
    parser = _Text(allowed)
    parser.feed(html)
    parser.close()
    return layout("".join(parser.out))


def layout(text: str) -> str:
    """Paragraphs separated by one blank line, lines by a newline, spaces collapsed."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [" ".join(line.split()) for line in block.split("\n")]
        if any(lines):
            paragraphs.append("\n".join(line for line in lines if line))
    return "\n\n".join(paragraphs)


#: Typography the renderers apply on purpose (markdown-it's typographer,
#: markdown2's smarty-pants): curly quotes, en and em dashes, ellipses.
TYPOGRAPHY = str.maketrans(
    {"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "‚": "'", "—": "---", "–": "--", "…": "..."}
)


def typography(text: str) -> str:
    """The normalisation both sides of a comparison get: see TYPOGRAPHY, and any run of
    two or more dots as three (markdown-it writes `..` and `....` as `…`, and `?...` as
    `?..`)."""
    return re.sub(r"\.{2,}", "...", text.translate(TYPOGRAPHY))


def seen(html: str, *, site: str) -> str:
    """What a reader of ``site`` ("lemmy-ui" or "piefed") sees of this HTML, normalised."""
    allowed = PIEFED_TAGS if site == "piefed" else None
    return typography(text_of(html, allowed=allowed))


RENDERERS = {"lemmy-ui": lemmy_ui, "piefed": piefed}
