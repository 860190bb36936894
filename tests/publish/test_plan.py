"""The backfill plan: order, the documented adjustments, source selection and exclusions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mirror.publish.plan import MAX_DEPTH, Options, build_plan, excluded_ids

COMMUNITIES = [
    {"id": "g1", "handle": "bikes@b.example", "title": "Bikes", "instance": "b.example"},
    {"id": "g2", "handle": None, "title": "Seed Savers", "instance": "l.example"},
]


def post(pid: str, community: str | None = "g1", published: str | None = None) -> dict[str, Any]:
    return {
        "id": pid,
        "title": f"Post {pid}",
        "has_body": False,
        "community_id": community,
        "published": published,
        "author": "a@x.example",
    }


def comment(cid: str, post_id: str | None, parent: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "id": cid,
        "post": post_id,
        "parent": parent,
        "parent_known": True,
        "published": extra.pop("published", None),
        "author": extra.pop("author", "b@x.example"),
        "has_body": True,
        **extra,
    }


def doc(posts: list[dict[str, Any]], comments: list[dict[str, Any]]) -> dict[str, Any]:
    return {"communities": COMMUNITIES, "posts": posts, "comments": comments}


def test_posts_oldest_first_then_comments_parent_before_reply_oldest_sibling_first() -> None:
    plan = build_plan(
        doc(
            [
                post("p2", published="2025-02-01T00:00:00Z"),
                post("p1", published="2025-01-01T00:00:00Z"),
                post("p3"),
            ],
            [
                comment("c2", "p1", None, published="2025-01-03T00:00:00Z"),
                comment("c1", "p1", None, published="2025-01-02T00:00:00Z"),
                comment("c1a", "p1", "c1"),
            ],
        ),
        Options(),
    )
    assert [(i.kind, i.id, i.reply_to) for i in plan.items] == [
        ("post", "p1", None),
        ("comment", "c1", "p1"),
        ("comment", "c1a", "c1"),
        ("comment", "c2", "p1"),
        ("post", "p2", None),
        ("post", "p3", None),  # unknown time: last
    ]


def test_unknown_parent_goes_to_the_post_and_says_so() -> None:
    plan = build_plan(
        doc(
            [post("p1")],
            [comment("c1", "p1", None, parent_known=False), comment("c2", "p1", "gone")],
        ),
        Options(),
    )
    c1, c2 = plan.items[1:]
    assert c1.reply_to == "p1" and "unknown" in c1.notes[0]
    assert c2.reply_to == "p1" and "not archived" in c2.notes[0]


def test_depth_is_capped_at_lemmys_limit() -> None:
    chain = [comment("c1", "p1", None)] + [
        comment(f"c{n}", "p1", f"c{n - 1}") for n in range(2, 61)
    ]
    plan = build_plan(doc([post("p1")], chain), Options())
    comments = {i.id: i for i in plan.items if i.kind == "comment"}
    assert comments["c50"].reply_to == "c49" and comments["c50"].notes == []
    for n in range(51, 61):
        assert comments[f"c{n}"].reply_to == "c49"
        assert comments[f"c{n}"].depth == MAX_DEPTH
        assert "depth 50" in comments[f"c{n}"].notes[-1]


def test_comments_of_unknown_posts_go_to_followers_or_are_skipped() -> None:
    document = doc([post("p1")], [comment("c9", None, None)])
    plan = build_plan(document, Options())
    assert [(i.kind, i.id) for i in plan.items] == [("post", "p1"), ("orphan", "c9")]
    skipped = build_plan(document, Options(unknown_post_comments="skip"))
    assert [i.kind for i in skipped.items] == ["post"]
    assert list(skipped.left_out.values()) == [1]


def test_from_matches_handle_title_at_host_and_unknown() -> None:
    document = doc([post("p1"), post("p2", "g2"), post("p3", None)], [])
    ids = lambda source: [i.id for i in build_plan(document, Options(source=source)).items]  # noqa: E731
    assert ids("bikes@b.example") == ["p1"] and ids("!bikes@b.example") == ["p1"]
    assert ids("Seed Savers@l.example") == ["p2"] and ids("Seed Savers") == ["p2"]
    assert ids("unknown") == ["p3"]
    assert ids("all") == ["p1", "p2", "p3"]


def test_since_limit_and_exclusions() -> None:
    document = doc(
        [
            post("p1", published="2025-01-01T00:00:00Z"),
            post("p2", published="2025-03-01T00:00:00Z"),
            post("p3"),
        ],
        [comment("c1", "p2", None, author="spam@x.example"), comment("c2", "p2", None)],
    )
    since = datetime(2025, 2, 1, tzinfo=UTC)
    assert [i.id for i in build_plan(document, Options(since=since)).items] == ["p2", "c1", "c2"]
    assert [i.id for i in build_plan(document, Options(limit=1)).items] == ["p1"]
    options = Options(
        exclude_authors=frozenset({"spam@x.example"}), exclude_items=frozenset({"p3"})
    )
    assert [i.id for i in build_plan(document, options).items] == ["p1", "p2", "c2"]
    assert sorted(excluded_ids(document, options)) == ["c1", "p3"]


def test_items_with_neither_title_nor_body_are_left_out_and_counted() -> None:
    """An empty listing entry would be an "(untitled)" post with nothing in it."""
    empty_post = {**post("p2"), "title": None}
    document = doc(
        [post("p1"), empty_post, {**post("p3"), "title": None, "has_body": True}],
        [
            comment("c1", "p1", None, has_body=False),
            comment("c1a", "p1", "c1"),
            comment("c2", "p2", None),
            comment("c9", None, None, has_body=False),
        ],
    )
    plan = build_plan(document, Options())
    assert [(i.id, i.reply_to) for i in plan.items] == [("p1", None), ("c1a", "p1"), ("p3", None)]
    # The empty post, the empty comment and the empty one of an unknown post;
    # c2 goes with its post, as comments of any post left out do.
    assert plan.left_out == {"neither title nor body": 3}
    # The full document (inspect --json) says it with the body itself.
    full = doc([{**empty_post, "body": " \n"}, {**post("p4"), "title": None, "body": "x"}], [])
    assert [i.id for i in build_plan(full, Options()).items] == ["p4"]
