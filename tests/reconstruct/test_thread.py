"""Old-reddit-style post pages: seed 001 ("single comment's thread"), twins, a full page.

The twins check the same as the seed tests on the thread sample and on
tests/fixtures/dumps/thread_quote_reply.txt, which the project ships.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mirror.reconstruct import Confidence, DumpKind, parse_dump
from tests.conftest import CAPTURED, seed, shipped
from tests.helpers import parse_file


@pytest.fixture(scope="module")
def dump():
    return parse_file(seed("thread"), CAPTURED)


@pytest.fixture(scope="module")
def sample():
    return parse_file(shipped("thread_single_gardening.txt"), CAPTURED)


@pytest.fixture(scope="module")
def quoting():
    return parse_file(shipped("thread_quote_reply.txt"), CAPTURED)


def test_thread_is_detected(dump) -> None:
    assert dump.kind is DumpKind.THREAD


def test_thread_is_detected_in_the_shipped_dumps(sample, quoting) -> None:
    assert sample.kind is quoting.kind is DumpKind.THREAD


def test_post_from_sidebar_and_body(dump) -> None:
    (post,) = dump.posts
    assert (post.first_line, post.last_line) == (15, 59)
    assert post.votes.score == 22
    assert post.votes.like_ratio == pytest.approx(0.958)
    assert post.published.raw == "26 Apr 2025"
    assert post.published.estimated == datetime(2025, 4, 26, tzinfo=UTC)
    assert post.author is None  # the page does not show it
    assert post.community.title == "Socialism"
    assert post.community.readers == 5821
    assert post.community.description == "Rules TBD."
    assert post.community.handle is None
    # No title on the page: a derived one, marked so.
    assert post.title_derived is True
    assert post.title.startswith("AI has become as a deeply polarizing issue")
    assert len(post.title) <= 200
    assert len(post.body.split("\n\n")) == 23
    assert "Democratization Versus Corporate Capture" in post.body.split("\n\n")


def test_comment_headers(dump) -> None:
    rows = [
        (c.first_line, c.last_line, c.author.handle, c.votes.score, c.descendants, c.edited)
        for c in dump.comments
    ]
    assert rows == [
        (63, 65, "happybadger@hexbear.net", 1, 1, False),
        (67, 69, "yogthos@lemmy.ml", 3, 1, False),
        (71, 83, "happybadger@hexbear.net", 1, 1, True),
        (85, 119, "yogthos@lemmy.ml", 3, None, False),
    ]
    edited = dump.comments[2]
    assert edited.edited_at.raw == "2 days ago"
    assert edited.published.estimated == CAPTURED - timedelta(days=2)


def test_single_thread_chain_with_unknown_top_parent(dump) -> None:
    parents = [(c.parent, c.parent_known) for c in dump.comments]
    assert parents == [(None, False), (0, True), (1, True), (2, True)]
    assert all(c.post == 0 and c.confidence is Confidence.HIGH for c in dump.comments)


def test_quote_reply_body_and_literal_backslash(dump) -> None:
    last = dump.comments[3].body.split("\n\n")
    assert (
        last[0]
        == "Sure but I’ve read the original post and it you don’t make a Marxist case for it."
    )
    assert any(p.endswith("supported by slaves.\\") for p in last)
    assert len(last) == 17


def test_post_from_sidebar_and_body_in_the_sample(sample) -> None:
    (post,) = sample.posts
    assert (post.first_line, post.last_line) == (15, 21)
    assert post.votes.score == 37
    assert post.votes.like_ratio == pytest.approx(0.949)
    assert post.published.raw == "14 Jun 2025"
    assert post.published.estimated == datetime(2025, 6, 14, tzinfo=UTC)
    assert post.author is None  # the page does not show it
    assert post.community.title == "Seed Savers"
    assert post.community.readers == 2210
    assert post.community.description == (
        "Saving, swapping and sowing open-pollinated seed. No selling."
    )
    assert post.community.handle is None
    # No title on the page: a derived one, marked so.
    assert post.title_derived is True
    assert post.title.startswith("Every year someone at the swap asks how to save tomato seed")
    assert len(post.title) <= 200
    assert len(post.body.split("\n\n")) == 4
    assert "What Comes Next" in post.body.split("\n\n")


def test_comment_headers_in_the_sample(sample) -> None:
    rows = [
        (c.first_line, c.last_line, c.author.handle, c.votes.score, c.descendants, c.edited)
        for c in sample.comments
    ]
    assert rows == [
        (25, 27, "olu@lemmy.example", 6, 3, False),
        (29, 35, "fern_wright@garden.example", 4, 2, True),
        (37, 41, "olu@lemmy.example", 3, 1, False),
        (43, 45, "fern_wright@garden.example", 2, None, False),
    ]
    edited = sample.comments[1]
    assert edited.edited_at.raw == "1 day ago"
    assert edited.published.estimated == CAPTURED - timedelta(days=1)


def test_single_thread_chain_with_unknown_top_parent_in_the_shipped_dumps(sample, quoting) -> None:
    parents = [(c.parent, c.parent_known) for c in sample.comments]
    assert parents == [(None, False), (0, True), (1, True), (2, True)]
    assert [(c.parent, c.parent_known) for c in quoting.comments] == [(None, False), (0, True)]
    for dump in (sample, quoting):
        assert all(c.post == 0 and c.confidence is Confidence.HIGH for c in dump.comments)


def test_quote_reply_body_and_literal_backslash_in_the_shipped_dumps(sample, quoting) -> None:
    reply = quoting.comments[1].body.split("\n\n")
    # The quoted sentences stay in the reply, in the reply's quote style.
    assert reply[0] == "Paper envelopes don\u2019t keep beans dry enough."
    assert reply[2] == "Jars are better for anything big."
    assert reply[3].endswith("on the way to the library.\\")
    assert len(reply) == 5
    towel = sample.comments[2].body.split("\n\n")
    assert towel[0].endswith("keep the jar for the beefsteaks.\\")


FULL_PAGE = """\
this post was submitted on 3 Mar 2024
5 points (100% liked)

Bike Repair

10 readers
1 users here now

Fix things.

founded 2 years ago
MODERATORS
\u00a0

Chain lube, which one?
submitted 1 day ago by ana@bikes.example to c/bikerepair@bikes.example

Which chain lube do you use in winter, and why?

[–] bo@bikes.example 4 points 1 day ago (3 children)

Wax, always.

[–] ana@bikes.example 2 points 1 day ago (1 children)

Even in the rain?

[–] bo@bikes.example 2 points 1 day ago* (last edited 20 hours ago)

Yes, re-wax weekly.

[–] cy@other.example 1 points 1 day ago

Wet lube here.

[–] dee@other.example 1 points 12 hours ago

Drip oil.\
"""


def test_full_page_rebuilds_the_tree_from_descendant_counts() -> None:
    dump = parse_dump(FULL_PAGE, captured_at=CAPTURED)
    (post,) = dump.posts
    assert post.title == "Chain lube, which one?"
    assert post.title_derived is False
    assert post.author.handle == "ana@bikes.example"
    assert post.community.handle == "bikerepair@bikes.example"
    assert post.community.title == "Bike Repair"
    assert post.body == "Which chain lube do you use in winter, and why?"
    tree = [(c.author.handle, c.parent, c.parent_known) for c in dump.comments]
    assert tree == [
        ("bo@bikes.example", None, True),  # top level: the page shows all comments
        ("ana@bikes.example", 0, True),
        ("bo@bikes.example", 1, True),
        ("cy@other.example", 0, True),  # third descendant of the first comment
        ("dee@other.example", None, True),
    ]
    assert dump.comments[2].edited is True
    assert dump.comments[2].edited_at.raw == "20 hours ago"
