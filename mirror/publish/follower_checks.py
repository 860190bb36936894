"""Follower copies asked about, and announced again: the publication job's part for the
servers that follow a hosted Group.

As for a publication in a remote community (mirror.publish.confirm): a
sent copy is looked up on its server 1, 3, 9 ... seconds after the 2xx,
within `[confirm].window_s`, at `[confirm].rate` per server (the job shares
each server's pace between both kinds of lookup). Found: confirmed. Not
found at the window's end: missing, with confirm's reasoning (a young
author's post past a known limit goes again once the author is old enough;
a reply whose parent is not there, after the parent; anything else backs
off), and the Announce goes again to that server's inbox only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.models import ApObject
from mirror.delivery import enqueue
from mirror.delivery.tables import PACES
from mirror.federation.backlog import pace_id
from mirror.publish.confirm import Rules, answered, missing_values
from mirror.publish.follower_copies import BACKLOGS, COPIES, move
from mirror.publish.lookup import Answer, Unavailable
from mirror.publish.records import ACTIVITIES, BATCH, NOW, state_values
from mirror.publish.states import HOLDS_REPLIES, State
from mirror.vocab.activities import recipe
from mirror.vocab.ids import Urls

OBJECTS = table_of(ApObject)
_PARENT = COPIES.alias("parent")
_HOLDS = [s.value for s in HOLDS_REPLIES]
#: A parent copy in one of these will not be stored without an operator: its
#: waiting replies are parked (naming it) instead of waiting for ever.
_BLOCKS = [s.value for s in (State.REFUSED, State.FAILED, State.CANCELLED, State.PARKED)]


@dataclass(frozen=True, slots=True)
class FollowerCheck:
    """A sent copy due for a lookup on its server."""

    id: int
    community: str
    host: str
    inbox: str
    object_id: str
    kind: str
    actor: str
    parent_id: str | None
    software: str | None
    sent_at: datetime
    checks: int
    sends: int
    created_at: datetime


#: Lookups due, the earliest few of each server (each has its own pace).
PER_SERVER = 4
_RANKED = (
    sa.select(
        COPIES.c.id,
        COPIES.c.community,
        COPIES.c.host,
        COPIES.c.inbox,
        COPIES.c.object_id,
        COPIES.c.kind,
        COPIES.c.actor,
        COPIES.c.parent_id,
        BACKLOGS.c.software,
        COPIES.c.sent_at,
        COPIES.c.checks,
        COPIES.c.sends,
        COPIES.c.created_at,
        COPIES.c.due_at,
        sa.func.row_number()
        .over(partition_by=COPIES.c.host, order_by=(COPIES.c.due_at, COPIES.c.id))
        .label("rank"),
    )
    .join(
        BACKLOGS,
        sa.and_(BACKLOGS.c.community == COPIES.c.community, BACKLOGS.c.host == COPIES.c.host),
    )
    .where(COPIES.c.state == State.SENT.value, COPIES.c.due_at <= NOW)
    .subquery()
)
DUE = (
    sa.select(*(c for c in _RANKED.c if c.name not in ("rank", "due_at")))
    .where(_RANKED.c.rank <= PER_SERVER)
    .order_by(_RANKED.c.due_at, _RANKED.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer()))
)


def due_checks(conn: sa.Connection, *, now: datetime, limit: int = BATCH) -> list[FollowerCheck]:
    return [
        FollowerCheck(**row._asdict()) for row in conn.execute(DUE, {"now": now, "limit": limit})
    ]


def record_check(
    conn: sa.Connection, check: FollowerCheck, answer: Answer, *, now: datetime, rules: Rules
) -> State:
    """What one lookup showed; returns the copy's new state."""
    values = answered(
        answer,
        sent_at=check.sent_at,
        checks=check.checks,
        now=now,
        rules=rules,
        missing=lambda found: missing_values(
            conn, check, found, now=now, rules=rules, parent_holds=_parent_holds(conn, check)
        ),
    )
    if values is None:
        assert isinstance(answer, Unavailable)
        _unverifiable_server(conn, check.host, answer.reason, now)
        return State.UNVERIFIABLE
    move(conn, check.id, State.SENT, values)
    return State(values.get("state", State.SENT))


def _parent_holds(conn: sa.Connection, check: FollowerCheck) -> bool | None:
    """None for a post; else whether the server holds the parent, as far as we know (a
    parent with no copy there was never asked about: nothing to wait for)."""
    if check.parent_id is None:
        return None
    state = conn.scalar(
        sa.select(COPIES.c.state).where(
            COPIES.c.community == check.community,
            COPIES.c.host == check.host,
            COPIES.c.object_id == check.parent_id,
        )
    )
    return state is None or state in _HOLDS


def _unverifiable_server(conn: sa.Connection, host: str, reason: str, now: datetime) -> None:
    """The server answers no lookups (its API is off, or needs a login): stop asking it,
    for every Group it follows; what it gets from now on is unverifiable too."""
    conn.execute(sa.update(BACKLOGS).where(BACKLOGS.c.host == host).values(unverifiable=reason))
    conn.execute(
        sa.update(COPIES)
        .where(COPIES.c.host == host, COPIES.c.state == State.SENT.value)
        .values(state_values(State.UNVERIFIABLE, reason, now))
    )


# -- announced again --------------------------------------------------------------------

#: Waiting or missing copies that may go now: due, their parent held there, the
#: server still followed.
RELEASABLE = (
    sa.select(
        COPIES.c.id,
        COPIES.c.state,
        COPIES.c.community,
        COPIES.c.host,
        COPIES.c.inbox,
        COPIES.c.object_id,
        COPIES.c.kind,
        COPIES.c.sends,
        COPIES.c.activity_id,
        BACKLOGS.c.id.label("backlog_id"),
        OBJECTS.c.deleted_at,
        OBJECTS.c.json.label("document"),
    )
    .join(
        BACKLOGS,
        sa.and_(BACKLOGS.c.community == COPIES.c.community, BACKLOGS.c.host == COPIES.c.host),
    )
    .join(OBJECTS, OBJECTS.c.id == COPIES.c.object_id, isouter=True)
    .join(
        _PARENT,
        sa.and_(
            _PARENT.c.community == COPIES.c.community,
            _PARENT.c.host == COPIES.c.host,
            _PARENT.c.object_id == COPIES.c.parent_id,
        ),
        isouter=True,
    )
    .where(
        BACKLOGS.c.stopped_at.is_(None),
        sa.or_(
            sa.and_(
                COPIES.c.state == State.WAITING.value,
                sa.or_(COPIES.c.due_at.is_(None), COPIES.c.due_at <= NOW),
            ),
            sa.and_(COPIES.c.state == State.MISSING.value, COPIES.c.due_at <= NOW),
        ),
        sa.or_(_PARENT.c.id.is_(None), _PARENT.c.state.in_(_HOLDS)),
    )
    .order_by(COPIES.c.created_at, COPIES.c.id)
    .limit(BATCH)
)

#: Waiting copies whose parent will not be stored there without an operator.
ORPHANED = (
    sa.select(COPIES.c.id, _PARENT.c.object_id.label("parent"), _PARENT.c.state.label("why"))
    .join(
        _PARENT,
        sa.and_(
            _PARENT.c.community == COPIES.c.community,
            _PARENT.c.host == COPIES.c.host,
            _PARENT.c.object_id == COPIES.c.parent_id,
        ),
    )
    .where(
        COPIES.c.state == State.WAITING.value,
        sa.or_(
            _PARENT.c.state.in_(_BLOCKS),
            sa.and_(_PARENT.c.state == State.MISSING.value, _PARENT.c.due_at.is_(None)),
        ),
    )
)


def release(conn: sa.Connection, *, now: datetime, urls: Urls) -> int:
    """Announce again what may go now; park what waits for a parent that will not come.
    Returns how many were queued."""
    for row in conn.execute(ORPHANED.limit(BATCH)).all():
        move(
            conn,
            row.id,
            State.WAITING,
            state_values(State.PARKED, f"waits for {row.parent}, which is {row.why} there", now),
        )
    queued = 0
    for row in conn.execute(RELEASABLE, {"now": now}).all():
        if row.deleted_at is not None:
            move(conn, row.id, State(row.state), state_values(State.CANCELLED, "deleted", now))
            continue
        activity_id = announce_again(conn, row, now=now, urls=urls)
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
        queued += 1
    return queued


def announce_again(conn: sa.Connection, row: Any, *, now: datetime, urls: Urls) -> str:
    """The Group's Announce of the object, queued again for the server's inbox only;
    returns the new Announce's id.

    New ids for the Announce and the Create it embeds: Lemmy records both
    before it processes them, so a repeated one is dropped unread (PieFed
    remembers them 90 s); the object and its id stay the same. The object as
    it is now goes (an Update since changed it), as a Create: the server
    does not hold it. Neither activity is public: the outbox and a later
    server's backlog keep the first Announce. Read by primary keys only (the
    last Announce sent there, the object). A post takes the next slot of the
    server's backlog lane.
    """
    object_url = urls.object(row.object_id)
    last = conn.execute(
        sa.select(ACTIVITIES.c.recipe, ACTIVITIES.c.depends_on).where(
            ACTIVITIES.c.id == row.activity_id
        )
    ).one()
    inner = last.recipe["args"]["activity"]
    args = {**inner["args"], "kind": "Create"}
    if row.document is not None:
        args["object"] = row.document
    inner = {**inner, "args": args}
    pace = None
    if row.kind == "post":
        lane = pace_id(row.backlog_id)
        interval = conn.scalar(
            sa.select(PACES.c.interval_s).where(PACES.c.id == lane, PACES.c.host == row.host)
        )
        pace = enqueue.Pace(lane, float(interval)) if interval else None
    outbox = enqueue.Outbox(conn, urls=urls)
    inner_id = outbox.publish(
        username=inner["args"]["username"],
        recipe=inner,
        inboxes=[],
        now=now,
        depends_on=last.depends_on,
    )
    announce_id = outbox.publish(
        username=row.community,
        recipe=recipe(
            "announce", username=row.community, activity=inner, activity_id_inner=inner_id
        ),
        inboxes=[row.inbox],
        now=now,
        depends_on=last.depends_on,
        pace=pace,
        about=object_url,
    )
    outbox.flush()
    return announce_id
