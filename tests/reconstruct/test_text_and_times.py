"""Normalisation, derived titles, relative and absolute times, segmentation rules."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from mirror.reconstruct import segment
from mirror.reconstruct.handles import parse_community_handle, parse_handle, split_pronouns
from mirror.reconstruct.text import collapse_whitespace, fingerprint, first_sentence, normalize
from mirror.reconstruct.times import parse_moment

NOW = datetime(2025, 7, 28, 12, tzinfo=UTC)


def test_normalize_maps_quote_styles_and_whitespace() -> None:
    assert normalize("I\u2019ve  read \u201cart\u201d\u00a0\n here") == 'I\'ve read "art" here'


def test_every_whitespace_but_the_space_is_unprintable() -> None:
    # collapse_whitespace's shortcut rests on this: a printable text holds
    # no whitespace but spaces.
    odd = [
        hex(c)
        for c in range(sys.maxunicode + 1)
        if chr(c).isspace() and chr(c) != " " and chr(c).isprintable()
    ]
    assert odd == []


SPACES = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


# Texts only of characters its shortcuts take (spaces, line breaks,
# printable ones; ASCII only, or not), and texts of any whitespace.
@given(
    st.text(alphabet=st.sampled_from(list(" \nab\u00e9\u2019.")), max_size=60)
    | st.text(alphabet=st.sampled_from(list(" \nab.\x00\x7f")), max_size=60)
    | st.text(alphabet=st.sampled_from(list(SPACES + "ab\u00e9\u2019.\x7f")), max_size=60)
    | st.text(alphabet=st.sampled_from([chr(c) for c in range(128)]), max_size=60)
)
def test_collapsed_whitespace_is_what_splitting_on_it_gives(text: str) -> None:
    assert collapse_whitespace(text) == " ".join(text.split())


def test_first_sentence_is_cut_at_200_characters() -> None:
    assert first_sentence("Short one. Second.") == "Short one."
    long = "word " * 100
    title = first_sentence(long)
    assert len(title) <= 200 and title.endswith("…")


def test_relative_times_are_estimated_from_the_capture_time() -> None:
    moment = parse_moment("4 hours ago", NOW)
    assert moment.estimated == NOW - timedelta(hours=4)
    assert moment.precision_s == 3600
    assert parse_moment("2 months ago", NOW).estimated == NOW - timedelta(days=60)
    assert parse_moment("a year ago", NOW).estimated == NOW - timedelta(days=365)
    assert parse_moment("3 days ago", None).estimated is None


def test_absolute_dates() -> None:
    assert parse_moment("26 Apr 2025", NOW).estimated == datetime(2025, 4, 26, tzinfo=UTC)
    assert parse_moment("October 7th, 2020", None).estimated == datetime(2020, 10, 7, tzinfo=UTC)
    assert parse_moment("31 Feb 2025", NOW) is None
    assert parse_moment("sometime", NOW) is None


def test_handles() -> None:
    assert parse_handle("yogthos@lemmy.ml") == ("yogthos", "lemmy.ml")
    assert parse_handle("not a handle") is None
    assert parse_community_handle("c/comradeship@lemmygrad.ml") == ("comradeship", "lemmygrad.ml")
    assert parse_community_handle("!tea@drinks.example") == ("tea", "drinks.example")
    assert split_pronouns("happybadger [he/him]") == ("happybadger", "he/him")
    assert split_pronouns("plain") == ("plain", None)


def test_segmentation_rules() -> None:
    paragraphs = [
        "An essay paragraph that is the post.",
        "A Heading",
        "More of the essay.",
        "(1) First point of a reply.",
        "Some Author, Some Book",
        "(2) Second point.",
        "Correct",
        "I agree with this:",
        "a quoted line that follows the colon.",
        "Furthermore, a second paragraph.",
        "A different voice.",
    ]
    end = segment.post_body_end(paragraphs)
    assert end == 3
    groups = segment.group_comments(paragraphs[end:])
    assert groups == [(0, 2), (3, 3), (4, 6), (7, 7)]


def test_fingerprints_never_change() -> None:
    # Every id is one: the same parts must give the same hash forever.
    assert fingerprint() == "e4a6a0577479b2b4"
    assert fingerprint("comment") == "79d6ec8de22bbf65"
    assert fingerprint("post", "c/tea@x.example", "caf\u00e9 \u2019") == "ac1354b4cff022fd"


def test_only_o_p_y_u_r_match_themselves_case_insensitively() -> None:
    # post_body_end skips the reply-address search where the lowered text
    # holds neither "op" nor "your"; that rests on this.
    import re

    for letter in "opyur":
        pattern = re.compile(letter, re.IGNORECASE)
        odd = [c for c in range(sys.maxunicode + 1) if pattern.fullmatch(chr(c))]
        assert odd == [ord(letter.upper()), ord(letter)]


@given(
    st.lists(
        st.lists(
            st.sampled_from(["OP", "op", "Your", "post", "posts", "yours", "(1)", "1)", "x", " "]),
            max_size=8,
        ).map(" ".join),
        max_size=6,
    )
)
def test_post_body_end_is_its_stated_rule(paras: list[str]) -> None:
    def rule(paras: list[str]) -> int:
        for index, para in enumerate(paras[1:], start=1):
            match = segment.ENUMERATION.match(para)
            if (match and match["n"] == "1") or segment.REPLY_ADDRESS.search(para[:200]):
                return index
        return len(paras)

    assert segment.post_body_end(paras) == rule(paras)
