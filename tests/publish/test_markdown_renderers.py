"""Every item's `source` renders back to its text on lemmy-ui and on PieFed.

Each reconstructed body goes through `render.to_markdown`, then through
both renderers (tests/publish/renderers.py: markdown-it-py set up as
lemmy-ui, markdown2 with PieFed's extras and a model of PieFed's own
passes); the text a reader sees must equal the body. The normalisation,
applied to both sides alike (`renderers.seen`, `renderers.layout`,
`renderers.typography`):

- layout: paragraphs separated by one blank line, lines by one newline,
  runs of whitespace as one space, no space at a line's ends (HTML shows
  no more than that);
- typography the renderers apply on purpose: curly quotes as straight
  ones (“ ” „ as ", ‘ ’ ‚ as '), an em dash as `---` and an en dash as
  `--`, `…` as `...`, and any run of two or more dots as `...`.

Nothing else is normalised: an escape that shows, a lost character, an
emphasis, a list marker, a spoiler, a subscript or a table all fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from mirror.clock import FrozenClock
from mirror.db import migrate
from mirror.db.session import make_engine
from mirror.ingest.files import ingest_paths
from mirror.inspection import build_document
from mirror.publish import render
from mirror.publish.attribution import attribution
from mirror.publish.plan import Item
from tests.conftest import CAPTURED, SEEDS
from tests.publish.renderers import RENDERERS, layout, lemmy_ui, piefed, seen, text_of, typography

SAMPLES = Path(__file__).resolve().parents[2] / "mirror" / "samples"
#: A backslash before ASCII punctuation: an escape, if it shows, that a renderer did not undo.
ESCAPE = re.compile(r"\\[!-/:-@\[-`{-~]")


def _bodies(engine: Engine, paths: list[Path]) -> list[tuple[str, str]]:
    reports = ingest_paths(engine, paths, clock=FrozenClock(CAPTURED), captured_at=CAPTURED)
    assert all(r.ok for r in reports), [r.error for r in reports if not r.ok]
    document = build_document(engine)
    items = [*document["posts"], *document["comments"]]
    return [(item["id"], item["body"]) for item in items if item["body"]]


def _engine(path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def sample_bodies(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    for engine in _engine(tmp_path_factory.mktemp("samples") / "mirror.db"):
        return _bodies(engine, sorted(SAMPLES.glob("*.txt")))
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def seed_bodies(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    if not SEEDS.is_dir():
        pytest.skip(f"the real seeds are not here ({SEEDS}: ../shared/seeds beside the project)")
    for engine in _engine(tmp_path_factory.mktemp("seeds") / "mirror.db"):
        return _bodies(engine, sorted(SEEDS.glob("*.txt")))
    raise AssertionError("unreachable")


def _escapes(text: str) -> list[str]:
    return sorted(ESCAPE.findall(text))


def _check(body: str, site: str, label: str = "") -> None:
    source = render.to_markdown(body)
    shown = seen(RENDERERS[site](source), site=site)
    wanted = typography(layout(body))
    assert _escapes(shown) == _escapes(wanted), f"{label} on {site}: an escape shows\n{source}"
    assert shown == wanted, f"{label} on {site}:\n--- source\n{source}\n--- shown\n{shown}"


@pytest.mark.parametrize("site", sorted(RENDERERS))
def test_every_sample_item_renders_as_its_text(
    sample_bodies: list[tuple[str, str]], site: str
) -> None:
    assert len(sample_bodies) > 20
    for item_id, body in sample_bodies:
        _check(body, site, item_id)


@pytest.mark.parametrize("site", sorted(RENDERERS))
def test_every_seed_item_renders_as_its_text(seed_bodies: list[tuple[str, str]], site: str) -> None:
    assert len(seed_bodies) > 50
    for item_id, body in seed_bodies:
        _check(body, site, item_id)


def test_what_piefed_showed_is_written_as_it_is() -> None:
    # Issue 18: PieFed showed "consumed \~1,300 MWh" and "Marx \&amp; Engels".
    text = "It consumed ~1,300 MWh. Marx & Engels. Thank you! 50% off, #1 in C:\\Users\\me"
    assert render.to_markdown(text) == text
    for site in RENDERERS:
        _check(text, site)


def test_protections_are_entities_where_markdown2_has_no_escape() -> None:
    source = render.to_markdown("a~b~c, x^2^, ~~gone~~, a || b || c, {漢字|かんじ}")
    assert "\\~" not in source and "\\^" not in source and "\\|" not in source
    assert "&#126;" in source and "&#94;" in source and "&#124;" in source


def _links(html: str) -> list[tuple[str, str]]:
    found = re.findall(r'<a href="([^"]*)"[^>]*>(.*?)</a>', html)
    return [(href, text_of(inner)) for href, inner in found]


def test_urls_are_autolinks_with_their_own_text_on_both() -> None:
    url = "https://example.org/a_b_(c)?x=1&y=2"
    text = f"See {url}. Thanks, and *see* https://lemmy.ml/c/a~b~c"
    source = render.to_markdown(text)
    assert f"<{url}>" in source and "<https://lemmy.ml/c/a~b~c>" in source
    for render_with in (lemmy_ui, piefed):
        hrefs = [(h.replace("&amp;", "&"), t) for h, t in _links(render_with(source))]
        assert hrefs == [(url, url), ("https://lemmy.ml/c/a~b~c", "https://lemmy.ml/c/a~b~c")]
    for site in RENDERERS:
        _check(text, site)


def test_lines_and_paragraphs_are_kept_on_both() -> None:
    text = "first line\nsecond line ends in a backslash \\\nthird\n\nnew paragraph"
    source = render.to_markdown(text)
    assert source.count("\\\n") == 2
    for render_with in (lemmy_ui, piefed):
        html = render_with(source)
        assert len(re.findall(r"<br\s*/?>", html)) == 2 and html.count("<p>") == 2
    for site in RENDERERS:
        _check(text, site)


def test_block_marks_and_inline_syntax_stay_text() -> None:
    text = "\n".join(
        [
            "# not a heading",
            "- not a list",
            "1. not a list either",
            "> not a quote >!nor a spoiler!<",
            "::: spoiler not a spoiler",
            "| a | b |",
            "|---|---|",
            "```",
            "*emphasis* _under_ **strong** __strong__ a__b__c snake_case",
            "`code` [a link](https://x.example) ![image](y.png) [^note] ^[inline]",
            "<b>bold</b> <https://x.example> &copy; &#169; a~sub~ b^sup^ ~~strike~~",
            "||tg spoiler|| {ruby|text} (c) (tm) +- ,, ???? !!!! . . .",
            "===",
            "---",
            "[ref]: https://x.example",
        ]
    )
    for site in RENDERERS:
        _check(text, site)


def test_attribution_renders_as_its_html_on_both() -> None:
    item = Item(
        kind="post",
        data={
            "id": "p1",
            "author": "snake_case_*user*@lemmy.example",
            "community": "c_[1]@lemmy.example",
            "published": "2025-07-28T12:00:00Z",
            "edited": True,
            "cross_posted_from": "https://lemmy.example/post/1",
        },
        notes=["a ~note~ with `ticks` and **stars**"],
    )
    markdown, html = attribution(item, actor_is_bot=False)
    wanted = typography(text_of(html))
    for site, render_with in RENDERERS.items():
        rendered = render_with(markdown)
        assert "<em>" in rendered and "<hr" in rendered
        assert [t for _, t in _links(rendered)] == [
            "snake_case_*user*@lemmy.example",
            "c_[1]@lemmy.example",
            "https://lemmy.example/post/1",
        ]
        assert seen(rendered, site=site) == wanted


#: Characters that mean something to one renderer or the other somewhere.
SIGNIFICANT = "ab cd\n\\*_`[]()<>#+-=.!|~^&;:/0123456789\"'{}%@$,?"


def _as_a_dump_shows(text: str) -> str:
    # Lines as a dump shows them: single spaces, no empty lines inside a paragraph.
    return layout(text)


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(SIGNIFICANT), max_size=80))
@example("a_b_ c")
@example("x*y* z")
@example("\\\\`a`\\")
@example("[a](b) [!c@d.e](f)")
@example("~a~ ~~b~~ ^c^ ::: d")
@example("1) a\n2. b\n+ c\n= \n- \n|-|")
def test_any_text_renders_back_to_itself_on_both(text: str) -> None:
    text = _as_a_dump_shows(text)
    if text:
        for site in RENDERERS:
            _check(text, site)


#: Pieces of prose and of syntax, URLs among them: the property above rarely spells these.
#: A URL or a `www.` word starts a word (a `www.` word glued to a URL that follows it
#: is linked across the URL by PieFed's link-patterns, whatever the source says).
PIECES = st.sampled_from(
    [
        "word", "a", "1", "12.", "x_y", "*", "**", "_", "__", "~", "~~", "^", "|", "||", "[", "]",
        "(", ")", "](", "<", ">", "&", "&amp;", "&#1;", "#", "-", "+", "=", "`", "```", ":::",
        "spoiler", "!", "?", ".", ",", "'", '"', "\\", "{", "}", " https://x.org/a_b", " www.y.com",
        "@u@h.x", "!c@h.x", " ", " ", "\n", "\n\n", "(c)", "...", "--", "é", "€", ";", ":", "/",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=40).map("".join))
@example("https://x.org/a_b~~ ^https://x.org/^ !https://x.org/`a`")
@example("\\https://x.org/a_b` <0@0> www.y.com^ _\n0_0")
@example("www.y.com\nword https://x.org/a_b**\\")
def test_any_prose_with_urls_renders_back_to_itself_on_both(text: str) -> None:
    text = _as_a_dump_shows(text)
    if text:
        for site in RENDERERS:
            _check(text, site)
