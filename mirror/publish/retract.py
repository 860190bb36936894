"""Deletes of mirrored objects: excluded authors and items, `mirror retract`, duplicates."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.models import ApObject, Delivery, Publication
from mirror.delivery import enqueue
from mirror.vocab.activities import recipe
from mirror.vocab.context import PUBLIC
from mirror.vocab.ids import Urls

PUBLICATIONS = table_of(Publication)
OBJECTS = table_of(ApObject)
DELIVERIES = table_of(Delivery)


def delete_publications(
    conn: sa.Connection,
    *,
    urls: Urls,
    now: datetime,
    where: sa.ColumnElement[bool],
    inbox_for: dict[str, str],
    run_id: int | None = None,
) -> int:
    """Send a Delete for every live object matching ``where``; they answer 410 afterwards.

    The Delete carries Public in `to` and no `summary` (Lemmy reads a summary
    as a moderator's removal, rules §6.3); the queue's per-object order keeps
    it after the Create and any Update.
    """
    rows = conn.execute(
        sa.select(PUBLICATIONS, OBJECTS.c.json)
        .join(OBJECTS, OBJECTS.c.id == PUBLICATIONS.c.id)
        .where(where, OBJECTS.c.deleted_at.is_(None))
    ).all()
    for row in rows:
        document = row.json
        community = document.get("audience")
        inboxes = {
            d.inbox
            for d in conn.execute(
                sa.select(DELIVERIES.c.inbox).where(DELIVERIES.c.activity_id == row.activity_id)
            )
        }
        if community in inbox_for:
            inboxes.add(inbox_for[community])
        enqueue.publish(
            conn,
            urls=urls,
            username=row.actor,
            recipe=recipe(
                "delete",
                username=row.actor,
                object_id=document["id"],
                to=[PUBLIC],
                cc=[community] if community else [urls.followers(row.actor)],
                audience=community,
            ),
            inboxes=sorted(inboxes),
            now=now,
            public=True,
            run_id=run_id,
        )
        conn.execute(
            sa.update(OBJECTS).where(OBJECTS.c.id == row.id).values(deleted_at=now, updated_at=now)
        )
    return len(rows)
