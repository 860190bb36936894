"""Seed 002: a cross-posted post with its comments, every marker stripped."""

from __future__ import annotations

import pytest

from mirror.reconstruct import Confidence, DumpKind
from tests.conftest import seed
from tests.helpers import parse_file


@pytest.fixture(scope="module")
def dump():
    return parse_file(seed("flat"))


def test_flat_is_detected(dump) -> None:
    assert dump.kind is DumpKind.FLAT


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
