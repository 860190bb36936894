"""The dumps the project ships: every format, and the overlaps between them merge.

The samples (mirror/samples) and the test fixtures (tests/fixtures/dumps)
together are the plain clone's twin of the seeds: every test of what the
seeds hold once stored (tests/ingest/test_merge.py) has one here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mirror.clock import FrozenClock
from mirror.db import migrate
from mirror.db.session import make_engine
from mirror.ingest.files import ingest_paths, sample_files
from mirror.inspection import build_document
from mirror.reconstruct import parse_dump
from tests.conftest import CAPTURED, shipped_dumps


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """What the shipped dumps reconstruct to (read only: one ingest for the module)."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('shipped') / 'mirror.db'}")
    migrate.upgrade(engine)
    clock = FrozenClock(CAPTURED)
    reports = ingest_paths(engine, shipped_dumps(), clock=clock, captured_at=CAPTURED)
    assert all(r.ok for r in reports), [r.error for r in reports]
    yield build_document(engine)
    engine.dispose()


def _files(item: dict) -> set[str]:
    return {s["file"] for s in item["sources"]}


def _lines(item: dict) -> set[tuple[str, int, int]]:
    return {(s["file"], s["first_line"], s["last_line"]) for s in item["sources"]}


def _starting(items: list[dict], prefix: str) -> dict:
    found = [i for i in items if i["body"] and i["body"].startswith(prefix)]
    assert len(found) == 1, f"{len(found)} items start with {prefix!r}"
    return found[0]


def test_every_page_kind_is_represented() -> None:
    kinds = {parse_dump(p.read_text()).kind.value for p in sample_files()}
    assert kinds == {"profile", "thread", "flat", "bare", "listing"}


def test_no_sample_ends_with_a_newline() -> None:
    for path in sample_files():
        assert not path.read_bytes().endswith(b"\n"), path.name


def test_totals(document: dict) -> None:
    # 10 listing posts (one of them the flat dump's), 3 of another listing
    # (one the gardening post again, elsewhere), 2 threads, the full thread's
    # and the flat reading list's.
    assert len(document["posts"]) == 17
    assert {a["handle"] for a in document["authors"]} == {
        "ana_spokes@bikes.example",
        "dee@bikes.example",
        "fern_wright@garden.example",
        "june@lemmy.example",
        "milo@wheels.example",
        "olu@lemmy.example",
        "rafa@wheels.example",
        "sol@lemmy.example",
    }
    assert sorted((c["title"], c["instance"], c["name"]) for c in document["communities"]) == [
        ("Allotment Gardeners", "garden.example", "allotments"),
        ("Bike Repair // Workshop", "bikes.example", "bikerepair"),
        ("Seed Savers", "lemmy.example", None),
    ]


def test_profile_comment_gives_the_thread_post_its_title(document: dict) -> None:
    post = next(p for p in document["posts"] if p["title"] == "Saving tomato seed without the fuss")
    assert post["title_derived"] is False
    assert post["body"].startswith("Every year someone at the swap")
    assert post["score"] == 37
    assert post["published"] == "2025-06-14T00:00:00Z"
    assert post["author"] is None  # never shown on a page
    assert post["community_title"] == "Seed Savers"
    assert _lines(post) == {
        ("profile_fern.txt", 13, 13),
        ("profile_olu.txt", 13, 13),
        ("thread_single_gardening.txt", 15, 21),
    }


def test_same_post_in_another_community_is_another_post(document: dict) -> None:
    copies = [p for p in document["posts"] if (p["body"] or "").startswith("Every year someone")]
    assert len(copies) == 2
    assert {p["community"] for p in copies} == {None, "allotments@garden.example"}
    elsewhere = next(p for p in copies if p["community"])
    assert elsewhere["listing_rank"] == 51 and _files(elsewhere) == {"listing_allotments.txt"}


def test_three_copies_of_a_comment_merge(document: dict) -> None:
    towel = _starting(document["comments"], "Fermenting is optional.")
    assert _files(towel) == {"profile_fern.txt", "thread_single_gardening.txt", "bare_fern.txt"}
    assert (towel["upvotes"], towel["downvotes"]) == (14, 1)
    assert towel["edited"] is True
    assert towel["edited_raw"] == "5 hours ago"  # the finer of "5 hours" and "1 day"
    assert towel["confidence"] == "high"
    assert len(towel["body"].split("\n\n")) == 3
    assert "\u201cproper\u201d" in towel["body"]  # the copy with more typography wins
    post = next(p for p in document["posts"] if p["id"] == towel["post"])
    assert post["title"] == "Saving tomato seed without the fuss"
    # A colon lead-in and the line it announces join the profile comment they came from.
    listed = _starting(document["comments"], "Here is the list I give")
    assert _files(listed) == {"profile_fern.txt", "bare_fern.txt"}
    assert listed["author"] == "fern_wright@garden.example"


def test_thread_chain_and_parents(document: dict) -> None:
    comments = document["comments"]
    top = _starting(comments, "Doesn't fermenting kill seed-borne disease")
    assert (top["parent"], top["parent_known"]) == (None, False)
    assert _files(top) == {"profile_olu.txt", "thread_single_gardening.txt"}
    assert top["confidence"] == "high"  # the profile's copy was medium
    towel = _starting(comments, "Fermenting is optional.")
    assert towel["parent"] == top["id"] and towel["parent_known"] is True
    reply = _starting(comments, "Fair enough.")
    assert reply["parent"] == towel["id"]
    assert _files(reply) == {"profile_olu.txt", "thread_single_gardening.txt"}
    last = _starting(comments, "Please do, and bring")
    assert last["parent"] == reply["id"]
    # A reply quoting the first sentence of its parent is not its parent.
    quoted = _starting(comments, "Paper envelopes don't keep")
    quoting = _starting(comments, "Paper envelopes don\u2019t keep")
    assert quoting["parent"] == quoted["id"] != quoting["id"]
    assert (quoted["author"], quoting["author"]) == ("sol@lemmy.example", "rafa@wheels.example")


def test_ids_never_change_between_versions(document: dict) -> None:
    # As the seed test: mirrored objects' URLs are made from these ids.
    towel = _starting(document["comments"], "Fermenting is optional.")
    assert (towel["id"], towel["post"]) == ("c6cb8ce465ece6c0c", "p31a4107da9b53aca")
    mouse = next(p for p in document["posts"] if p["title"] == "The sealant mouse")
    assert mouse["id"] == "p02c557f4cb7f5e30"
    by_handle = {c["handle"]: c["id"] for c in document["communities"]}
    assert by_handle["bikerepair@bikes.example"] == "g5c46e54c810ac128"
    authors = {a["handle"]: a["id"] for a in document["authors"]}
    assert authors["milo@wheels.example"] == "ad144a97f082a5446"


def test_bare_leftovers_stay_unknown(document: dict) -> None:
    for body in ("https://bikes.example/wiki/bottom-brackets", "https://archive.example/r7Qx2"):
        link = _starting(document["comments"], body)
        assert link["author"] is None and link["post"] is None
        assert link["confidence"] == "low"
        assert (link["parent"], link["parent_known"]) == (None, False)


def test_full_thread_tree(document: dict) -> None:
    post = next(
        p
        for p in document["posts"]
        if p["title"] == "Creaking bottom bracket that only creaks under load"
    )
    assert post["author"] == "ana_spokes@bikes.example"
    assert post["community"] == "bikerepair@bikes.example"
    assert post["link_domain"] == "bikes.example"
    comments = [c for c in document["comments"] if c["post"] == post["id"]]
    assert len(comments) == 11
    line = {
        c["id"]: min(s["first_line"] for s in c["sources"] if s["file"] == "thread_full_bikes.txt")
        for c in comments
    }
    parent_line = {
        line[c["id"]]: (line.get(c["parent"]) if c["parent"] else None) for c in comments
    }
    assert parent_line == {
        26: None,
        30: 26,
        34: 30,
        42: 34,
        46: 26,
        50: None,
        54: 50,
        58: 54,
        62: None,
        66: None,
        70: 66,
    }
    assert all(c["parent_known"] for c in comments)


def test_bare_pieces_join_the_full_comment(document: dict) -> None:
    paste = next(c for c in document["comments"] if c["body"].startswith("Then pull it out"))
    files = {s["file"] for s in paste["sources"]}
    assert files == {"bare_comments.txt", "thread_full_bikes.txt"}
    assert paste["confidence"] == "high" and paste["author"] == "milo@wheels.example"
    assert len(paste["body"].split("\n\n")) == 3


def test_flat_post_is_listing_rank_31(document: dict) -> None:
    post = next(p for p in document["posts"] if p["listing_rank"] == 31)
    assert post["cross_posted_from"] == "https://bikes.example/post/58231"
    assert {s["file"] for s in post["sources"]} == {"flat_crosspost.txt", "listing_bikes.txt"}
    assert post["community"] == "bikerepair@bikes.example"
    flat_comments = [c for c in document["comments"] if c["post"] == post["id"]]
    assert all(c["confidence"] == "low" and c["parent_known"] is False for c in flat_comments)
    assert [
        c["body"].split("\n\n")[0][:9]
        for c in sorted(flat_comments, key=lambda c: c["sources"][0]["first_line"])
    ] == [
        "(1) Keep ",
        "Correct",
        "I get wha",
        "Of course",
        "We run ou",
        "How do yo",
    ]
