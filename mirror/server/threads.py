"""An object's place in its thread: the chain of parents above it, the replies below.

Three queries whatever the thread's size: the object, its ancestors and its
descendants, each walked in the database by a recursive query over the
publications' parent links (a post with 2,000 comments costs no query per
comment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from mirror.publish.plan import MAX_DEPTH
from mirror.server.entries import OBJECTS, PUBLICATIONS, Entry, entry_of, select_entries
from mirror.vocab.ids import Urls

#: Deeper than any backfill builds (MAX_DEPTH): a bound for the walks, not a limit seen.
WALK_LIMIT = MAX_DEPTH + 10


@dataclass(slots=True)
class Thread:
    entry: Entry
    #: From the top (the post) down to the parent.
    ancestors: list[Entry]

    @property
    def parent(self) -> Entry | None:
        return self.ancestors[-1] if self.ancestors else None


def load_thread(conn: sa.Connection, urls: Urls, object_id: str) -> Thread | None:
    row = conn.execute(select_entries().where(OBJECTS.c.id == object_id)).first()
    if row is None:
        return None
    entry = entry_of(row, urls)
    _attach_replies(conn, urls, entry)
    return Thread(entry, _ancestors(conn, urls, object_id))


def _ancestors(conn: sa.Connection, urls: Urls, object_id: str) -> list[Entry]:
    up = (
        sa.select(PUBLICATIONS.c.parent_id.label("id"), sa.literal(1).label("depth"))
        .where(PUBLICATIONS.c.id == object_id, PUBLICATIONS.c.parent_id.is_not(None))
        .cte("up", recursive=True)
    )
    up = up.union_all(
        sa.select(PUBLICATIONS.c.parent_id, up.c.depth + 1).where(
            PUBLICATIONS.c.id == up.c.id,
            PUBLICATIONS.c.parent_id.is_not(None),
            up.c.depth < WALK_LIMIT,
        )
    )
    rows = conn.execute(
        select_entries()
        .add_columns(up.c.depth)
        .join(up, up.c.id == OBJECTS.c.id)
        .order_by(up.c.depth.desc())
    ).all()
    return [entry_of(row, urls) for row in rows]


def _attach_replies(conn: sa.Connection, urls: Urls, root: Entry) -> None:
    """Hang every descendant of ``root`` under its parent, oldest first among siblings.

    A withdrawn reply is kept (as a placeholder) only when replies of its own are not.
    """
    down = (
        sa.select(PUBLICATIONS.c.id, sa.literal(1).label("depth"))
        .where(PUBLICATIONS.c.parent_id == root.id)
        .cte("down", recursive=True)
    )
    down = down.union_all(
        sa.select(PUBLICATIONS.c.id, down.c.depth + 1).where(
            PUBLICATIONS.c.parent_id == down.c.id, down.c.depth < WALK_LIMIT
        )
    )
    rows = conn.execute(select_entries().join(down, down.c.id == OBJECTS.c.id)).all()
    entries = {row.id: entry_of(row, urls) for row in rows}
    entries[root.id] = root
    for entry in sorted(entries.values(), key=_oldest_first):
        parent = entries.get(entry.parent_id or "")
        if parent is not None and entry is not root:
            parent.replies.append(entry)
    _prune(root)


def _oldest_first(entry: Entry) -> tuple[Any, ...]:
    # Unknown times last, as the backfill orders them.
    return (entry.published is None, entry.published or 0, entry.id)


def _prune(root: Entry) -> None:
    """Drop withdrawn replies with nothing live below them (a stack: threads run deep)."""
    order: list[Entry] = []
    stack = [root]
    while stack:
        entry = stack.pop()
        order.append(entry)
        stack.extend(entry.replies)
    for entry in reversed(order):  # children before their parents
        entry.replies = [r for r in entry.replies if not r.deleted or r.replies]
