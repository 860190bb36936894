"""Publications released: what waits goes when its time or parent comes, or is parked.

Also what holds a new publication before its first send (a known
new-account limit), as mirror.publish.backfill asks it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mirror.delivery import enqueue
from mirror.federation.follows import list_followers
from mirror.publish.records import (
    ACTIVITIES,
    BATCH,
    NOW,
    PUBLICATIONS,
    RUNS,
    actor_created,
    hours,
    iso,
    move,
    state_values,
)
from mirror.publish.servers import MARGIN, Server
from mirror.publish.states import BLOCKS_REPLIES, HOLDS_REPLIES, State
from mirror.vocab.ids import Urls

# -- releases -------------------------------------------------------------------------

_PARENT = PUBLICATIONS.alias("parent")

#: Waiting or missing publications that may go now: due, and their parent held.
RELEASABLE = (
    sa.select(
        PUBLICATIONS.c.id,
        PUBLICATIONS.c.actor,
        PUBLICATIONS.c.activity_id,
        PUBLICATIONS.c.state,
        PUBLICATIONS.c.sends,
        PUBLICATIONS.c.run_id,
        PUBLICATIONS.c.kind,
        RUNS.c.inbox,
        RUNS.c.options,
    )
    .join(RUNS, RUNS.c.id == PUBLICATIONS.c.run_id)
    .join(_PARENT, _PARENT.c.id == PUBLICATIONS.c.parent_id, isouter=True)
    .where(
        # A paused run holds what it has not sent yet; a cancelled one sends nothing;
        # one being planned sends what it planned so far (mirror.publish.planning).
        RUNS.c.state.in_(("active", "planning")),
        sa.or_(
            sa.and_(
                PUBLICATIONS.c.state == State.WAITING.value,
                sa.or_(PUBLICATIONS.c.due_at.is_(None), PUBLICATIONS.c.due_at <= NOW),
            ),
            sa.and_(
                PUBLICATIONS.c.state == State.MISSING.value,
                PUBLICATIONS.c.due_at <= NOW,
            ),
        ),
        sa.or_(_PARENT.c.id.is_(None), _PARENT.c.state.in_([s.value for s in HOLDS_REPLIES])),
    )
    .order_by(PUBLICATIONS.c.created_at, PUBLICATIONS.c.id)
    .limit(BATCH)
)

#: Waiting publications whose parent will not be stored without an operator.
ORPHANED = (
    sa.select(PUBLICATIONS.c.id, _PARENT.c.id.label("parent"), _PARENT.c.state.label("why"))
    .join(_PARENT, _PARENT.c.id == PUBLICATIONS.c.parent_id)
    .where(
        PUBLICATIONS.c.state == State.WAITING.value,
        sa.or_(
            _PARENT.c.state.in_([s.value for s in BLOCKS_REPLIES]),
            sa.and_(_PARENT.c.state == State.MISSING.value, _PARENT.c.due_at.is_(None)),
        ),
    )
)


#: Parked publications whose parent is no longer blocked (an operator acted).
UNBLOCKED = (
    sa.select(PUBLICATIONS.c.id)
    .join(_PARENT, _PARENT.c.id == PUBLICATIONS.c.parent_id)
    .where(
        PUBLICATIONS.c.state == State.PARKED.value,
        _PARENT.c.state.not_in([s.value for s in BLOCKS_REPLIES]),
        sa.or_(_PARENT.c.state != State.MISSING.value, _PARENT.c.due_at.is_not(None)),
    )
)


def release(conn: sa.Connection, *, now: datetime, urls: Urls) -> int:
    """Send what may go now; park what waits for a parent that will not come, and back."""
    for row in conn.execute(ORPHANED.limit(BATCH)).all():
        move(
            conn,
            row.id,
            State.WAITING,
            state_values(State.PARKED, f"waits for {row.parent}, which is {row.why}", now),
        )
    for (publication_id,) in conn.execute(UNBLOCKED.limit(BATCH)).all():
        move(
            conn,
            publication_id,
            State.PARKED,
            state_values(State.WAITING, "waits for its parent to be confirmed", now),
        )
    rows = conn.execute(RELEASABLE, {"now": now}).all()
    for row in rows:
        send(conn, row, now=now, urls=urls)
    return len(rows)


def send(conn: sa.Connection, row: Any, *, now: datetime, urls: Urls) -> str:
    """Queue a publication's activity: the first time as built, later with a new id.

    A re-publication is decided here, by confirmation: the target does not
    hold the object. Lemmy records an activity id before it processes the
    activity, so a repeated id would be dropped unread; the object (and its
    id) stays the same. (The delivery queue's own retries keep their id.)
    A post released or published again takes the next slot of its run's
    pace, as the run's other posts do: a day's held posts do not go at once.
    """
    activity = (
        conn.execute(sa.select(ACTIVITIES).where(ACTIVITIES.c.id == row.activity_id))
        .mappings()
        .one()
    )
    object_id = activity["object_id"]
    pace = run_pace(row.run_id, row.options) if row.kind == "post" else None
    if row.sends == 0:
        # Held before its first send: the followers get it now too.
        inboxes = {row.inbox, *(f.shared_inbox or f.inbox for f in list_followers(conn, row.actor))}
        enqueue.enqueue(
            conn,
            activity_id=row.activity_id,
            ordering_key=object_id,
            depends_on=activity["depends_on"],
            inboxes=sorted(inboxes),
            now=now,
            pace=pace,
        )
        activity_id = row.activity_id
    else:
        activity_id = enqueue.publish(
            conn,
            urls=urls,
            username=row.actor,
            recipe=activity["recipe"],
            inboxes=[row.inbox],
            now=now,
            public=True,
            depends_on=activity["depends_on"],
            run_id=row.run_id,
            pace=pace,
        )
    move(
        conn,
        row.id,
        State(row.state),
        {
            **state_values(State.QUEUED, None, now),
            "activity_id": activity_id,
            "sends": row.sends + 1,
            "checks": 0,
        },
    )
    return activity_id


def run_pace(run_id: int, options: dict[str, Any] | None) -> enqueue.Pace | None:
    """The pace a run's posts keep: its `--rate` (the options it was started with)."""
    rate = (options or {}).get("rate")
    return enqueue.Pace.per_minute(run_id, float(rate)) if rate else None


# -- holding up front ----------------------------------------------------------------


def posts_sent(conn: sa.Connection, actor: str, host: str) -> int:
    """Posts of ``actor`` ever sent to ``host``: a server counts an account's posts, not a
    community's."""
    return int(
        conn.scalar(
            sa.select(sa.func.count())
            .select_from(PUBLICATIONS)
            .where(
                PUBLICATIONS.c.actor == actor,
                PUBLICATIONS.c.kind == "post",
                PUBLICATIONS.c.target.like(f"%://{host}/%"),
                PUBLICATIONS.c.sends > 0,
            )
        )
        or 0
    )


def young_account_due(
    conn: sa.Connection, server: Server, actor: str, *, count: int, now: datetime
) -> tuple[datetime, str] | None:
    """(until, reason) when the server's new-account limit holds an actor's next post.

    ``count`` posts of this actor are on the server already (or going out
    in this run). The limit is honoured before sending, not guessed
    afterwards; the account's age is never faked.
    """
    limit = server.new_account_limit
    if limit is None or count < limit.posts:
        return None
    created = actor_created(conn, actor)
    if created is None or now >= created + limit.age:
        return None
    due = created + limit.age + MARGIN
    return due, (
        f"{server.name} takes {limit.posts} posts from an account younger than "
        f"{hours(limit.age)} ({limit.source}); @{actor} was created {iso(created)}, "
        f"so this post waits until {iso(due)}"
    )
