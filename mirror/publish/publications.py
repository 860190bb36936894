"""The publication rows' transitions, as SQL: from deliveries, from lookups, and releases.

Each function takes the caller's connection (one transaction per step of
the job) and the time. The graph is mirror.publish.states; what a target
is known to do is mirror.publish.servers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.models import Activity, BackfillRun, Delivery, LocalActor, Publication
from mirror.delivery import enqueue
from mirror.delivery.backoff import Policy, next_attempt_at
from mirror.delivery.states import State as DeliveryState
from mirror.federation.follows import list_followers
from mirror.publish.lookup import Answer, Found, Later, NotFound, Unavailable
from mirror.publish.servers import MARGIN, Server, server_for
from mirror.publish.states import BLOCKS_REPLIES, HOLDS_REPLIES, State
from mirror.vocab.ids import Urls

PUBLICATIONS = table_of(Publication)
RUNS = table_of(BackfillRun)
DELIVERIES = table_of(Delivery)
ACTIVITIES = table_of(Activity)
ACTORS = table_of(LocalActor)
#: The target of comments whose post is unknown: the followers, no community.
FOLLOWERS_ONLY = "followers"
#: Rows one step reads at most (the job comes back for the rest).
BATCH = 500
#: Lookups that fail for a passing reason are asked again this much later.
LATER = timedelta(seconds=30)
#: Given to the operator when a run's target has no lookup.
NO_LOOKUP = "{server} offers no lookup of objects; the delivery got a 2xx"
_NOW = sa.bindparam("now", type_=PUBLICATIONS.c.due_at.type)


@dataclass(frozen=True, slots=True)
class Window:
    """How long after a 2xx we look for an object, and how often."""

    #: The last lookup comes this long after the 2xx; not found then: missing.
    seconds: float

    def next_check(self, sent_at: datetime, checks: int) -> datetime | None:
        """Lookups at 1, 3, 9, 27 ... seconds after sending, the last at the window's end."""
        if checks > 0 and 3 ** (checks - 1) >= self.seconds:
            return None
        return sent_at + timedelta(seconds=min(3**checks, self.seconds))


# -- from deliveries --------------------------------------------------------------

#: Publications to the community whose target delivery moved on: a queued
#: one was answered or held, a held one let go; a refused, failed or
#: cancelled one queued again by an operator (`mirror retry --failed`).
_CHANGED_COMMUNITY = (
    sa.select(
        PUBLICATIONS.c.id,
        PUBLICATIONS.c.state,
        RUNS.c.software,
        RUNS.c.unverifiable,
        DELIVERIES.c.state.label("delivery_state"),
        DELIVERIES.c.last_status,
        DELIVERIES.c.last_error,
        DELIVERIES.c.delivered_at,
    )
    .join(RUNS, RUNS.c.id == PUBLICATIONS.c.run_id)
    .join(
        DELIVERIES,
        sa.and_(
            DELIVERIES.c.activity_id == PUBLICATIONS.c.activity_id,
            DELIVERIES.c.inbox == RUNS.c.inbox,
        ),
    )
    .where(
        PUBLICATIONS.c.target != FOLLOWERS_ONLY,
        sa.or_(
            sa.and_(
                PUBLICATIONS.c.state == State.QUEUED.value,
                DELIVERIES.c.state != DeliveryState.PENDING.value,
            ),
            sa.and_(
                PUBLICATIONS.c.state == State.HELD.value,
                DELIVERIES.c.state != DeliveryState.PARKED.value,
            ),
            # Settled by its delivery, which moved since (an operator's retry).
            sa.and_(
                PUBLICATIONS.c.state.in_(
                    [State.REFUSED.value, State.FAILED.value, State.CANCELLED.value]
                ),
                DELIVERIES.c.updated_at > PUBLICATIONS.c.updated_at,
                sa.not_(
                    sa.or_(
                        sa.and_(
                            PUBLICATIONS.c.state == State.CANCELLED.value,
                            DELIVERIES.c.state == DeliveryState.CANCELLED.value,
                        ),
                        sa.and_(
                            PUBLICATIONS.c.state != State.CANCELLED.value,
                            DELIVERIES.c.state == DeliveryState.FAILED.value,
                        ),
                    )
                ),
            ),
        ),
    )
)

#: Queued publications to the followers only: settled once nothing is pending
#: (what the queue holds for a dead follower's server does not keep them).
_FINISHED_FOLLOWERS = (
    sa.select(PUBLICATIONS.c.id)
    .where(
        PUBLICATIONS.c.state == State.QUEUED.value,
        PUBLICATIONS.c.target == FOLLOWERS_ONLY,
        ~sa.exists().where(
            DELIVERIES.c.activity_id == PUBLICATIONS.c.activity_id,
            DELIVERIES.c.state == DeliveryState.PENDING.value,
        ),
    )
)


def advance_from_deliveries(conn: sa.Connection, *, now: datetime, window: Window) -> int:
    """Publications whose delivery was answered, held or queued again."""
    moved = 0
    for row in conn.execute(_CHANGED_COMMUNITY.limit(BATCH)).all():
        state = row.delivery_state
        if state == DeliveryState.DELIVERED:
            server = server_for(row.software)
            if server.lookup_path is None or row.unverifiable:
                reason = row.unverifiable or NO_LOOKUP.format(server=_name(row.software))
                values = _values(State.UNVERIFIABLE, reason, now)
            else:
                sent = row.delivered_at or now
                values = {
                    **_values(State.SENT, None, now),
                    "sent_at": sent,
                    "checks": 0,
                    "due_at": window.next_check(sent, 0),
                }
        elif state == DeliveryState.FAILED:
            refused = row.last_status is not None and 400 <= row.last_status < 500
            values = _values(
                State.REFUSED if refused else State.FAILED, _first_line(row.last_error), now
            )
        elif state == DeliveryState.CANCELLED:
            values = _values(State.CANCELLED, "its delivery was cancelled", now)
        elif state == DeliveryState.PARKED:
            values = _values(State.HELD, _first_line(row.last_error), now)
        else:
            values = _values(State.QUEUED, None, now)  # the queue let it go
        moved += _move(conn, row.id, State(row.state), values)
    for (publication_id,) in conn.execute(_FINISHED_FOLLOWERS.limit(BATCH)).all():
        moved += _move(
            conn,
            publication_id,
            State.QUEUED,
            _values(State.UNVERIFIABLE, "sent to the followers only: nothing to ask", now),
        )
    return moved


# -- lookups ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """A sent publication due for a lookup."""

    id: str
    kind: str
    target: str
    host: str
    software: str | None
    actor: str
    sent_at: datetime
    checks: int
    sends: int
    parent_id: str | None
    created_at: datetime


_DUE_CHECKS = (
    sa.select(
        PUBLICATIONS.c.id,
        PUBLICATIONS.c.kind,
        PUBLICATIONS.c.target,
        RUNS.c.software,
        PUBLICATIONS.c.actor,
        PUBLICATIONS.c.sent_at,
        PUBLICATIONS.c.checks,
        PUBLICATIONS.c.sends,
        PUBLICATIONS.c.parent_id,
        PUBLICATIONS.c.created_at,
    )
    .join(RUNS, RUNS.c.id == PUBLICATIONS.c.run_id)
    .where(
        PUBLICATIONS.c.state == State.SENT.value,
        PUBLICATIONS.c.due_at <= _NOW,
    )
    .order_by(PUBLICATIONS.c.due_at, PUBLICATIONS.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer()))
)


def due_checks(conn: sa.Connection, *, now: datetime, limit: int = BATCH) -> list[Check]:
    return [
        Check(host=urlsplit(row.target).netloc, **row._asdict())
        for row in conn.execute(_DUE_CHECKS, {"now": now, "limit": limit})
    ]


@dataclass(frozen=True, slots=True)
class Rules:
    window: Window
    #: Re-publications of a missing item back off like deliveries, to this horizon.
    policy: Policy


def record_check(
    conn: sa.Connection, check: Check, answer: Answer, *, now: datetime, rules: Rules
) -> State:
    """What one lookup showed; returns the publication's new state."""
    if isinstance(answer, Found):
        values = {**_values(State.CONFIRMED, None, now), "confirmed_at": now}
    elif isinstance(answer, Unavailable):
        _unverifiable_target(conn, check.target, answer.reason, now)
        return State.UNVERIFIABLE
    elif isinstance(answer, Later):
        values = {"due_at": now + LATER, "reason": answer.reason, "updated_at": now}
    else:
        assert isinstance(answer, NotFound)
        due = rules.window.next_check(check.sent_at, check.checks + 1)
        if due is not None:
            values = {"checks": check.checks + 1, "due_at": due, "updated_at": now}
        else:
            values = _missing(conn, check, answer, now=now, rules=rules)
    _move(conn, check.id, State.SENT, values)
    return State(values.get("state", State.SENT))


def _unverifiable_target(conn: sa.Connection, target: str, reason: str, now: datetime) -> None:
    """The target answers no lookups (its API is off, or needs a login): stop asking.

    Its sent publications, and what its runs deliver from now on, become
    unverifiable; their replies go at once. A new run asks again.
    """
    runs = sa.select(RUNS.c.id).where(RUNS.c.target == target)
    conn.execute(sa.update(RUNS).where(RUNS.c.target == target).values(unverifiable=reason))
    conn.execute(
        sa.update(PUBLICATIONS)
        .where(PUBLICATIONS.c.state == State.SENT.value, PUBLICATIONS.c.run_id.in_(runs))
        .values(_values(State.UNVERIFIABLE, reason, now))
    )


def _missing(
    conn: sa.Connection, check: Check, answer: NotFound, *, now: datetime, rules: Rules
) -> dict[str, Any]:
    """Not found after the window: why, probably, and when to publish it again.

    The target did not say (PieFed answers 200 to what it refuses), so the
    reason is inferred from what we know of the server and is said as such.
    """
    after = f"not found {int(rules.window.seconds)} s after a 2xx ({answer.reason})"
    server = server_for(check.software)
    if check.kind == "post" and server.new_account_limit is not None:
        limit = server.new_account_limit
        created = _actor_created(conn, check.actor)
        if created is not None and check.sent_at < created + limit.age:
            due = created + limit.age + MARGIN
            return {
                **_values(State.MISSING, None, now),
                "due_at": due,
                "reason": (
                    f"{after}; probably the new-account limit ({limit.source}): "
                    f"@{check.actor} was created {_iso(created)}; published again at {_iso(due)}"
                ),
            }
    if check.parent_id is not None:
        parent = conn.execute(
            sa.select(PUBLICATIONS.c.state).where(PUBLICATIONS.c.id == check.parent_id)
        ).scalar()
        if parent not in HOLDS_REPLIES:
            return {
                **_values(State.WAITING, None, now),
                "reason": f"{after}; probably because its parent is not there: "
                "published again once the parent is confirmed",
            }
    due = next_attempt_at(
        policy=rules.policy, attempts=check.sends, now=now, first_attempt_at=check.created_at
    )
    if due is None:
        return {
            **_values(State.MISSING, None, now),
            "reason": f"{after}; gave up after {check.sends} publications",
        }
    return {
        **_values(State.MISSING, None, now),
        "due_at": due,
        "reason": f"{after}; reason unknown: published again at {_iso(due)}",
    }


# -- releases -------------------------------------------------------------------------

_PARENT = PUBLICATIONS.alias("parent")

#: Waiting or missing publications that may go now: due, and their parent held.
_RELEASABLE = (
    sa.select(
        PUBLICATIONS.c.id,
        PUBLICATIONS.c.actor,
        PUBLICATIONS.c.activity_id,
        PUBLICATIONS.c.state,
        PUBLICATIONS.c.sends,
        PUBLICATIONS.c.run_id,
        RUNS.c.inbox,
    )
    .join(RUNS, RUNS.c.id == PUBLICATIONS.c.run_id)
    .join(_PARENT, _PARENT.c.id == PUBLICATIONS.c.parent_id, isouter=True)
    .where(
        # A paused run holds what it has not sent yet; a cancelled one sends nothing.
        RUNS.c.state == "active",
        sa.or_(
            sa.and_(
                PUBLICATIONS.c.state == State.WAITING.value,
                sa.or_(PUBLICATIONS.c.due_at.is_(None), PUBLICATIONS.c.due_at <= _NOW),
            ),
            sa.and_(
                PUBLICATIONS.c.state == State.MISSING.value,
                PUBLICATIONS.c.due_at <= _NOW,
            ),
        ),
        sa.or_(_PARENT.c.id.is_(None), _PARENT.c.state.in_([s.value for s in HOLDS_REPLIES])),
    )
    .order_by(PUBLICATIONS.c.created_at, PUBLICATIONS.c.id)
    .limit(BATCH)
)

#: Waiting publications whose parent will not be stored without an operator.
_ORPHANED = (
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
_UNBLOCKED = (
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
    for row in conn.execute(_ORPHANED.limit(BATCH)).all():
        _move(
            conn,
            row.id,
            State.WAITING,
            _values(State.PARKED, f"waits for {row.parent}, which is {row.why}", now),
        )
    for (publication_id,) in conn.execute(_UNBLOCKED.limit(BATCH)).all():
        _move(
            conn,
            publication_id,
            State.PARKED,
            _values(State.WAITING, "waits for its parent to be confirmed", now),
        )
    rows = conn.execute(_RELEASABLE, {"now": now}).all()
    for row in rows:
        send(conn, row, now=now, urls=urls)
    return len(rows)


def send(conn: sa.Connection, row: Any, *, now: datetime, urls: Urls) -> str:
    """Queue a publication's activity: the first time as built, later with a new id.

    Lemmy records an activity id before it processes the activity, so a
    repeated id is dropped unread; the object (and its id) stays the same.
    """
    activity = (
        conn.execute(sa.select(ACTIVITIES).where(ACTIVITIES.c.id == row.activity_id))
        .mappings()
        .one()
    )
    object_id = activity["object_id"]
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
        )
    _move(
        conn,
        row.id,
        State(row.state),
        {
            **_values(State.QUEUED, None, now),
            "activity_id": activity_id,
            "sends": row.sends + 1,
            "checks": 0,
        },
    )
    return activity_id


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
    created = _actor_created(conn, actor)
    if created is None or now >= created + limit.age:
        return None
    due = created + limit.age + MARGIN
    return due, (
        f"{server.name} takes {limit.posts} posts from an account younger than "
        f"{_hours(limit.age)} ({limit.source}); @{actor} was created {_iso(created)}, "
        f"so this post waits until {_iso(due)}"
    )


# -- operators ------------------------------------------------------------------------


def retry_unconfirmed(conn: sa.Connection, *, now: datetime, run_id: int | None = None) -> int:
    """Missing, refused, failed, parked and waiting publications go again, now.

    Items whose parent is not confirmed still wait for it; the rest are
    published again by the job's next release, with new activity ids.
    """
    from mirror.publish.states import UNCONFIRMED

    condition = [PUBLICATIONS.c.state.in_([s.value for s in UNCONFIRMED])]
    if run_id is not None:
        condition.append(PUBLICATIONS.c.run_id == run_id)
    result = conn.execute(
        sa.update(PUBLICATIONS)
        .where(*condition)
        .values(
            state=State.WAITING.value,
            due_at=now,
            reason="sent again by an operator",
            updated_at=now,
        )
    )
    return result.rowcount or 0


def cancel_unsent(conn: sa.Connection, run_id: int, now: datetime) -> int:
    """A cancelled run's publications that were still to be sent will not be."""
    result = conn.execute(
        sa.update(PUBLICATIONS)
        .where(
            PUBLICATIONS.c.run_id == run_id,
            PUBLICATIONS.c.state.in_(
                [State.WAITING.value, State.PARKED.value, State.MISSING.value]
            ),
        )
        .values(_values(State.CANCELLED, "its run was cancelled", now))
    )
    return result.rowcount or 0


def counts(conn: sa.Connection, *, run_id: int | None = None) -> dict[str, int]:
    """Publications by state (every state named, zeros included)."""
    query = sa.select(PUBLICATIONS.c.state, sa.func.count()).group_by(PUBLICATIONS.c.state)
    if run_id is not None:
        query = query.where(PUBLICATIONS.c.run_id == run_id)
    found = dict(conn.execute(query).all())
    return {state.value: int(found.get(state.value, 0)) for state in State}


def open_count(conn: sa.Connection, *, run_id: int | None = None) -> int:
    """Publications the job will still move by itself (not those missing and given up)."""
    query = (
        sa.select(sa.func.count())
        .select_from(PUBLICATIONS)
        .where(
            sa.or_(
                PUBLICATIONS.c.state.in_(
                    [State.WAITING.value, State.QUEUED.value, State.SENT.value]
                ),
                sa.and_(
                    PUBLICATIONS.c.state == State.MISSING.value,
                    PUBLICATIONS.c.due_at.is_not(None),
                ),
            )
        )
    )
    if run_id is not None:
        query = query.where(PUBLICATIONS.c.run_id == run_id)
    return int(conn.scalar(query) or 0) + _moves_due(conn, run_id)


def _moves_due(conn: sa.Connection, run_id: int | None) -> int:
    """Rows the job's next cycle will move: a delivery answered since, a parent unblocked.

    Until it has moved them, the run is not done, even if nothing is open.
    """
    total = 0
    for query in (_CHANGED_COMMUNITY, _FINISHED_FOLLOWERS, _UNBLOCKED, _ORPHANED):
        if run_id is not None:
            query = query.where(PUBLICATIONS.c.run_id == run_id)
        total += int(conn.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0)
    return total


def not_confirmed(
    conn: sa.Connection, *, run_id: int | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """What is not confirmed and why, grouped by (state, kind, reason), largest first.

    An operator reads one line for the 23 posts a new-account limit holds,
    not 23 lines.
    """
    shown = [
        s.value
        for s in State
        if s not in (State.CONFIRMED, State.UNVERIFIABLE, State.QUEUED, State.SENT)
    ]
    count = sa.func.count().label("count")
    query = (
        sa.select(
            PUBLICATIONS.c.state,
            PUBLICATIONS.c.kind,
            PUBLICATIONS.c.reason,
            count,
            sa.func.min(PUBLICATIONS.c.due_at).label("next_at"),
            sa.func.min(PUBLICATIONS.c.item_id).label("example"),
        )
        .where(PUBLICATIONS.c.state.in_(shown))
        .group_by(PUBLICATIONS.c.state, PUBLICATIONS.c.kind, PUBLICATIONS.c.reason)
        .order_by(count.desc(), PUBLICATIONS.c.state, PUBLICATIONS.c.kind)
        .limit(limit)
    )
    if run_id is not None:
        query = query.where(PUBLICATIONS.c.run_id == run_id)
    return [
        {**row._asdict(), "next_at": _iso(row.next_at) if row.next_at else None}
        for row in conn.execute(query)
    ]


# -- helpers ----------------------------------------------------------------------------


def _values(state: State, reason: str | None, now: datetime) -> dict[str, Any]:
    return {"state": state.value, "reason": reason, "due_at": None, "updated_at": now}


def _move(conn: sa.Connection, publication_id: str, source: State, values: dict[str, Any]) -> int:
    """Change a row still in ``source`` (another step may have moved it meanwhile)."""
    result = conn.execute(
        sa.update(PUBLICATIONS)
        .where(PUBLICATIONS.c.id == publication_id, PUBLICATIONS.c.state == source.value)
        .values(**values)
    )
    return result.rowcount or 0


def _actor_created(conn: sa.Connection, username: str) -> datetime | None:
    # The actor document's `published` is its created_at (mirror.vocab.actor).
    return conn.scalar(sa.select(ACTORS.c.created_at).where(ACTORS.c.username == username))


def _first_line(text: str | None) -> str | None:
    return text.strip().splitlines()[0][:500] if text and text.strip() else text


def _name(software: str | None) -> str:
    return software or "the target's software (unknown)"


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _hours(age: timedelta) -> str:
    return f"{age.total_seconds() / 3600:g} h"

