"""Storing the seeds: copies merge, nothing is invented, ids do not depend on order.

The tests of what the seeds hold have twins on the dumps the project ships
in tests/ingest/test_samples.py; the tests of properties of any corpus run
on the seeds where they are and on the shipped dumps (``DUMPS``).
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.db import migrate
from mirror.db.session import make_engine
from mirror.ingest.files import ingest_file, ingest_paths
from mirror.inspection import build_document
from mirror.reconstruct.text import normalize
from tests.conftest import CAPTURED, SEED, corpus, seed, shipped, shipped_dumps
from tests.helpers import MULTI_PARAGRAPH_THREAD, SECOND_PARAGRAPH


def ingest(engine: Engine, clock, *names: str) -> list:
    return ingest_all(engine, clock, [seed(name) for name in names])


def ingest_all(engine: Engine, clock, paths: list[Path]) -> list:
    reports = [ingest_file(engine, path, clock=clock, captured_at=CAPTURED) for path in paths]
    assert all(r.ok for r in reports), [r.error for r in reports]
    return reports


def _seeds() -> list[Path]:
    return [seed(name) for name in SEED]


#: Corpora the order and idempotence tests run on (each a function: seeds skip without ../shared).
DUMPS = pytest.mark.parametrize("dumps", [_seeds, shipped_dumps], ids=["seeds", "shipped"])


def starting(items: list[dict], prefix: str) -> dict:
    found = [i for i in items if i["body"] and normalize(i["body"]).startswith(normalize(prefix))]
    assert len(found) == 1, f"{len(found)} items start with {prefix!r}"
    return found[0]


@pytest.fixture
def seeded(engine: Engine, clock) -> dict:
    ingest(engine, clock, *SEED)
    return build_document(engine)


def test_totals_after_all_seeds(seeded: dict) -> None:
    # 25 listing posts, plus the lemmy.ml essay (000's title + 001's body);
    # 002's post is listing item 190.
    assert len(seeded["posts"]) == 26
    assert {a["handle"] for a in seeded["authors"]} == {
        "happybadger@hexbear.net",
        "yogthos@lemmy.ml",
        "yogthos@lemmygrad.ml",
        "DisabledAceSocialist@lemmygrad.ml",
        "Makan@lemmygrad.ml",
    }
    assert sorted((c["title"], c["instance"], c["name"]) for c in seeded["communities"]) == [
        ("Comradeship // Freechat", "lemmygrad.ml", "comradeship"),
        ("Socialism", "lemmy.ml", None),
    ]


def test_profile_title_and_thread_body_are_one_post(seeded: dict) -> None:
    post = next(p for p in seeded["posts"] if p["title"] == "A Marxist Perspective On AI")
    assert post["title_derived"] is False
    assert post["body"].startswith("AI has become as a deeply polarizing issue")
    assert post["score"] == 22
    assert post["published"] == "2025-04-26T00:00:00Z"
    assert post["author"] is None  # never shown on a page
    assert post["community_title"] == "Socialism"
    assert {(s["file"][:3], s["first_line"], s["last_line"]) for s in post["sources"]} == {
        ("000", 13, 13),
        ("001", 15, 59),
    }


def test_same_essay_in_another_community_is_another_post(seeded: dict) -> None:
    essays = [p for p in seeded["posts"] if p["body"] and p["body"].startswith("AI has become")]
    assert len(essays) == 2
    assert {p["community"] for p in essays} == {None, "comradeship@lemmygrad.ml"}
    lemmygrad = next(p for p in essays if p["community"])
    assert lemmygrad["title"] == "My thoughts on AI"
    assert lemmygrad["author"] == "yogthos@lemmygrad.ml"
    assert "AI tools like ComfyUI" in lemmygrad["body"]


def test_cross_post_in_flat_dump_is_listing_item_190(seeded: dict) -> None:
    post = next(p for p in seeded["posts"] if p["listing_rank"] == 190)
    assert post["cross_posted_from"] == "https://hexbear.net/post/4742235"
    assert {s["file"][:3] for s in post["sources"]} == {"002", "004"}
    assert post["community"] == "comradeship@lemmygrad.ml"
    flat_comments = [c for c in seeded["comments"] if c["post"] == post["id"]]
    assert len(flat_comments) >= 30
    assert all(c["confidence"] == "low" and c["parent_known"] is False for c in flat_comments)


def test_sure_but_comment_merges_three_copies(seeded: dict) -> None:
    comment = starting(
        [c for c in seeded["comments"] if c["author"] == "happybadger@hexbear.net"],
        "Sure but I've read the original post and it you don't make a Marxist case for it. Here's",
    )
    assert {s["file"][:3] for s in comment["sources"]} == {"000", "001", "003"}
    assert (comment["upvotes"], comment["downvotes"]) == (2, 2)
    assert comment["edited"] is True
    assert comment["edited_raw"] == "4 hours ago"  # the finer of "4 hours" and "2 days"
    assert comment["confidence"] == "high"
    assert len(comment["body"].split("\n\n")) == 6
    post = next(p for p in seeded["posts"] if p["id"] == comment["post"])
    assert post["title"] == "A Marxist Perspective On AI"


def test_thread_chain_and_parents(seeded: dict) -> None:
    comments = {c["id"]: c for c in seeded["comments"]}
    top = starting(list(comments.values()), "Because if you mean the intrinsic value of art")
    assert (top["parent"], top["parent_known"]) == (None, False)
    assert {s["file"][:3] for s in top["sources"]} == {"000", "001"}
    explained = starting(list(comments.values()), "I've explained my argument")
    assert explained["parent"] == top["id"] and explained["parent_known"] is True
    sure = starting(
        list(comments.values()),
        "Sure but I've read the original post and it you don't make a Marxist case for it. Here's",
    )
    assert sure["parent"] == explained["id"]
    reply = next(
        c
        for c in comments.values()
        if c["author"] == "yogthos@lemmy.ml" and c["parent"] == sure["id"]
    )
    assert reply["body"].split("\n\n")[0].startswith("Sure but I’ve read")
    assert reply["id"] != sure["id"]  # a quote of the first sentence is not the same comment


def test_ids_never_change_between_versions(seeded: dict) -> None:
    # Mirrored objects' URLs are made from these ids: a change in how ids are
    # derived (the hash, the key, the normalisation) would post everything again.
    comment = starting(
        [c for c in seeded["comments"] if c["author"] == "happybadger@hexbear.net"],
        "Sure but I've read the original post and it you don't make a Marxist case for it.",
    )
    assert (comment["id"], comment["post"]) == ("c2f795c2d1c653d95", "p1558ab171fb3d941")
    proxy = next(p for p in seeded["posts"] if (p["title"] or "").startswith("Proxy wars"))
    assert proxy["id"] == "p07bb43965cad72ab"
    by_handle = {c["handle"]: c["id"] for c in seeded["communities"]}
    assert by_handle["comradeship@lemmygrad.ml"] == "g38f56e6e1002fa62"
    authors = {a["handle"]: a["id"] for a in seeded["authors"]}
    assert authors["Makan@lemmygrad.ml"] == "a08110a64946a2311"


def test_bare_leftovers_stay_unknown(seeded: dict) -> None:
    link = starting(seeded["comments"], "https://archive.is/29uTN")
    assert link["author"] is None and link["post"] is None
    assert link["confidence"] == "low"
    assert (link["parent"], link["parent_known"]) == (None, False)


@DUMPS
def test_ingesting_twice_changes_nothing(engine: Engine, clock, dumps) -> None:
    ingest_all(engine, clock, dumps())
    before = _snapshot(engine)
    clock.advance(3600)
    reports = ingest_all(engine, clock, dumps())
    assert sum(r.posts + r.comments for r in reports) == 0
    assert _snapshot(engine) == before


@DUMPS
def test_ids_do_not_depend_on_ingest_order(tmp_path: Path, clock, dumps) -> None:
    documents = []
    paths = dumps()
    # Forwards, backwards, and the kinds interleaved (bare, thread, listing... first).
    shuffled = [p for start in (3, 1, 4, 0, 2) for p in paths[start::5]]
    assert sorted(shuffled) == sorted(paths)
    for n, order in enumerate([paths, paths[::-1], shuffled]):
        engine = make_engine(f"sqlite:///{tmp_path / f'order{n}.db'}")
        migrate.upgrade(engine)
        ingest_all(engine, clock, order)
        document = build_document(engine)
        for key in ("posts", "comments"):
            for item in document[key]:
                item.pop("aliases")
                item["sources"].sort(key=lambda s: (s["file"], s["first_line"]))
        documents.append(document)
        engine.dispose()
    for other in documents[1:]:
        for key in ("communities", "authors", "posts", "comments"):
            assert other[key] == documents[0][key], key


@pytest.mark.parametrize(
    "pair",
    [
        lambda: (seed("profile"), seed("thread")),
        lambda: (shipped("profile_fern.txt"), shipped("thread_single_gardening.txt")),
    ],
    ids=["seeds", "samples"],
)
def test_earlier_ids_stay_resolvable_after_a_merge(engine: Engine, clock, pair) -> None:
    profile, thread = pair()
    ingest_all(engine, clock, [profile])
    first = build_document(engine)
    ingest_all(engine, clock, [thread])
    after = build_document(engine)
    known = {i["id"] for k in ("posts", "comments") for i in after[k]}
    known |= {a for k in ("posts", "comments") for i in after[k] for a in i["aliases"]}
    for key in ("posts", "comments"):
        for item in first[key]:
            assert item["id"] in known


@pytest.mark.parametrize(
    "thread",
    [lambda: seed("thread"), lambda: shipped("thread_single_gardening.txt")],
    ids=["seed", "sample"],
)
def test_same_file_under_two_names_is_one_dump(
    engine: Engine, clock, tmp_path: Path, thread
) -> None:
    original = thread()
    copy = tmp_path / "renamed.txt"
    shutil.copy(original, copy)
    ingest_all(engine, clock, [original])
    before = _snapshot(engine)
    report = ingest_file(engine, copy, clock=clock, captured_at=CAPTURED)
    assert report.ok and report.posts == report.comments == 0
    assert _snapshot(engine) == before


def test_every_pair_of_dumps_merges_without_error(tmp_path: Path, clock) -> None:
    # The seeds where they are, else the samples (the pairs cost a database each).
    for n, pair in enumerate(itertools.permutations(corpus(), 2)):
        engine = make_engine(f"sqlite:///{tmp_path / f'pair{n}.db'}")
        migrate.upgrade(engine)
        ingest_all(engine, clock, list(pair))
        engine.dispose()


def _snapshot(engine: Engine) -> dict[str, list]:
    tables = (
        "community",
        "author",
        "post",
        "comment",
        "alias",
        "observation",
        "fragment",
        "dump_file",
    )
    with engine.connect() as conn:
        return {
            t: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {t}"))), key=repr)
            for t in tables
        }


def test_items_sharing_a_long_opening_stay_apart(engine: Engine, clock, tmp_path: Path) -> None:
    # Same community, same first 256 characters, different endings: three
    # different posts (each natural id is taken by the one before).
    opening = "An opening paragraph that is long enough to fill the whole identity key. " * 5
    for n, ending in enumerate(["first ending.", "second ending.", "third ending."]):
        page = (
            "Tea\n\n10 readers\n1 users here now\n\nAbout tea.\n\nfounded 2 years ago\nMODERATORS\n"
            f"\u00a0\n\n{opening}\n\nSomething else entirely, {ending}"
        )
        path = tmp_path / f"page{n}.txt"
        path.write_text(page)
        report = ingest_file(engine, path, clock=clock, captured_at=CAPTURED)
        assert report.ok and report.posts == 1, report.error
    document = build_document(engine)
    assert len(document["posts"]) == 3
    assert len({p["id"] for p in document["posts"]}) == 3


@pytest.mark.parametrize("bare_first", [False, True])
def test_a_piece_of_a_later_paragraph_joins_its_comment_in_either_order(
    tmp_path: Path, clock, bare_first: bool
) -> None:
    # The comment's first paragraph is too short to be indexed, its second
    # is not: a bare dump holding only the second finds the comment by it.
    thread = tmp_path / "thread.txt"
    thread.write_text(MULTI_PARAGRAPH_THREAD)
    bare = tmp_path / "bare.txt"
    bare.write_text(SECOND_PARAGRAPH)
    engine = make_engine(f"sqlite:///{tmp_path / 'order.db'}")
    migrate.upgrade(engine)
    for path in [bare, thread] if bare_first else [thread, bare]:
        assert ingest_file(engine, path, clock=clock, captured_at=CAPTURED).ok
    [comment] = build_document(engine)["comments"]
    engine.dispose()
    assert comment["author"] == "ana@tea.example" and comment["confidence"] == "high"
    assert {s["file"] for s in comment["sources"]} == {"thread.txt", "bare.txt"}


def test_lookup_keys_go_in_statements_of_bounded_size_each_key_once() -> None:
    from mirror.ingest.store import _LOOKUP_BATCH, _lookup_batches

    wanted = {
        "none": set(),
        "one": {"a"},
        "many": {f"k{n}" for n in range(2 * _LOOKUP_BATCH + 500)},
    }
    rounds = list(_lookup_batches(wanted))
    assert len(rounds) == 3
    assert all(set(r) == set(wanted) for r in rounds)
    assert all(len(keys) <= _LOOKUP_BATCH for r in rounds for keys in r.values())
    for name, keys in wanted.items():
        seen = [key for r in rounds for key in r[name]]
        assert sorted(seen) == sorted(keys)
    assert list(_lookup_batches({"none": set()})) == []


def test_pieces_in_the_same_batch_as_their_whole_keep_its_counts(tmp_path: Path, clock) -> None:
    # Three bare pieces, then the full comment they came from, in one batch:
    # the comment merges into one piece, that piece into the smallest-id
    # one; the score and the descendant count must travel along, as they
    # do when the files are stored one transaction each.
    paths = [shipped("bare_comments.txt"), shipped("thread_full_bikes.txt")]
    documents = []
    for n, batches in enumerate([[paths], [[p] for p in paths]]):
        engine = make_engine(f"sqlite:///{tmp_path / f'batch{n}.db'}")
        migrate.upgrade(engine)
        for batch in batches:
            assert all(r.ok for r in ingest_paths(engine, batch, clock=clock, captured_at=CAPTURED))
        documents.append(build_document(engine))
        engine.dispose()
    whole = starting(documents[0]["comments"], "Then pull it out")
    assert (whole["score"], whole["descendants"]) == (7, 1)
    assert documents[0] == documents[1]
