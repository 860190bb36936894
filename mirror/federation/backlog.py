"""The backlog of a hosted community: the whole archive, queued for a newly subscribing server.

Lemmy reads only the first page of a community's outbox when it
subscribes (about 20 posts, no comments; PieFed 50). So when a server's
first follower of a Group is accepted, every Announce the Group made is
queued for that server's shared inbox: posts oldest first, each post's
comments after it, a parent before its replies, an object's Create before
its Updates; deleted objects not at all. Posts keep `[hosted_defaults].
backlog_rate` (a lane of their own per server); a post waits for the
Accept, and a comment for its parent, where the queue keeps them in order.
Once per server: a second follower there costs nothing. The queue is
durable, so a backlog goes on after a restart. When the server's last
follower leaves, what was not sent is cancelled; a new follower from there
later queues it again (what was delivered is not sent twice).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.models import Activity, Delivery, Follower, HostedBacklog
from mirror.delivery import enqueue
from mirror.delivery.states import State, stored_in
from mirror.federation.archive import archive_order
from mirror.publish import follower_copies
from mirror.publish.records import PUBLICATIONS, actor_created
from mirror.publish.servers import MARGIN, server_for
from mirror.publish.states import State as Published
from mirror.vocab.ids import Urls

BACKLOGS = table_of(HostedBacklog)
ACTIVITIES = table_of(Activity)
DELIVERIES = table_of(Delivery)
FOLLOWERS = table_of(Follower)


def pace_id(backlog_id: int) -> int:
    """The queue's lane of a backlog: negative, so never a backfill run's id (those are > 0)."""
    return -backlog_id


def has_backlog(conn: sa.Connection, group: str, inbox: str) -> bool:
    """Whether ``inbox``'s server has (or had) the Group's backlog."""
    return (
        conn.scalar(
            sa.select(BACKLOGS.c.id).where(
                BACKLOGS.c.community == group, BACKLOGS.c.host == enqueue.host_of(inbox)
            )
        )
        is not None
    )


def start(
    conn: sa.Connection,
    *,
    group: str,
    inbox: str,
    follow_id: str | None,
    urls: Urls,
    now: datetime,
    rate: float,
    software: str | None = None,
) -> int | None:
    """Queue the archive for ``inbox``'s server, once; returns how many Announces
    were queued, or None when that server has (or had) its backlog already.

    ``software`` (the server's NodeInfo name) decides the known limits the
    backlog honours: a post a new-account limit would drop (PieFed's
    `can_create_post` runs on announced posts) is queued for when its
    author is old enough, and its comments wait behind it in the queue.
    """
    host = enqueue.host_of(inbox)
    existing = conn.execute(
        sa.select(BACKLOGS).where(BACKLOGS.c.community == group, BACKLOGS.c.host == host)
    ).first()
    if existing is not None and existing.stopped_at is None:
        return None  # another follower there got it: nothing more to send
    if existing is not None:
        software = software or existing.software
    if existing is not None:
        # Its last follower had left: what was cancelled goes again, what was
        # published meanwhile is added below, and what was delivered is not sent twice.
        conn.execute(
            sa.update(DELIVERIES)
            .where(
                DELIVERIES.c.inbox == existing.inbox,
                stored_in(DELIVERIES.c.state, State.CANCELLED),
                DELIVERIES.c.activity_id.in_(
                    sa.select(ACTIVITIES.c.id).where(ACTIVITIES.c.actor == group)
                ),
            )
            .values(state=State.PENDING, next_attempt_at=now, first_attempt_at=None, updated_at=now)
        )
        conn.execute(
            sa.update(BACKLOGS)
            .where(BACKLOGS.c.id == existing.id)
            .values(stopped_at=None, inbox=inbox)
        )
        follower_copies.resumed(conn, group=group, host=host, now=now)
    # Each object's Announces in the order they were made: its Create, then its
    # Updates (a Delete is of a deleted object, which archive_order leaves out).
    # No JSON is read: an archive's backlog is thousands of rows. Only public
    # ones: an Announce made again for one server (a new id for a server that
    # dropped the first) is that server's.
    announces: dict[str, list[Any]] = defaultdict(list)
    for row in conn.execute(
        sa.select(ACTIVITIES.c.id, ACTIVITIES.c.object_id, ACTIVITIES.c.depends_on)
        .where(
            ACTIVITIES.c.actor == group,
            ACTIVITIES.c.type == "Announce",
            ACTIVITIES.c.public.is_(True),
        )
        .order_by(ACTIVITIES.c.created_at, ACTIVITIES.c.id)
    ):
        announces[row.object_id].append(row)
    backlog_id = (
        existing.id
        if existing is not None
        else int(
            conn.execute(
                sa.insert(BACKLOGS)
                .values(
                    community=group,
                    host=host,
                    inbox=inbox,
                    items=0,
                    software=software,
                    created_at=now,
                    stopped_at=None,
                )
                .returning(BACKLOGS.c.id)
            ).scalar_one()
        )
    )
    pace = enqueue.Pace.per_minute(pace_id(backlog_id), rate)
    limit = server_for(software).new_account_limit
    entries = []
    paced: dict[str, enqueue.Pace] = {}
    due: dict[str, datetime] = {}
    posts_by: dict[str, int] = defaultdict(int)
    created: dict[str, datetime | None] = {}
    # The server is asked whether it kept each post and comment, where it can be.
    copies = follower_copies.Tracker(conn, group)
    parents = (
        {
            urls.object(row.id): (row.id, row.parent_id)
            for row in conn.execute(
                sa.select(PUBLICATIONS.c.id, PUBLICATIONS.c.parent_id).where(
                    PUBLICATIONS.c.target == urls.community(group).id
                )
            )
        }
        if host in copies.askable
        else {}
    )
    for url, kind, actor in archive_order(conn, urls, group, with_actors=True):
        hold = None
        if kind == "post" and limit is not None:
            # Every post of the archive counts, delivered before or not: never too few.
            posts_by[actor] += 1
            if actor not in created:
                created[actor] = actor_created(conn, actor)
            born = created[actor]
            if posts_by[actor] > limit.posts and born is not None and now < born + limit.age:
                hold = born + limit.age + MARGIN
        for row in announces.get(url, []):
            depends_on = row.depends_on
            if kind == "post":
                # A post waits for the Accept (its ordering key is the Follow's id).
                depends_on = depends_on or follow_id
                if pace is not None:
                    paced[row.id] = pace
                if hold is not None:
                    due[row.id] = hold
            entries.append((row.id, url, depends_on, inbox))
        if url in parents and announces.get(url):
            object_id, parent_id = parents[url]
            copies.announced(
                inboxes=[inbox],
                object_id=object_id,
                kind=kind,
                actor=actor,
                parent_id=parent_id,
                activity_id=announces[url][0].id,  # its Create
                now=now,
            )
    queued = enqueue.enqueue_batch(conn, entries, now=now, pace_of=paced, due_of=due)
    copies.flush()
    conn.execute(sa.update(BACKLOGS).where(BACKLOGS.c.id == backlog_id).values(items=len(entries)))
    return queued


def stop_if_unfollowed(conn: sa.Connection, *, group: str, inbox: str, now: datetime) -> int:
    """The server of ``inbox`` has no follower of the Group left: cancel what it still
    has to receive from the Group (its backlog and Announces queued for it)."""
    host = enqueue.host_of(inbox)
    still = [
        f
        for f in conn.execute(
            sa.select(FOLLOWERS.c.inbox, FOLLOWERS.c.shared_inbox).where(
                FOLLOWERS.c.local_username == group, FOLLOWERS.c.state == "active"
            )
        )
        if enqueue.host_of(f.shared_inbox or f.inbox) == host
    ]
    if still:
        return 0
    cancelled = conn.execute(
        sa.update(DELIVERIES)
        .where(
            DELIVERIES.c.host == host,
            stored_in(DELIVERIES.c.state, State.PENDING, State.PARKED),
            DELIVERIES.c.activity_id.in_(
                sa.select(ACTIVITIES.c.id).where(
                    ACTIVITIES.c.actor == group, ACTIVITIES.c.type == "Announce"
                )
            ),
            sa.or_(DELIVERIES.c.locked_until.is_(None), DELIVERIES.c.locked_until <= now),
        )
        .values(state=State.CANCELLED, locked_by=None, locked_until=None, updated_at=now)
    ).rowcount
    conn.execute(
        sa.update(BACKLOGS)
        .where(
            BACKLOGS.c.community == group,
            BACKLOGS.c.host == host,
            BACKLOGS.c.stopped_at.is_(None),
        )
        .values(stopped_at=now)
    )
    follower_copies.stopped(conn, group=group, host=host, now=now)
    return cancelled or 0


def status(conn: sa.Connection, group: str) -> list[dict[str, Any]]:
    """Each server's followers of the Group and its backlog: how many Announces it was
    queued, and what became of everything the Group sent it (backlog and since)."""
    followers: dict[str, int] = defaultdict(int)
    for f in conn.execute(
        sa.select(FOLLOWERS.c.inbox, FOLLOWERS.c.shared_inbox).where(
            FOLLOWERS.c.local_username == group, FOLLOWERS.c.state == "active"
        )
    ):
        if f.shared_inbox or f.inbox:
            followers[enqueue.host_of(f.shared_inbox or f.inbox)] += 1
    backlogs = {
        b.host: b for b in conn.execute(sa.select(BACKLOGS).where(BACKLOGS.c.community == group))
    }
    copies = follower_copies.counts(conn, group)
    out = []
    for host in sorted(set(followers) | set(backlogs)):
        backlog = backlogs.get(host)
        entry: dict[str, Any] = {"host": host, "followers": followers.get(host, 0), "backlog": None}
        if backlog is not None:
            states = dict(
                conn.execute(
                    sa.select(DELIVERIES.c.state, sa.func.count())
                    .join(ACTIVITIES, ACTIVITIES.c.id == DELIVERIES.c.activity_id)
                    .where(
                        DELIVERIES.c.inbox == backlog.inbox,
                        ACTIVITIES.c.actor == group,
                        ACTIVITIES.c.type == "Announce",
                    )
                    .group_by(DELIVERIES.c.state)
                ).all()
            )
            held = conn.scalar(
                sa.select(sa.func.max(DELIVERIES.c.next_attempt_at))
                .join(ACTIVITIES, ACTIVITIES.c.id == DELIVERIES.c.activity_id)
                .where(
                    DELIVERIES.c.inbox == backlog.inbox,
                    ACTIVITIES.c.actor == group,
                    stored_in(DELIVERIES.c.state, State.PENDING),
                )
            )
            entry["backlog"] = {
                "items": backlog.items,
                "software": backlog.software,
                # The latest time something still waits for (a new-account limit).
                "last_due_at": held.isoformat() if held else None,
                "delivered": int(states.get(State.DELIVERED, 0)),
                "pending": int(states.get(State.PENDING, 0)) + int(states.get(State.PARKED, 0)),
                "failed": int(states.get(State.FAILED, 0)),
                "cancelled": int(states.get(State.CANCELLED, 0)),
                "started_at": backlog.created_at.isoformat(),
                "stopped_at": backlog.stopped_at.isoformat() if backlog.stopped_at else None,
            }
            entry["copies"] = _copies(copies.get(host, {}), backlog)
        out.append(entry)
    return out


def _copies(states: dict[str, int], backlog: Any) -> dict[str, Any]:
    """What the server holds of the Group's posts and comments, as its lookups say."""
    return {
        "confirmed": states.get(Published.CONFIRMED.value, 0),
        "missing": states.get(Published.MISSING.value, 0),
        # Sent, and asked about within the window (or still to send, or to send again).
        "awaiting_lookup": states.get(Published.SENT.value, 0),
        "states": dict(sorted(states.items())),
        # Why it cannot be asked, if it cannot (no lookup, or its lookup is off).
        "unverifiable": follower_copies.unverifiable_reason(backlog.software, backlog.unverifiable),
    }
