"""Planned items matched with their publications for a target, found by id or alias.

An item's id changes when a later dump shows it to be the same as another
item (the two merge, the smaller id survives); its object must not, or a
re-run would post it a second time. The item keeps the object it was
published as (its own id's, else the oldest), and the objects of the other
published copies are duplicates. So is a comment's followers-only copy,
sent while its post was unknown, once the comment has its place in the
community.

One chunk at a time: a chunk holds whole threads, so the parents its
replies need are in it, and what the previous chunk found is let go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.models import ApObject, Publication
from mirror.publish.plan import Item
from mirror.publish.prepare import FOLLOWERS_ONLY

PUBLICATIONS = table_of(Publication)
OBJECTS = table_of(ApObject)
#: Item ids per IN (...): SQLite takes 999 bound parameters per statement.
MATCH_BATCH = 900


@dataclass(slots=True)
class Matches:
    #: item id -> (the publication it keeps or None, its duplicates still live).
    matched: dict[str, tuple[Any, list[Any]]]
    #: publication (object) id -> its state, for every publication found.
    states: dict[str, str]
    #: item id -> the object id it keeps.
    objects: dict[str, str]


def match(
    conn: sa.Connection,
    target_id: str,
    target_key: Callable[[Item], str],
    items: Sequence[Item],
) -> Matches:
    """The publications of ``items`` for ``target_id`` (and followers-only copies)."""
    ids = sorted({i for item in items for i in (item.id, *(item.data.get("aliases") or ()))})
    rows = []
    for start in range(0, len(ids), MATCH_BATCH):
        rows.extend(
            conn.execute(
                sa.select(PUBLICATIONS, OBJECTS.c.deleted_at)
                .join(OBJECTS, OBJECTS.c.id == PUBLICATIONS.c.id, isouter=True)
                .where(
                    PUBLICATIONS.c.item_id.in_(ids[start : start + MATCH_BATCH]),
                    PUBLICATIONS.c.target.in_((target_id, FOLLOWERS_ONLY)),
                )
            ).all()
        )
    published = {(row.item_id, row.target): row for row in rows}
    objects: dict[str, str] = {}
    matched = {}
    for item in items:
        key = target_key(item)
        aliases = (item.id, *(item.data.get("aliases") or ()))
        found = [published[(i, key)] for i in aliases if (i, key) in published]
        stale = [
            published[(i, FOLLOWERS_ONLY)]
            for i in aliases
            if key != FOLLOWERS_ONLY and (i, FOLLOWERS_ONLY) in published
        ]
        kept = None
        if found:
            kept = published.get((item.id, key)) or min(found, key=lambda r: (r.created_at, r.id))
            objects[item.id] = kept.id
        # Only live objects need a Delete (a re-run finds these again).
        extra = [r for r in (*found, *stale) if r is not kept and r.deleted_at is None]
        if kept is not None or extra:
            matched[item.id] = (kept, extra)
    return Matches(matched, {row.id: row.state for row in rows}, objects)
