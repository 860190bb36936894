"""Bare comment bodies with no markers: seed 003, and its twin the project ships."""

from __future__ import annotations

from mirror.reconstruct import Confidence, DumpKind
from tests.conftest import seed, shipped
from tests.helpers import parse_file


def test_bare_comments_without_metadata() -> None:
    dump = parse_file(seed("bare"))
    assert dump.kind is DumpKind.BARE
    assert dump.posts == ()
    assert dump.comments[0].first_line == 3  # two leading blank lines
    # The colon lead-in keeps the quoted paragraph with its comment.
    assert (dump.comments[0].first_line, dump.comments[0].last_line) == (3, 4)
    assert [(c.first_line, c.last_line) for c in dump.comments[-2:]] == [(9, 9), (10, 10)]
    assert dump.comments[-2].body == "https://archive.is/29uTN"
    for comment in dump.comments:
        assert comment.author is None and comment.post is None
        assert comment.parent_known is False
        assert comment.confidence is Confidence.LOW


def test_bare_comments_without_metadata_in_a_shipped_dump() -> None:
    # Twin of the seed test on tests/fixtures/dumps/bare_fern.txt.
    dump = parse_file(shipped("bare_fern.txt"))
    assert dump.kind is DumpKind.BARE
    assert dump.posts == ()
    assert dump.comments[0].first_line == 3  # two leading blank lines
    # The colon lead-in keeps the line it announces with its comment.
    assert (dump.comments[0].first_line, dump.comments[0].last_line) == (3, 4)
    assert [(c.first_line, c.last_line) for c in dump.comments[-2:]] == [(8, 8), (9, 9)]
    assert dump.comments[-2].body == "https://archive.example/r7Qx2"
    for comment in dump.comments:
        assert comment.author is None and comment.post is None
        assert comment.parent_known is False
        assert comment.confidence is Confidence.LOW
