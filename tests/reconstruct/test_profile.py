"""A lemmy-ui user profile overview: seed 000, and twins on the profile sample the project ships."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mirror.reconstruct import Confidence, DumpKind
from mirror.reconstruct.formats.profile import parse_count, parse_glued_header
from tests.conftest import CAPTURED, seed, shipped
from tests.helpers import body_starts, parse_file


@pytest.fixture(scope="module")
def dump():
    return parse_file(seed("profile"), CAPTURED)


@pytest.fixture(scope="module")
def sample():
    return parse_file(shipped("profile_fern.txt"), CAPTURED)


def test_profile_is_detected(dump) -> None:
    assert dump.kind is DumpKind.PROFILE


def test_profile_is_detected_in_the_sample(sample) -> None:
    assert sample.kind is DumpKind.PROFILE


def test_profile_owner(dump) -> None:
    owner = dump.page_author
    assert owner.handle == "happybadger@hexbear.net"
    assert owner.display_name == "happybadger"
    assert owner.pronouns == "he/him"
    assert owner.bio.startswith("Working class employee of the Sashatown Central News Agency")
    assert owner.posts_count_raw == "812"
    assert owner.comments_count_raw == "4K"
    assert owner.cake_day_raw == "October 7th, 2020"
    assert owner.joined.raw == "5 years ago"


def test_profile_items_are_the_seven_bullets_not_the_stats(dump) -> None:
    assert [c.first_line for c in dump.comments] == [13, 38, 41, 46, 57, 97, 101]
    assert [c.last_line for c in dump.comments] == [35, 38, 43, 52, 89, 97, 111]


def test_first_item_header_is_split_where_the_page_glued_it(dump) -> None:
    first = dump.comments[0]
    assert first.author.handle == "happybadger@hexbear.net"
    post = dump.posts[first.post]
    assert post.title == "A Marxist Perspective On AI"
    assert post.title_derived is False
    assert post.body is None  # the post is known only by its title here
    assert (post.community.title, post.community.instance, post.community.name) == (
        "Socialism",
        "lemmy.ml",
        None,
    )


def test_first_item_votes_are_up_and_down_not_a_score(dump) -> None:
    votes = dump.comments[0].votes
    assert (votes.upvotes, votes.downvotes, votes.score) == (2, 2, 0)


def test_first_item_is_edited_and_the_time_is_the_edit_time(dump) -> None:
    first = dump.comments[0]
    assert first.edited is True
    assert first.edited_at.raw == "4 hours ago"
    assert first.edited_at.estimated == CAPTURED - timedelta(hours=4)
    assert first.published is None
    assert (first.language, first.language_name) == ("en", "English")
    assert first.confidence is Confidence.HIGH


def test_items_without_header_are_the_owners_comments_with_unknown_metadata(dump) -> None:
    for comment in dump.comments[1:]:
        assert comment.author.handle == "happybadger@hexbear.net"
        assert comment.post is None
        assert comment.parent_known is False
        assert comment.edited is None
        assert comment.votes.score is None
        assert comment.confidence is Confidence.MEDIUM


def test_body_keeps_paragraphs_and_the_inner_list(dump) -> None:
    eco = body_starts(dump.comments, "https://www.openculture.com/2024/11/umberto")
    paragraphs = eco.body.split("\n\n")
    assert len(paragraphs) == 17
    assert paragraphs[1].startswith("• The cult of tradition.")
    assert paragraphs[-1].startswith("edit: Or as Mussolini")
    first = dump.comments[0]
    assert len(first.body.split("\n\n")) == 6
    assert "    " not in first.body  # indentation is presentation


def test_profile_owner_in_the_sample(sample) -> None:
    owner = sample.page_author
    assert owner.handle == "fern_wright@garden.example"
    assert owner.display_name == "fern_wright"
    assert owner.pronouns == "she/her"
    assert owner.bio.startswith("Allotment gardener, seed swapper and occasional writer")
    assert owner.posts_count_raw == "120"
    assert owner.comments_count_raw == "1.2K"
    assert owner.cake_day_raw == "March 3rd, 2022"
    assert owner.joined.raw == "3 years ago"


def test_profile_items_are_the_bullets_not_the_stats_in_the_sample(sample) -> None:
    assert [c.first_line for c in sample.comments] == [13, 32, 36, 51, 56]
    assert [c.last_line for c in sample.comments] == [29, 32, 46, 53, 56]


def test_first_item_header_is_split_where_the_page_glued_it_in_the_sample(sample) -> None:
    first = sample.comments[0]
    assert first.author.handle == "fern_wright@garden.example"
    post = sample.posts[first.post]
    assert post.title == "Saving tomato seed without the fuss"
    assert post.title_derived is False
    assert post.body is None  # the post is known only by its title here
    assert (post.community.title, post.community.instance, post.community.name) == (
        "Seed Savers",
        "lemmy.example",
        None,
    )


def test_first_item_votes_are_up_and_down_not_a_score_in_the_sample(sample) -> None:
    votes = sample.comments[0].votes
    assert (votes.upvotes, votes.downvotes, votes.score) == (14, 1, 13)


def test_first_item_is_edited_and_the_time_is_the_edit_time_in_the_sample(sample) -> None:
    first = sample.comments[0]
    assert first.edited is True
    assert first.edited_at.raw == "5 hours ago"
    assert first.edited_at.estimated == CAPTURED - timedelta(hours=5)
    assert first.published is None
    assert (first.language, first.language_name) == ("en", "English")
    assert first.confidence is Confidence.HIGH


def test_items_without_header_are_the_owners_comments_in_the_sample(sample) -> None:
    for comment in sample.comments[1:]:
        assert comment.author.handle == "fern_wright@garden.example"
        assert comment.post is None
        assert comment.parent_known is False
        assert comment.edited is None
        assert comment.votes.score is None
        assert comment.confidence is Confidence.MEDIUM


def test_body_keeps_paragraphs_and_the_inner_list_in_the_sample(sample) -> None:
    listed = body_starts(sample.comments, "Here is the list I give every new plot holder:")
    paragraphs = listed.body.split("\n\n")
    assert len(paragraphs) == 6
    assert paragraphs[1] == "\u2022 Test your soil before you buy anything."
    assert paragraphs[-1] == "edit: added the mulch line because three people asked."
    first = sample.comments[0]
    assert len(first.body.split("\n\n")) == 3
    assert "    " not in first.body  # indentation is presentation
    path = body_starts(sample.comments, "The plan lives at")
    assert "C:\\Users\\fern\\Documents\\plot-plan.txt" in path.body  # backslashes are text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "happybadger [he/him]@hexbear.nettoSocialism@lemmy.mlA Marxist Perspective On AI",
            (
                "happybadger [he/him]",
                "hexbear.net",
                "Socialism",
                "lemmy.ml",
                "A Marxist Perspective On AI",
            ),
        ),
        (
            "fern@garden.exampletoSeed Swaps@lemmy.example2025 swap list",
            ("fern", "garden.example", "Seed Swaps", "lemmy.example", "2025 swap list"),
        ),
    ],
)
def test_glued_header_split(text: str, expected: tuple[str, ...]) -> None:
    header = parse_glued_header(text)
    assert header is not None
    assert (
        header.author_display,
        header.author_host,
        header.community_title,
        header.community_host,
        header.post_title,
    ) == expected


def test_counts_with_abbreviations() -> None:
    assert parse_count("812") == 812
    assert parse_count("4K") == 4000
    assert parse_count("1.2K") == 1200
    assert parse_count("x") is None
