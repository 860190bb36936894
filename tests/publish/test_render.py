"""Dump text in `source` survives a CommonMark renderer as written; `content` is safe HTML.

lemmy-ui's and PieFed's own renderers: tests/publish/test_markdown_renderers.py.
"""

from __future__ import annotations

import html
import re

from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from mirror.publish.render import to_html, to_markdown

MD = MarkdownIt("commonmark")


def rendered_text(markdown: str) -> str:
    """What a reader sees: the rendered HTML's text, paragraphs and lines as newlines."""
    out = MD.render(markdown)
    out = re.sub(r"<br\s*/?>\n?", "\n", out)
    out = re.sub(r"</p>\n?<p>", "\n\n", out)
    return html.unescape(re.sub(r"<[^>]+>", "", out)).strip()


def test_markdown_characters_survive_as_written() -> None:
    text = (
        "Use *emphasis* and _under_scores_ in C:\\path\\to\\file, [not a link](x)\n"
        "# not a heading\n- not a list\n1. not a list either\n> not a quote &copy; &amp;"
    )
    assert rendered_text(to_markdown(text)) == text


def test_urls_are_links_in_both() -> None:
    text = "See https://example.org/a_b_(c)?x=1&y=2. Thanks"
    assert "<https://example.org/a_b_(c)?x=1&y=2>" in to_markdown(text)
    assert '<a href="https://example.org/a_b_(c)?x=1&amp;y=2"' in to_html(text)
    assert rendered_text(to_markdown(text)) == text


def test_lists_and_paragraphs_become_html_and_scripts_do_not() -> None:
    text = "Steps:\n\n- one\n- two\n\n1) first\n2) second\n\n<script>alert(1)</script> & more"
    out = to_html(text)
    assert "<ul><li>one</li><li>two</li></ul>" in out
    assert "<ol><li>first</li><li>second</li></ol>" in out
    assert "<script>" not in out and "&lt;script&gt;" in out


@given(
    st.text(
        alphabet=st.sampled_from("ab cd\n\\*_`[]()<>#+-=.!|~&;:/0123456789\"'{}%@^$"),
        max_size=120,
    )
)
def test_any_text_renders_back_to_itself(text: str) -> None:
    # Lines as a dump shows them: single spaces, no empty lines inside a paragraph.
    paragraphs = []
    for block in text.split("\n\n"):
        lines = [" ".join(line.split()) for line in block.split("\n")]
        if any(lines):
            paragraphs.append("\n".join(line for line in lines if line))
    text = "\n\n".join(paragraphs)
    if text:
        assert rendered_text(to_markdown(text)) == text
