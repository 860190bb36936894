"""What a hosted community holds, in thread order: for its backlog and its posts' `replies`.

Posts oldest first (unknown times last), each followed by its comments in
thread order, a parent before its replies, oldest sibling first: the order
a receiver can store them in (PieFed refuses a reply whose parent it does
not hold). Deleted objects are left out.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.models import ApObject, Publication
from mirror.vocab.ids import Urls

OBJECTS = table_of(ApObject)
PUBLICATIONS = table_of(Publication)


def _key(row: Any) -> tuple[int, str, str]:
    published = row.json.get("published") if isinstance(row.json, dict) else None
    return (0, published, row.id) if published else (1, "", row.id)


def _rows(conn: sa.Connection, target: str) -> list[Any]:
    return list(
        conn.execute(
            sa.select(
                PUBLICATIONS.c.id,
                PUBLICATIONS.c.kind,
                PUBLICATIONS.c.parent_id,
                PUBLICATIONS.c.actor,
                OBJECTS.c.json,
            )
            .join(OBJECTS, OBJECTS.c.id == PUBLICATIONS.c.id)
            .where(PUBLICATIONS.c.target == target, OBJECTS.c.deleted_at.is_(None))
        )
    )


def _comments_of(post_id: str, children: dict[str | None, list[Any]]) -> list[Any]:
    """Pre-order with a stack: threads can be deeper than recursion."""
    out = []
    stack = list(reversed(sorted(children.get(post_id, []), key=_key)))
    while stack:
        comment = stack.pop()
        out.append(comment)
        stack.extend(reversed(sorted(children.get(comment.id, []), key=_key)))
    return out


def _children(rows: list[Any]) -> dict[str | None, list[Any]]:
    children: dict[str | None, list[Any]] = defaultdict(list)
    for row in rows:
        if row.kind != "post":
            children[row.parent_id].append(row)
    return children


def archive_order(
    conn: sa.Connection, urls: Urls, group: str, *, with_actors: bool = False
) -> list[Any]:
    """(object URL, kind) of everything the Group holds, in thread order; with
    ``with_actors``, (object URL, kind, author's username)."""
    rows = _rows(conn, urls.community(group).id)
    children = _children(rows)
    order: list[Any] = []
    for post in sorted((r for r in rows if r.kind == "post"), key=_key):
        for row in (post, *_comments_of(post.id, children)):
            entry = (urls.object(row.id), row.kind)
            order.append((*entry, row.actor) if with_actors else entry)
    return order


def thread_comments(conn: sa.Connection, post_id: str) -> list[dict[str, Any]] | None:
    """A hosted post's comments (their objects), parents first; None when it is not a
    live post. Read level by level through the parent index, not the whole archive."""
    post = conn.execute(
        sa.select(PUBLICATIONS.c.id, PUBLICATIONS.c.kind, PUBLICATIONS.c.parent_id, OBJECTS.c.json)
        .join(OBJECTS, OBJECTS.c.id == PUBLICATIONS.c.id)
        .where(
            PUBLICATIONS.c.id == post_id,
            PUBLICATIONS.c.kind == "post",
            OBJECTS.c.deleted_at.is_(None),
        )
    ).first()
    if post is None:
        return None
    rows: list[Any] = []
    level = [post_id]
    while level:
        found = []
        for start in range(0, len(level), 500):
            found.extend(
                conn.execute(
                    sa.select(
                        PUBLICATIONS.c.id,
                        PUBLICATIONS.c.kind,
                        PUBLICATIONS.c.parent_id,
                        OBJECTS.c.json,
                    )
                    .join(OBJECTS, OBJECTS.c.id == PUBLICATIONS.c.id)
                    .where(
                        PUBLICATIONS.c.parent_id.in_(level[start : start + 500]),
                        OBJECTS.c.deleted_at.is_(None),
                    )
                )
            )
        rows.extend(found)
        level = [r.id for r in found]
    return [c.json for c in _comments_of(post_id, _children(rows))]
