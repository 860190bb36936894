"""Followers of our actors: Follow, Undo{Follow}, Delete of a follower, operator actions.

The bot, the puppets and the hosted communities' Groups are followed alike:
one follower row per (actor, follower), the Accept signed by the followed
actor and sent through the durable queue.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.bulk import bulk_insert
from mirror.db.models import Follower, LocalActor
from mirror.db.session import write_transaction
from mirror.delivery.enqueue import publish
from mirror.federation import backlog
from mirror.federation.actors import GROUP
from mirror.federation.server_software import software_of
from mirror.federation.service import Federation
from mirror.vocab.activities import recipe
from mirror.vocab.parse import Inbound, RemoteActorDoc

log = logging.getLogger(__name__)
TABLE = table_of(Follower)
ACTIVE, REMOVED, BLOCKED = "active", "removed", "blocked"


@dataclass(frozen=True, slots=True)
class FollowerRow:
    local_username: str
    actor_url: str
    inbox: str
    shared_inbox: str | None
    follow_id: str | None
    state: str
    created_at: datetime


def list_followers(
    connection: sa.Connection, username: str, *, states: tuple[str, ...] = (ACTIVE,)
) -> list[FollowerRow]:
    rows = connection.execute(
        sa.select(TABLE)
        .where(TABLE.c.local_username == username, TABLE.c.state.in_(states))
        .order_by(TABLE.c.created_at, TABLE.c.actor_url)
    ).mappings()
    return [FollowerRow(**{k: r[k] for k in FollowerRow.__slots__}) for r in rows]


def set_state(
    connection: sa.Connection, username: str, actor_url: str, state: str, now: datetime
) -> FollowerRow | None:
    """Change a follower's state; None when the actor never followed (or was unknown)."""
    found = (
        connection.execute(
            sa.select(TABLE).where(
                TABLE.c.local_username == username, TABLE.c.actor_url == actor_url
            )
        )
        .mappings()
        .first()
    )
    if found is None:
        if state != BLOCKED:
            return None
        # Blocking someone who does not follow yet still refuses their future Follows.
        bulk_insert(
            connection,
            TABLE,
            [
                {
                    "local_username": username,
                    "actor_url": actor_url,
                    "inbox": "",
                    "shared_inbox": None,
                    "follow_id": None,
                    "state": BLOCKED,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        return None
    connection.execute(
        sa.update(TABLE).where(TABLE.c.id == found["id"]).values(state=state, updated_at=now)
    )
    return FollowerRow(**{k: found[k] for k in FollowerRow.__slots__})


async def handle_follow(
    federation: Federation, local: LocalActor, activity: Inbound, follower: RemoteActorDoc
) -> None:
    """Store the follower and answer with a signed Accept embedding the Follow.

    Only the Follow's id, type, actor and object are kept: what Lemmy reads
    of an embedded Follow (crates/apub/src/protocol/activities/following/follow.rs)
    and what Mastodon matches an Accept by. The rest of what the sender
    wrote (up to the inbox's size limit) is neither stored nor served back.
    """
    inbox = follower.inbox
    if not inbox:
        log.warning(
            "Follow %s from %s: the actor has no inbox; ignored", activity.id, activity.actor
        )
        return
    now = federation.clock.now()
    follow = {
        "id": activity.id,
        "type": "Follow",
        "actor": activity.actor,
        "object": activity.object_id,
    }
    accept = recipe("accept", username=local.username, follow=follow, **_as_group(local))
    software = None
    if local.kind == GROUP:
        server_inbox = follower.shared_inbox or inbox

        def known() -> bool:
            with federation.engine.connect() as conn:
                return backlog.has_backlog(conn, local.username, server_inbox)

        if not await asyncio.to_thread(known):
            # Its backlog honours what its software is known to limit (PieFed).
            software = await software_of(federation, server_inbox)

    def store() -> bool:
        with write_transaction(federation.engine) as conn:
            current = conn.execute(
                sa.select(TABLE.c.id, TABLE.c.state).where(
                    TABLE.c.local_username == local.username, TABLE.c.actor_url == activity.actor
                )
            ).first()
            if current is not None and current.state == BLOCKED:
                return False
            values = {
                "inbox": inbox,
                "shared_inbox": follower.shared_inbox,
                "follow_id": activity.id,
                "state": ACTIVE,
                "updated_at": now,
            }
            if current is None:
                bulk_insert(
                    conn,
                    TABLE,
                    [
                        {
                            "local_username": local.username,
                            "actor_url": activity.actor,
                            "created_at": now,
                            **values,
                        }
                    ],
                )
            else:
                conn.execute(sa.update(TABLE).where(TABLE.c.id == current.id).values(**values))
            publish(
                conn,
                urls=federation.urls,
                username=local.username,
                recipe=accept,
                inboxes=[inbox],
                now=now,
            )
            if local.kind == GROUP:
                # After the Accept: a new server gets the whole archive, once.
                queued = backlog.start(
                    conn,
                    group=local.username,
                    inbox=follower.shared_inbox or inbox,
                    follow_id=activity.id,
                    urls=federation.urls,
                    now=now,
                    rate=federation.settings.hosted_defaults.backlog_rate,
                    software=software,
                )
                if queued is not None:
                    log.info(
                        "%s: %d announces of the archive queued for %s",
                        local.username,
                        queued,
                        follower.shared_inbox or inbox,
                    )
            return True

    if not await asyncio.to_thread(store):
        log.info("Follow %s from blocked %s ignored", activity.id, activity.actor)
        return
    log.info("%s now follows %s", activity.actor, local.username)
    federation.wake()


def _as_group(local: LocalActor) -> dict[str, bool]:
    """The recipe argument that makes a Group its activities' actor (none for the others,
    so the recipes of the bot's activities stay as they were stored)."""
    return {"group": True} if local.kind == GROUP else {}


async def handle_undo_follow(federation: Federation, local: LocalActor, activity: Inbound) -> None:
    now = federation.clock.now()

    def remove() -> int:
        with write_transaction(federation.engine) as conn:
            row = conn.execute(
                sa.select(TABLE.c.inbox, TABLE.c.shared_inbox).where(
                    TABLE.c.local_username == local.username,
                    TABLE.c.actor_url == activity.actor,
                    TABLE.c.state == ACTIVE,
                )
            ).first()
            if row is None:
                return 0
            conn.execute(
                sa.update(TABLE)
                .where(
                    TABLE.c.local_username == local.username,
                    TABLE.c.actor_url == activity.actor,
                    TABLE.c.state == ACTIVE,
                )
                .values(state=REMOVED, updated_at=now)
            )
            if local.kind == GROUP:
                _stop(conn, local.username, row.shared_inbox or row.inbox, now)
            return 1

    if await asyncio.to_thread(remove):
        log.info("%s unfollowed %s", activity.actor, local.username)


def _stop(conn: sa.Connection, group: str, inbox: str, now: datetime) -> None:
    cancelled = backlog.stop_if_unfollowed(conn, group=group, inbox=inbox, now=now)
    if cancelled:
        log.info("%s: no follower left on %s; %d announces cancelled", group, inbox, cancelled)


async def handle_actor_deleted(federation: Federation, actor_url: str) -> None:
    """A follower's account is gone: it follows no one here any more."""
    now = federation.clock.now()

    def remove() -> int:
        with write_transaction(federation.engine) as conn:
            followed = conn.execute(
                sa.select(TABLE.c.local_username, TABLE.c.inbox, TABLE.c.shared_inbox).where(
                    TABLE.c.actor_url == actor_url, TABLE.c.state == ACTIVE
                )
            ).all()
            result = conn.execute(
                sa.update(TABLE)
                .where(TABLE.c.actor_url == actor_url, TABLE.c.state == ACTIVE)
                .values(state=REMOVED, updated_at=now)
            )
            groups = set(
                conn.scalars(
                    sa.select(LocalActor.username).where(
                        LocalActor.kind == GROUP,
                        LocalActor.username.in_([f.local_username for f in followed]),
                    )
                )
            )
            for f in followed:
                if f.local_username in groups:
                    _stop(conn, f.local_username, f.shared_inbox or f.inbox, now)
            return result.rowcount or 0

    removed = await asyncio.to_thread(remove)
    log.info("actor %s was deleted; removed as follower of %d actors", actor_url, removed)


def reject_follower(
    conn: sa.Connection, federation: Federation, local: LocalActor, follower: FollowerRow
) -> bool:
    """Queue a Reject for a removed or blocked follower (Mastodon then drops the follow)."""
    if not follower.inbox:
        return False
    publish(
        conn,
        urls=federation.urls,
        username=local.username,
        recipe=recipe(
            "reject",
            username=local.username,
            follower=follower.actor_url,
            follow_id=follower.follow_id or "",
            **_as_group(local),
        ),
        inboxes=[follower.inbox],
        now=federation.clock.now(),
    )
    return True
