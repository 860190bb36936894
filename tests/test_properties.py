"""Properties: the parser never crashes; ingesting twice changes nothing, in any order the same."""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mirror.clock import FrozenClock
from mirror.db import migrate
from mirror.db.session import make_engine
from mirror.ingest import rows
from mirror.ingest.files import ingest_file
from mirror.ingest.match import MIN_PREFIX_CHARS, Relation, norm, norm_head, paras, text_relation
from mirror.inspection import build_document
from mirror.reconstruct import DumpKind, NotADump, parse_dump
from mirror.reconstruct.text import normalize

# Lines that carry the markers the parsers key on, to reach deep branches.
MARKER_LINES = [
    "[–] ana@tea.example 3 points 2 days ago (2 children)",
    "[–] bo@tea.example 1 points 5 hours ago* (last edited 1 hour ago)",
    "[–] x 0 points just now (99 children)",
    "this post was submitted on 26 Apr 2025",
    "22 points (95.8% liked)",
    "5821 readers",
    "12 users here now",
    "founded 6 years ago",
    "MODERATORS",
    "\u00a0",
    "176",
    "33",
    "Title here (tea.example)",
    "submitted 3 months ago* (last edited 3 months ago) by ana@tea.example to c/tea@tea.example",
    "view more: ‹ prev next ›",
    "you are viewing a single comment's thread",
    "  • ana [she/her]@tea.exampletoTea Time@lemmy.exampleA title",
    "  • 12 Posts",
    "    • a list item",
    "    arrow-up",
    "    7",
    "    edit-2",
    "help-circle",
    "cross-posted from: https://tea.example/post/1",
    "(1) A numbered point.",
    "",
    "A plain sentence of prose with several words in it.",
]

lines_strategy = st.lists(
    st.one_of(st.sampled_from(MARKER_LINES), st.text(max_size=80)), max_size=40
)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=2000))
def test_parser_never_raises_on_arbitrary_text(text: str) -> None:
    _parse_all_ways(text)


@settings(max_examples=400, deadline=None)
@given(lines_strategy)
def test_parser_never_raises_on_marker_soup(lines: list[str]) -> None:
    _parse_all_ways("\n".join(lines))


def _parse_all_ways(text: str) -> None:
    for kind in (None, *DumpKind):
        try:
            dump = parse_dump(text, kind=kind, captured_at=datetime(2025, 1, 1, tzinfo=UTC))
        except NotADump as exc:
            assert "\n" not in str(exc)
            continue
        for item in (*dump.posts, *dump.comments):
            assert 1 <= item.first_line <= item.last_line
        for comment in dump.comments:
            assert comment.parent is None or comment.parent < comment.ref


# -- generated dumps ---------------------------------------------------------

word = st.sampled_from(
    [
        "tea",
        "garden",
        "bike",
        "chain",
        "wheel",
        "soil",
        "seed",
        "rain",
        "river",
        "bread",
        "oven",
        "“quoted”",
        "it’s",
        "don't",
        "can't",
        "a",
        "the",
        "of",
        "and",
        "very",
        "quite",
        "really",
        "slowly",
    ]
)
sentence = st.lists(word, min_size=3, max_size=14).map(lambda ws: " ".join(ws).capitalize() + ".")
paragraph = st.lists(sentence, min_size=1, max_size=4).map(" ".join)
body = st.lists(paragraph, min_size=1, max_size=4)
handle = st.tuples(
    st.sampled_from(["ana", "bo", "cy", "dee_e"]), st.sampled_from(["tea.example", "bike.example"])
).map("@".join)


#: A post page's opening: submission line, score, sidebar; the post's body follows.
THREAD_SIDEBAR = [
    "this post was submitted on 3 Mar 2024",
    "12 points (90% liked)",
    "",
    "Tea",
    "",
    "10 readers",
    "1 users here now",
    "",
    "About tea.",
    "",
    "founded 2 years ago",
    "MODERATORS",
    "\u00a0",
    "",
]


@st.composite
def thread_page(draw: st.DrawFn) -> str:
    out = [
        "this post was submitted on 3 Mar 2024",
        f"{draw(st.integers(0, 500))} points (90% liked)",
        *THREAD_SIDEBAR[2:],
        *"\n\n".join(draw(body)).split("\n"),
        "",
    ]
    for _ in range(draw(st.integers(0, 8))):
        children = draw(st.integers(0, 3))
        suffix = f" ({children} children)" if children else ""
        edited = draw(st.sampled_from(["", "* (last edited 1 hour ago)"]))
        out.append(
            f"[–] {draw(handle)} {draw(st.integers(-3, 40))} points 2 days ago{edited}{suffix}"
        )
        out.append("")
        out.extend("\n\n".join(draw(body)).split("\n"))
        out.append("")
    return "\n".join(out).rstrip("\n")


@st.composite
def listing_page(draw: st.DrawFn) -> str:
    out = [
        "Tea // Chat",
        "",
        "20 readers",
        "2 users here now",
        "",
        "Chat.",
        "",
        "founded 1 year ago",
        "MODERATORS",
    ]
    for rank in range(1, draw(st.integers(1, 6)) + 1):
        out.append(str(rank))
        if draw(st.booleans()):
            out.append(str(draw(st.integers(0, 99))))
            out.append(f"submitted 2 days ago by {draw(handle)} to c/tea@tea.example")
        out += ["\u00a0", "\u00a0", ""]
        out.extend("\n\n".join(draw(body)).split("\n"))
        out.append("")
    return "\n".join(out).rstrip("\n")


_TEMPLATE: Path | None = None


def _fresh_database(folder: Path) -> str:
    """A migrated SQLite file, copied from a template migrated once."""
    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = Path(tempfile.mkdtemp()) / "template.db"
        template = make_engine(f"sqlite:///{_TEMPLATE}")
        migrate.upgrade(template)
        template.dispose()  # the last close checkpoints the WAL into the file
    target = folder / "mirror.db"
    shutil.copy(_TEMPLATE, target)
    return f"sqlite:///{target}"


def _snapshot(engine: sa.Engine) -> dict[str, list]:
    tables = ("community", "author", "post", "comment", "alias", "observation", "fragment")
    with engine.connect() as conn:
        return {
            t: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {t}"))), key=repr)
            for t in tables
        }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(thread_page(), listing_page()), min_size=1, max_size=3))
def test_ingesting_generated_dumps_twice_changes_nothing(pages: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        engine = make_engine(_fresh_database(folder))
        clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
        files = []
        for n, text in enumerate(pages):
            path = folder / f"page{n}.txt"
            path.write_text(text)
            files.append(path)
        captured = datetime(2025, 7, 1, tzinfo=UTC)
        for path in files:
            assert ingest_file(engine, path, clock=clock, captured_at=captured).ok
        before = _snapshot(engine)
        clock.advance(60)
        for path in files:
            report = ingest_file(engine, path, clock=clock, captured_at=captured)
            assert report.ok and report.posts == report.comments == 0
        assert _snapshot(engine) == before
        engine.dispose()


def _document_after(folder: Path, files: list[Path]) -> dict:
    """The reconstruction after ingesting ``files`` in this order into a new database."""
    folder.mkdir()
    engine = make_engine(_fresh_database(folder))
    clock = FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    captured = datetime(2025, 7, 1, tzinfo=UTC)
    for path in files:
        assert ingest_file(engine, path, clock=clock, captured_at=captured).ok
    document = build_document(engine)
    engine.dispose()
    for key in ("posts", "comments"):
        for item in document[key]:
            item.pop("aliases")  # the ids an item was also known by depend on the order
            item["sources"].sort(key=lambda s: (s["file"], s["first_line"]))
    return document


@st.composite
def _copy_of(draw: st.DrawFn, paragraphs: list[str]) -> str:
    """A body as another page may show it: whole, cut short, requoted, respaced, shortened."""
    text = "\n\n".join(paragraphs)
    way = draw(st.sampled_from(["whole", "cut", "quotes", "spaces", "paragraphs"]))
    if way == "cut":
        # Copies are looked up by their first 48 characters (identity.HEAD_CHARS):
        # one cut shorter than that is not found as a truncated copy.
        cut = draw(st.integers(min_value=min(len(text), 50), max_value=len(text)))
        return text[:cut].rstrip() + ("..." if cut < len(text) else "")
    if way == "quotes":
        return text.replace("\u2019", "'").replace("\u201c", '"')
    if way == "spaces":
        return text.replace(" ", "  ")
    # Fewer paragraphs: the same item only if what is left is a clear prefix
    # (match.MIN_PREFIX_CHARS); otherwise the page shows another item.
    if way == "paragraphs" and len(paragraphs) > 1 and len(paragraphs[0]) >= 50:
        return "\n\n".join(paragraphs[: draw(st.integers(1, len(paragraphs) - 1))])
    return text


@st.composite
def overlapping_thread_pages(draw: st.DrawFn) -> list[str]:
    """Two or three pages of one post and its comment tree, copied differently; maybe a listing.

    Each page shows some of the top-level comments, each with its whole
    subtree (so `(N children)` counts what follows); a listing of the
    community may show the post too. Openings are distinctive (the post's
    long enough to be matched when cut short, each comment's its own), and
    copies keep enough to be recognised (see _copy_of), so that which
    copies are one item is decided by the pages, not by chance (README,
    "Merging": where different items share what identifies them, the order
    decides).
    """
    post = draw(st.lists(paragraph, min_size=1, max_size=3))
    post[0] = "A post about tea, long enough to be known by its opening. " + post[0]
    count = draw(st.integers(1, 7))
    # Each comment replies to an earlier one or to the post (None).
    parents = [
        draw(st.one_of(st.none(), st.integers(0, n - 1))) if n else None for n in range(count)
    ]
    comments = []
    for n in range(count):
        paragraphs = draw(st.lists(paragraph, min_size=1, max_size=3))
        paragraphs[0] = f"Comment{n} {paragraphs[0]}"
        comments.append((draw(handle), paragraphs))

    def subtree(n: int) -> list[int]:  # pre-order
        return [n, *(m for child in range(count) if parents[child] == n for m in subtree(child))]

    pages = []
    for _ in range(draw(st.integers(2, 3))):
        lines = [*THREAD_SIDEBAR, *draw(_copy_of(post)).split("\n"), ""]
        tops = [n for n in range(count) if parents[n] is None]
        for top in draw(st.lists(st.sampled_from(tops), unique=True).map(sorted)):
            for n in subtree(top):
                author, paragraphs = comments[n]
                below = len(subtree(n)) - 1
                children = f" ({below} children)" if below else ""
                lines += [f"[\u2013] {author} 3 points 2 days ago{children}", ""]
                lines += [*draw(_copy_of(paragraphs)).split("\n"), ""]
        pages.append("\n".join(lines).rstrip("\n"))
    if draw(st.booleans()):
        pages.append(draw(_listing_with(draw(_copy_of(post)))))
    return list(dict.fromkeys(pages))  # the same page twice is one dump


@st.composite
def _listing_with(draw: st.DrawFn, post: str) -> str:
    """A listing of the post's community showing the post among others, maybe with its author."""
    lines = THREAD_SIDEBAR[3:-2]  # the community's sidebar: title to MODERATORS
    entries: list[tuple[str, str | None]] = [
        ("\n\n".join(b), None) for b in draw(st.lists(body, max_size=3))
    ]
    entries.insert(draw(st.integers(0, len(entries))), (post, draw(st.one_of(st.none(), handle))))
    for rank, (text, author) in enumerate(entries, start=1):
        lines.append(str(rank))
        if author:
            lines += ["7", f"submitted 2 days ago by {author} to c/tea@tea.example"]
        lines += ["\u00a0", "\u00a0", "", *text.split("\n"), ""]
    return "\n".join(lines).rstrip("\n")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overlapping_thread_pages())
def test_the_reconstruction_does_not_depend_on_the_order_of_ingesting(pages: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = [folder / f"page{n}.txt" for n in range(len(pages))]
        for path, text in zip(files, pages, strict=True):
            path.write_text(text)
        forward = _document_after(folder / "forward", files)
        backward = _document_after(folder / "backward", files[::-1])
        assert backward == forward


# Whitespace of every kind, quotes that normalise, an ellipsis that grows.
TEXT = st.text(alphabet=st.sampled_from(list("ab \n\t\u00a0\u2019\u201c\u2026.x")), max_size=900)


@given(body=TEXT, chars=st.integers(min_value=1, max_value=300))
def test_the_normalised_head_is_the_head_of_the_normalised_text(body: str, chars: int) -> None:
    # Ids are made from it: any difference would give an item a second id.
    assert norm_head(body, chars) == norm(body)[:chars] == normalize(body)[:chars]


def _relation_by_definition(a: str, b: str) -> Relation:
    """text_relation as the module's docstring defines it: everything normalised first."""
    if not a or not b:
        return Relation.NONE
    na, nb = norm(a), norm(b)
    if na == nb:
        return Relation.EQUAL
    # Either may be the truncated copy: "...garden don..." is as long as "...garden don't."
    for short, long in ((na, nb), (nb, na)):
        stripped = short[:-3].rstrip() if short.endswith("...") else short
        if len(stripped) >= MIN_PREFIX_CHARS and long.startswith(stripped):
            return Relation.PREFIX
    small, big = sorted((paras(a), paras(b)), key=len)
    rest = iter(big)
    if len(small) >= 2 and small[0] == big[0] and all(p in rest for p in small):
        return Relation.SUBSET
    return Relation.NONE


@given(whole=TEXT, cut=st.integers(min_value=0, max_value=900), tail=TEXT, swap=st.booleans())
def test_text_relation_of_truncated_copies_is_the_normalised_relation(
    whole: str, cut: int, tail: str, swap: bool
) -> None:
    # Truncated copies are often a raw prefix of the whole, which
    # text_relation settles without normalising the whole.
    a, b = whole[:cut] + tail[: cut % 7], whole
    if swap:
        a, b = b, a
    assert text_relation(a, b) is _relation_by_definition(a, b)


@example(whole="ab" * 30, short_by=3, tail="...")
@given(
    whole=TEXT,
    short_by=st.one_of(st.integers(min_value=0, max_value=6), st.integers(min_value=0)),
    tail=st.sampled_from(["", "...", " ...", "\u2026", "x", "."]),
)
def test_text_relation_is_symmetric(whole: str, short_by: int, tail: str) -> None:
    # A copy cut short against the whole; cut a few characters short and
    # marked "...", it is as long as the whole.
    copy = whole[: max(0, len(whole) - short_by)] + tail
    assert text_relation(copy, whole) is text_relation(whole, copy)


def test_folding_copies_keeps_the_whole_body_whichever_comes_first() -> None:
    whole = "Post tea tea tea tea tea tea tea tea don't. Tea tea tea tea garden garden don't."
    cut = whole[: whole.rindex("'")] + "..."  # as long as the whole
    trailing = "Post tea tea tea tea tea tea tea tea don't. Tea tea tea tea, I wonder..."
    for pair, kept in (((whole, cut), whole), ((trailing, trailing[:-3]), trailing)):
        for first, second in (pair, pair[::-1]):
            stored = {"body": first, "confidence": "high"}
            rows.fold("comment", stored, {"body": second, "confidence": "high"})
            assert stored["body"] == kept


def test_a_copy_cut_to_the_length_of_the_whole_is_a_prefix_either_way() -> None:
    whole = "Post tea tea tea tea tea tea tea tea don't. Tea tea tea tea garden garden don't."
    cut = whole[: whole.rindex("'")] + "..."
    assert len(cut) == len(whole)
    assert text_relation(cut, whole) is text_relation(whole, cut) is Relation.PREFIX


@given(
    st.dictionaries(
        st.text(max_size=12),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=40)
        | st.datetimes(timezones=st.just(UTC)),
        max_size=14,
    )
)
def test_provenance_records_are_written_as_json_dumps_writes_them(record: dict) -> None:
    assert rows._ENCODE is not None  # CPython: the encoder built once is in use
    plain = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}
    assert rows._dumps(record) == json.dumps(plain)


def test_equal_times_in_other_offsets_keep_their_own_form() -> None:
    utc = datetime(2025, 7, 28, tzinfo=UTC)
    paris = utc.astimezone(timezone(timedelta(hours=2)))
    assert utc == paris
    assert rows._dumps({"at": utc}) == '{"at": "2025-07-28T00:00:00+00:00"}'
    assert rows._dumps({"at": paris}) == '{"at": "2025-07-28T02:00:00+02:00"}'
