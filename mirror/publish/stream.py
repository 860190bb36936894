"""The plan as a stream: the stored reconstruction walked in publication order, a chunk at a time.

The same order and choices as mirror.publish.plan.build_plan (its pure
pieces decide), read straight from the database instead of from a whole
document: posts oldest first by keyset pagination over (published_at, id)
(ix_post_published), then those of unknown time by id, each post followed
by its thread; then the comments of unknown posts the same way
(ix_comment_post_published). Each page holds PAGE posts (or orphans) and the
comments of the chosen ones, so memory is one chunk plus the counters in
:class:`Progress`, whatever the archive's size.

Every chunk comes with the progress after it: stored with what the chunk
wrote (in the same transaction), it lets a walk start again just after it.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mirror.db.models import Author, Comment, Community, Post
from mirror.inspection import Shapes, aliases_of, items_query
from mirror.publish.plan import (
    ORPHAN_NOTE,
    ORPHANS_SKIPPED,
    Item,
    Options,
    admit_orphan,
    admit_post,
    is_excluded,
    thread,
)

#: Posts (or comments of unknown posts) read per page.
PAGE = 500
#: Why a hosted community gets no comments of unknown posts.
HOSTED_ORPHANS = "comments of unknown posts (a hosted community holds whole threads)"
#: The walk's phases, in order: (table, whether of known time).
PHASES = (("posts", True), ("posts", False), ("orphans", True), ("orphans", False))
DONE = len(PHASES)
#: Bound parameters per IN list (SQLite allows 32,766; PostgreSQL 65,535).
IN_BATCH = 900


@dataclass(slots=True)
class Progress:
    """Where a walk stands, and what it counted so far (JSON in backfill_run.progress)."""

    phase: int = 0
    #: The last row read in this phase: [published ISO time or None, id].
    after: list[str | None] | None = None
    #: Posts chosen so far (for --limit).
    chosen: int = 0
    planned: dict[str, int] = field(
        default_factory=lambda: {"posts": 0, "comments": 0, "followers_only": 0}
    )
    #: Left out, by why: of posts, of comments, and of comments of unknown posts;
    #: kept apart so that the report lists them in the order build_plan does.
    posts_left: dict[str, int] = field(default_factory=dict)
    beyond_limit: int = 0
    comments_left: dict[str, int] = field(default_factory=dict)
    orphans_left: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.phase >= DONE

    def as_json(self) -> dict[str, Any]:
        # A copy: the walk goes on counting into its own.
        return copy.deepcopy({name: getattr(self, name) for name in self.__slots__})  # type: ignore[attr-defined]

    @classmethod
    def of(cls, stored: dict[str, Any] | None) -> Progress:
        return cls(**stored) if stored else cls()

    def left_out(self, options: Options) -> dict[str, int]:
        out = dict(self.posts_left)
        if options.limit is not None:
            out["beyond --limit"] = self.beyond_limit
        for part in (self.comments_left, self.orphans_left):
            for why, count in part.items():
                out[why] = out.get(why, 0) + count
        return out


@dataclass(slots=True)
class Chunk:
    items: list[Item]
    #: The walk's progress once these items are written.
    progress: dict[str, Any]


def walk(
    conn: sa.Connection,
    options: Options,
    *,
    orphans: bool = True,
    progress: Progress | None = None,
    page: int = PAGE,
) -> Iterator[Chunk]:
    """The plan's items a chunk at a time, from ``progress`` on (the start by default).

    ``orphans=False`` (a hosted community) counts the comments of unknown
    posts as left out instead. The caller may commit between chunks.
    """
    progress = progress or Progress()
    communities = {r.id: r for r in conn.execute(sa.select(Community))}
    shaped = {
        c.id: {"id": c.id, "handle": _handle(c), "title": c.title, "instance": c.instance}
        for c in communities.values()
    }
    while not progress.done:
        table, dated = PHASES[progress.phase]
        model = Post if table == "posts" else Comment
        rows = _page(conn, model, dated, progress.after, page)
        if not rows:
            progress.phase += 1
            progress.after = None
            continue
        shapes = _shapes(conn, communities, rows)
        if table == "posts":
            items = _posts(conn, [shapes.post(r) for r in rows], options, shaped, progress)
        else:
            items = _orphans([shapes.comment(r) for r in rows], options, shaped, progress, orphans)
        last = rows[-1]
        progress.after = [last.published_at.isoformat() if dated else None, last.id]
        for item in items:
            progress.planned[_COUNTED[item.kind]] += 1
        yield Chunk(items, progress.as_json())


class Counted:
    """A walk's chunks as item lists, keeping the last progress (for its counts)."""

    def __init__(self, chunks: Iterator[Chunk]) -> None:
        self._chunks = chunks
        self._progress = Progress()

    def items(self) -> Iterator[list[Item]]:
        for chunk in self._chunks:
            self._progress = Progress.of(chunk.progress)
            yield chunk.items

    @property
    def planned(self) -> dict[str, int]:
        return self._progress.planned

    def left_out(self, options: Options) -> dict[str, int]:
        return self._progress.left_out(options)


_COUNTED = {"post": "posts", "comment": "comments", "orphan": "followers_only"}


def _handle(c: Any) -> str | None:
    return f"{c.name}@{c.instance}" if c.name and c.instance else None


def _page(
    conn: sa.Connection, model: Any, dated: bool, after: list[str | None] | None, size: int
) -> Sequence[Any]:
    """The next page of one phase, by keyset (never OFFSET: each page costs the same)."""
    query = items_query(model, texts=False).order_by(None)
    if model is Comment:
        query = query.where(Comment.post_id.is_(None))
    if dated:
        query = query.where(model.published_at.is_not(None))
        if after is not None:
            published = sa.bindparam(
                "after_published",
                datetime.fromisoformat(str(after[0])),
                type_=model.published_at.type,
            )
            query = query.where(
                sa.tuple_(model.published_at, model.id) > sa.tuple_(published, after[1])
            )
        query = query.order_by(model.published_at, model.id)
    else:
        query = query.where(model.published_at.is_(None))
        if after is not None:
            query = query.where(model.id > after[1])
        query = query.order_by(model.id)
    return conn.execute(query.limit(size)).all()


def _shapes(conn: sa.Connection, communities: dict[str, Any], rows: Sequence[Any]) -> Shapes:
    """Item shapes knowing the authors and aliases of these rows only."""
    author_ids = sorted({r.author_id for r in rows if r.author_id})
    authors: dict[str, str] = {}
    aliases: dict[str, list[str]] = defaultdict(list)
    for batch in _batches(author_ids):
        authors.update(
            conn.execute(sa.select(Author.id, Author.handle).where(Author.id.in_(batch))).all()
        )
    for batch in _batches([r.id for r in rows]):
        for target, found in aliases_of(conn, batch).items():
            aliases[target].extend(found)
    return Shapes(communities, authors, aliases, {}, texts=False)


def _batches(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), IN_BATCH):
        yield values[start : start + IN_BATCH]


def _posts(
    conn: sa.Connection,
    posts: list[dict[str, Any]],
    options: Options,
    communities: dict[str, Any],
    progress: Progress,
) -> list[Item]:
    left = defaultdict(int, progress.posts_left)
    chosen = []
    for post in posts:
        if not admit_post(post, options, communities, left):
            continue
        if options.limit is not None and progress.chosen >= options.limit:
            progress.beyond_limit += 1
            continue
        progress.chosen += 1
        chosen.append(post)
    progress.posts_left = dict(left)
    by_post: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for batch in _batches([p["id"] for p in chosen]):
        # In no order: thread() orders each post's comments (a sort here would cost a temp B-tree).
        rows = conn.execute(
            items_query(Comment, texts=False).order_by(None).where(Comment.post_id.in_(batch))
        ).all()
        if rows:
            shapes = _shapes(conn, {}, rows)
            for row in rows:
                by_post[row.post_id].append(shapes.comment(row))
    left = defaultdict(int, progress.comments_left)
    items = []
    for post in chosen:
        items.extend(thread(post, by_post.pop(post["id"], []), options, communities, left))
    progress.comments_left = dict(left)
    return items


def _orphans(
    comments: list[dict[str, Any]],
    options: Options,
    communities: dict[str, Any],
    progress: Progress,
    wanted: bool,
) -> list[Item]:
    left = defaultdict(int, progress.orphans_left)
    items = []
    for comment in comments:
        if not admit_orphan(comment, options, communities, left):
            continue
        if options.unknown_post_comments == "skip":
            left[ORPHANS_SKIPPED] += 1
        elif not wanted:
            left[HOSTED_ORPHANS] += 1
        else:
            items.append(Item("orphan", comment, notes=[ORPHAN_NOTE]))
    progress.orphans_left = dict(left)
    return items


def excluded(conn: sa.Connection, options: Options, page: int = PAGE) -> Iterator[str]:
    """Every item (and alias) the config now excludes, as plan.excluded_ids gives them
    (posts, then comments, by id), a page at a time; nothing to read without exclusions."""
    if not (options.exclude_items or options.exclude_authors or options.exclude_communities):
        return
    communities = {r.id: r for r in conn.execute(sa.select(Community))}
    shaped = {c.id: {"handle": _handle(c)} for c in communities.values()}
    for model in (Post, Comment):
        after: str | None = None
        while True:
            query = items_query(model, texts=False).order_by(None).order_by(model.id)
            if after is not None:
                query = query.where(model.id > after)
            rows = conn.execute(query.limit(page)).all()
            if not rows:
                break
            after = rows[-1].id
            shapes = _shapes(conn, communities, rows)
            if model is Post:
                items = [shapes.post(r) for r in rows]
            else:
                post_ids = sorted({r.post_id for r in rows if r.post_id})
                of_post: dict[str, Any] = {}
                for batch in _batches(post_ids):
                    of_post.update(
                        conn.execute(
                            sa.select(Post.id, Post.community_id).where(Post.id.in_(batch))
                        ).all()
                    )
                items = [
                    {**shapes.comment(r), "community_id": of_post.get(r.post_id or "")}
                    for r in rows
                ]
            for item in items:
                if is_excluded(item, options, shaped):
                    yield item["id"]
                    yield from item.get("aliases") or ()
