"""A cross-posted post with its comments, every marker stripped: seed 002, and twins.

The twins (``sample``, ``reading_list``) check the same on dumps the project
ships, so that a plain clone, without ../shared, tests every rule too.
"""

from __future__ import annotations

import pytest

from mirror.reconstruct import Confidence, DumpKind
from tests.conftest import seed, shipped
from tests.helpers import parse_file


@pytest.fixture(scope="module")
def dump():
    return parse_file(seed("flat"))


@pytest.fixture(scope="module")
def sample():
    return parse_file(shipped("flat_crosspost.txt"))


@pytest.fixture(scope="module")
def reading_list():
    return parse_file(shipped("flat_reading_list.txt"))


def test_flat_is_detected(dump) -> None:
    assert dump.kind is DumpKind.FLAT


def test_flat_is_detected_in_the_shipped_dumps(sample, reading_list) -> None:
    assert sample.kind is reading_list.kind is DumpKind.FLAT


def test_post_ends_before_the_enumerated_reply(dump) -> None:
    (post,) = dump.posts
    assert post.cross_posted_from == "https://hexbear.net/post/4742235"
    assert (post.first_line, post.last_line) == (1, 20)
    paragraphs = post.body.split("\n\n")
    assert len(paragraphs) == 19
    assert paragraphs[0] == "Democratization of Capitalist Values"
    assert paragraphs[5].startswith(
        "Capital Volume 1, Production of Relative Surplus Value\\Machinery"
    )
    assert post.title == "Democratization of Capitalist Values"
    assert post.title_derived is True
    assert post.author is None and post.community is None
    assert post.confidence is Confidence.LOW


def test_enumerated_comment_keeps_its_points_and_citations(dump) -> None:
    first = dump.comments[0]
    assert (first.first_line, first.last_line) == (21, 29)
    assert first.body.split("\n\n")[-1].startswith("(4) Clearly, for the proletariat")


def test_comments_are_low_confidence_with_unknown_author_and_parent(dump) -> None:
    assert len(dump.comments) >= 30
    for comment in dump.comments:
        assert comment.confidence is Confidence.LOW
        assert comment.author is None
        assert comment.parent is None and comment.parent_known is False
        assert comment.post == 0
    assert dump.comments[-1].last_line == 78
    assert any(c.body == "Correct" for c in dump.comments)
    assert dump.notes  # the heuristics are stated


def test_post_ends_before_the_enumerated_reply_in_the_shipped_dumps(sample, reading_list) -> None:
    (post,) = sample.posts
    assert post.cross_posted_from == "https://bikes.example/post/58231"
    assert (post.first_line, post.last_line) == (1, 8)
    paragraphs = post.body.split("\n\n")
    assert len(paragraphs) == 7
    assert paragraphs[0] == "Running a Community Bike Kitchen"
    assert paragraphs[3] == "What Changed in the First Year"  # a heading stays body text
    assert post.title == "Running a Community Bike Kitchen"
    assert post.title_derived is True
    assert post.author is None and post.community is None
    assert post.confidence is Confidence.LOW
    (listed,) = reading_list.posts
    assert (listed.first_line, listed.last_line) == (1, 5)
    # Backslashes are text, not escapes.
    assert listed.body.split("\n\n")[2].startswith(
        "Start with the manual on the shelf by the truing stand, Manuals\\Wheels\\Chapter 4:"
    )


def test_enumerated_comment_keeps_its_points_and_citations_in_the_shipped_dumps(
    sample, reading_list
) -> None:
    first = sample.comments[0]
    assert (first.first_line, first.last_line) == (9, 12)
    assert first.body.split("\n\n")[1] == "Sheldon Brown, Bicycle Glossary"
    assert first.body.split("\n\n")[-1].startswith("(3) Ask every visitor")
    first = reading_list.comments[0]
    assert (first.first_line, first.last_line) == (6, 10)
    assert first.body.split("\n\n")[-1].startswith("(4) Clearly, for a first wheel")


def test_comments_are_low_confidence_with_unknown_author_and_parent_in_the_shipped_dumps(
    sample,
) -> None:
    assert [(c.first_line, c.last_line) for c in sample.comments] == [
        (9, 12),
        (13, 13),
        (14, 14),
        (15, 15),
        (16, 17),  # "Furthermore," continues
        (18, 18),
    ]
    for comment in sample.comments:
        assert comment.confidence is Confidence.LOW
        assert comment.author is None
        assert comment.parent is None and comment.parent_known is False
        assert comment.post == 0
    assert sample.comments[-1].last_line == 18
    assert any(c.body == "Correct" for c in sample.comments)
    assert sample.notes  # the heuristics are stated
