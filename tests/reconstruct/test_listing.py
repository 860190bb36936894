"""A community listing, bodies expanded: seed 004 (page 8), and twins.

The twins check the same on the listing sample (ranks 26-35) and on
tests/fixtures/dumps/listing_allotments.txt, which the project ships.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from mirror.reconstruct import DumpKind
from tests.conftest import CAPTURED, seed, shipped
from tests.helpers import parse_file


@pytest.fixture(scope="module")
def dump():
    return parse_file(seed("listing"), CAPTURED)


@pytest.fixture(scope="module")
def sample():
    return parse_file(shipped("listing_bikes.txt"), CAPTURED)


@pytest.fixture(scope="module")
def allotments():
    return parse_file(shipped("listing_allotments.txt"), CAPTURED)


def test_listing_is_detected(dump) -> None:
    assert dump.kind is DumpKind.LISTING


def test_listing_is_detected_in_the_shipped_dumps(sample, allotments) -> None:
    assert sample.kind is allotments.kind is DumpKind.LISTING


def test_ranks_are_176_to_200_and_scores_are_not_ranks(dump) -> None:
    assert [p.listing_rank for p in dump.posts] == list(range(176, 201))
    assert [p.first_line for p in dump.posts] == [
        12,
        18,
        28,
        36,
        56,
        62,
        70,
        76,
        98,
        104,
        118,
        126,
        130,
        146,
        158,
        203,
        211,
        223,
        233,
        288,
        298,
        324,
        340,
        366,
        386,
    ]
    scores = {p.listing_rank: p.votes.score for p in dump.posts if p.votes.score is not None}
    assert scores == {181: 33, 194: 71, 199: 14}


def test_page_community(dump) -> None:
    community = dump.page_community
    assert community.handle == "comradeship@lemmygrad.ml"
    assert community.title == "Comradeship // Freechat"
    assert (community.readers, community.users_now) == (2452, 108)
    assert community.description.count("\n\n") == 1
    assert all(p.community.handle == "comradeship@lemmygrad.ml" for p in dump.posts)


def test_items_with_metadata(dump) -> None:
    by_rank = {p.listing_rank: p for p in dump.posts}
    essay = by_rank[194]
    assert essay.title == "My thoughts on AI"  # the "(lemmygrad.ml)" label is not part of it
    assert essay.title_derived is False
    assert essay.link_domain == "lemmygrad.ml"
    assert essay.author.handle == "yogthos@lemmygrad.ml"
    assert essay.edited is True and essay.edited_at.raw == "3 months ago"
    assert essay.published.estimated == CAPTURED - timedelta(days=90)
    assert len(essay.body.split("\n\n")) == 24
    assert by_rank[181].author.handle == "DisabledAceSocialist@lemmygrad.ml"
    assert by_rank[181].body == "Thank you!"
    assert by_rank[199].author.handle == "Makan@lemmygrad.ml"
    assert by_rank[199].body.endswith("stalin heart hands")


def test_items_without_metadata_keep_unknowns(dump) -> None:
    by_rank = {p.listing_rank: p for p in dump.posts}
    plain = by_rank[176]
    assert plain.author is None and plain.votes.score is None and plain.published is None
    assert plain.edited is None
    assert plain.title_derived is True
    assert plain.title == "Like, giving independence to California and Cascadia for example."


def test_empty_item_and_cross_posts(dump) -> None:
    by_rank = {p.listing_rank: p for p in dump.posts}
    assert by_rank[187].body == "" and by_rank[187].title is None
    crossed = {r: p.cross_posted_from for r, p in by_rank.items() if p.cross_posted_from}
    assert crossed == {
        189: "https://hexbear.net/post/4747084",
        190: "https://hexbear.net/post/4742235",
        192: "https://hexbear.net/post/4713461",
        193: "https://hexbear.net/post/4704483",
        197: "https://hexbear.net/post/4679061",
    }
    # A first body line that looks like a title stays body text.
    assert by_rank[190].body.split("\n\n")[0] == "Democratization of Capitalist Values"
    assert by_rank[197].body.split("\n\n")[0] == "Breakfast, some new bedding, and a toothbrush"


def test_pagination_and_nbsp_are_not_content(dump) -> None:
    last = dump.posts[-1]
    assert last.last_line == 390
    assert "view more" not in last.body
    assert "\u00a0" not in "".join(p.body for p in dump.posts)


def test_ranks_and_scores_are_told_apart_in_the_shipped_dumps(sample, allotments) -> None:
    assert [p.listing_rank for p in sample.posts] == list(range(26, 36))
    assert [p.first_line for p in sample.posts] == [12, 18, 26, 34, 42, 46, 66, 75, 83, 91]
    scores = {p.listing_rank: p.votes.score for p in sample.posts if p.votes.score is not None}
    assert scores == {28: 18, 32: 44, 34: 9}
    assert [(p.listing_rank, p.votes.score) for p in allotments.posts] == [
        (51, None),
        (52, 23),
        (53, None),
    ]


def test_page_community_in_the_shipped_dumps(sample) -> None:
    community = sample.page_community
    assert community.handle == "bikerepair@bikes.example"
    assert community.title == "Bike Repair // Workshop"
    assert (community.readers, community.users_now) == (3120, 54)
    assert community.description.count("\n\n") == 1
    assert all(p.community.handle == "bikerepair@bikes.example" for p in sample.posts)


def test_items_with_metadata_in_the_shipped_dumps(sample, allotments) -> None:
    by_rank = {p.listing_rank: p for p in sample.posts}
    mouse = by_rank[32]
    assert mouse.title == "The sealant mouse"  # the "(bikes.example)" label is not part of it
    assert mouse.title_derived is False
    assert mouse.link_domain == "bikes.example"
    assert mouse.author.handle == "milo@wheels.example"
    assert mouse.edited is True and mouse.edited_at.raw == "4 days ago"
    assert mouse.published.estimated == CAPTURED - timedelta(days=5)
    assert by_rank[28].author.handle == "dee@bikes.example"
    assert by_rank[28].body == "Thank you all for the help with the hub last week!"
    assert by_rank[34].author.handle == "rafa@wheels.example"
    rota = allotments.posts[1]
    assert rota.title == "Water trough rota for the summer"
    assert len(rota.body.split("\n\n")) == 3


def test_items_without_metadata_keep_unknowns_in_the_shipped_dumps(sample) -> None:
    plain = sample.posts[0]
    assert plain.author is None and plain.votes.score is None and plain.published is None
    assert plain.edited is None
    assert plain.title_derived is True
    assert plain.title == "Finally built my first wheel from a bare rim and a box of spokes."


def test_empty_item_and_cross_posts_in_the_shipped_dumps(sample) -> None:
    by_rank = {p.listing_rank: p for p in sample.posts}
    assert by_rank[30].body == "" and by_rank[30].title is None
    crossed = {r: p.cross_posted_from for r, p in by_rank.items() if p.cross_posted_from}
    assert crossed == {
        31: "https://bikes.example/post/58231",
        33: "https://wheels.example/post/771",
    }
    # A first body line that looks like a title stays body text.
    assert by_rank[31].body.split("\n\n")[0] == "Running a Community Bike Kitchen"


def test_pagination_and_nbsp_are_not_content_in_the_shipped_dumps(sample, allotments) -> None:
    for dump, last_line in ((sample, 95), (allotments, 39)):
        last = dump.posts[-1]
        assert last.last_line == last_line
        assert "view more" not in last.body
        assert "\u00a0" not in "".join(p.body for p in dump.posts)
    # Lines ending in a NBSP: the NBSP goes, the text stays.
    assert allotments.posts[1].body.split("\n\n")[1] == "Mondays and Thursdays: plots 1 to 12."
