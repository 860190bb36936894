"""Deletes of mirrored objects: excluded authors and items, `mirror retract`, duplicates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.models import Activity, ApObject, Delivery, Publication
from mirror.delivery import enqueue
from mirror.federation.follows import list_followers
from mirror.vocab.activities import recipe
from mirror.vocab.context import PUBLIC
from mirror.vocab.ids import Urls

PUBLICATIONS = table_of(Publication)
OBJECTS = table_of(ApObject)
DELIVERIES = table_of(Delivery)
ACTIVITIES = table_of(Activity)


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
        group = urls.community_of(community) if community else None
        delete = recipe(
            "delete",
            username=row.actor,
            object_id=document["id"],
            to=[PUBLIC],
            cc=[community] if community else [urls.followers(row.actor)],
            audience=community,
        )
        if group:
            inboxes.discard(urls.community(group).inbox)  # our own Group: nothing to send
        delete_id = enqueue.publish(
            conn,
            urls=urls,
            username=row.actor,
            recipe=delete,
            inboxes=sorted(inboxes),
            now=now,
            public=True,
            run_id=run_id,
        )
        if group:
            _announce_delete(
                conn, urls, group, document["id"], delete, delete_id, now=now, run_id=run_id
            )
        conn.execute(
            sa.update(OBJECTS).where(OBJECTS.c.id == row.id).values(deleted_at=now, updated_at=now)
        )
    return len(rows)


def _announce_delete(
    conn: sa.Connection,
    urls: Urls,
    group: str,
    object_url: str,
    delete: dict[str, Any],
    delete_id: str,
    *,
    now: datetime,
    run_id: int | None,
) -> None:
    """One of our Groups announces the Delete: to every server that got the object
    (a backlog still under way too) and to its followers."""
    inboxes = {f.shared_inbox or f.inbox for f in list_followers(conn, group)}
    inboxes |= set(
        conn.scalars(
            sa.select(DELIVERIES.c.inbox)
            .join(ACTIVITIES, ACTIVITIES.c.id == DELIVERIES.c.activity_id)
            .where(ACTIVITIES.c.actor == group, ACTIVITIES.c.object_id == object_url)
            .distinct()
        )
    )
    enqueue.publish(
        conn,
        urls=urls,
        username=group,
        recipe=recipe("announce", username=group, activity=delete, activity_id_inner=delete_id),
        inboxes=sorted(inboxes),
        now=now,
        public=True,
        run_id=run_id,
        about=object_url,
    )
