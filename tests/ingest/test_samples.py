"""The bundled sample dumps: every format, and the overlaps between them merge."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from mirror.ingest.files import ingest_paths, sample_files
from mirror.inspection import build_document
from mirror.reconstruct import parse_dump
from tests.conftest import CAPTURED


@pytest.fixture
def document(engine: Engine, clock) -> dict:
    reports = ingest_paths(engine, sample_files(), clock=clock, captured_at=CAPTURED)
    assert all(r.ok for r in reports), [r.error for r in reports]
    return build_document(engine)


def test_every_page_kind_is_represented() -> None:
    kinds = {parse_dump(p.read_text()).kind.value for p in sample_files()}
    assert kinds == {"profile", "thread", "flat", "bare", "listing"}


def test_no_sample_ends_with_a_newline() -> None:
    for path in sample_files():
        assert not path.read_bytes().endswith(b"\n"), path.name


def test_profile_comment_gives_the_thread_post_its_title(document: dict) -> None:
    post = next(p for p in document["posts"] if p["title"] == "Saving tomato seed without the fuss")
    assert post["title_derived"] is False
    assert post["body"].startswith("Every year someone at the swap")
    assert {s["file"] for s in post["sources"]} == {
        "profile_fern.txt",
        "thread_single_gardening.txt",
    }
    fern = [
        c
        for c in document["comments"]
        if c["post"] == post["id"] and c["author"] == "fern_wright@garden.example"
    ]
    merged = next(c for c in fern if c["body"].startswith("Fermenting is optional"))
    assert {s["file"] for s in merged["sources"]} == {
        "profile_fern.txt",
        "thread_single_gardening.txt",
    }
    assert (merged["upvotes"], merged["downvotes"], merged["edited"]) == (14, 1, True)


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
    flat_comments = [c for c in document["comments"] if c["post"] == post["id"]]
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
