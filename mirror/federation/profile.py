"""A changed profile (name, summary, icon, key) is announced to followers as Update."""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.models import LocalActor
from mirror.db.session import write_transaction
from mirror.delivery.enqueue import publish
from mirror.federation.actors import actor_document, profile_hash
from mirror.federation.follows import list_followers
from mirror.federation.service import Federation
from mirror.vocab.activities import recipe
from mirror.vocab.times import rfc3339

log = logging.getLogger(__name__)


async def announce_profile(federation: Federation, actor: LocalActor) -> int:
    """Send an Update when the actor document changed since last time; returns inboxes sent to.

    The first time an actor is served there is nothing to update: the hash
    is only recorded.
    """
    document = actor_document(federation.settings, federation.urls, actor)
    digest = profile_hash(document)
    if actor.profile_hash == digest:
        return 0
    now = federation.clock.now()
    first = actor.profile_hash is None

    def store() -> list[str]:
        table = table_of(LocalActor)
        with write_transaction(federation.engine) as conn:
            conn.execute(
                sa.update(table)
                .where(table.c.username == actor.username)
                .values(profile_hash=digest, updated_at=now)
            )
            if first:
                return []
            followers = list_followers(conn, actor.username)
            # One request per server: shared inboxes when followers advertise them.
            inboxes = sorted({f.shared_inbox or f.inbox for f in followers if f.inbox})
            publish(
                conn,
                urls=federation.urls,
                username=actor.username,
                recipe=recipe(
                    "update_actor", username=actor.username, actor=document, published=rfc3339(now)
                ),
                inboxes=inboxes,
                now=now,
                public=True,
            )
        return inboxes

    inboxes = await asyncio.to_thread(store)
    federation.wake()
    if inboxes:
        log.info("profile of %s changed: Update sent to %d inboxes", actor.username, len(inboxes))
    return len(inboxes)
