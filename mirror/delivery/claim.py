"""Claiming due deliveries with a lease.

Claiming goes host by host. A worker first locks the hosts it will serve
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent workers spread
over hosts instead of waiting; SQLite has one writer at a time anyway),
then leases at most ``per_host - in_flight`` due rows of each, skipping
rows that an earlier undelivered row to the same host blocks: one about the
same object (Create before Update before Delete) or about the object this
one depends on (a parent before its replies). The lease and the attempt
start are written in the claim's transaction; the outcome in a later one.

A retry sends the activity id the last attempt sent, whatever cut that
attempt short (a crash, a timeout, a transient error): it may have arrived,
and a receiver recognises a repeat only by its id. Only after the receiver
refused the id (an answer that failed the delivery, queued again by an
operator or a re-run) is the activity rebuilt from its recipe with a new id.

A paced row (one that names a pace: a paced run's post) is claimed only
when its lane to that host is free, one per lane at a time, and the claim
moves the lane's time on by the pace's interval. The lane is written in
the claim's transaction under the host's lock, so workers never take the
same slot twice. While no lane waits for its next slot (an unpaced queue,
or every lane's slot come) the claim runs the statements without lane
checks, which plan as they did before paces existed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from mirror.db.bulk import bulk_insert, rows_params, rows_table
from mirror.delivery import hosts as health
from mirror.delivery.enqueue import new_activity_id
from mirror.delivery.states import State, stored_in
from mirror.delivery.tables import ACTIVITIES, DELIVERIES, HOSTS, PACES
from mirror.vocab.activities import build
from mirror.vocab.ids import Urls

#: Hosts considered per claim.
HOSTS_PER_CLAIM = 64


@dataclass(frozen=True, slots=True)
class Claimed:
    """A leased delivery, ready to send."""

    id: int
    inbox: str
    host: str
    actor: str
    #: The id of the activity this attempt sends (a retry's is the last attempt's).
    activity_id: str
    body: bytes
    #: This attempt sends an id an earlier attempt sent, which may have
    #: arrived: a receiver that answers "duplicate" holds it already.
    repeat: bool
    attempts: int
    unknown_errors: int
    first_attempt_at: datetime


@dataclass(frozen=True, slots=True)
class Limits:
    per_host: int
    interval_ms: int
    lease_s: int


def _free(now: sa.BindParameter[Any]) -> sa.ColumnElement[bool]:
    d = DELIVERIES
    return sa.or_(d.c.locked_until.is_(None), d.c.locked_until <= now)


# The claim's statements are built once: constructing SQLAlchemy expressions
# on every claim cost more than running them.
_NOW = sa.bindparam("now", type_=DELIVERIES.c.next_attempt_at.type)


def _lane_free(d: sa.Table | sa.Alias) -> sa.ColumnElement[bool]:
    """The row keeps no pace, or its lane's next slot has come."""
    busy = sa.exists().where(
        PACES.c.id == d.c.pace_id, PACES.c.host == d.c.host, PACES.c.next_at > _NOW
    )
    return sa.or_(d.c.pace_id.is_(None), ~busy)


def _hosts_with_work(paced: bool) -> sa.Select[Any]:
    """Hosts with due work, least recently served first; on PostgreSQL hosts that
    another worker is serving are skipped rather than waited for.

    ``paced``: some lane is busy, and a host whose due rows all wait for their
    lanes has nothing to give now (taking it would crowd out hosts that have).
    """
    due = [
        DELIVERIES.c.host == HOSTS.c.host,
        stored_in(DELIVERIES.c.state, State.PENDING),
        DELIVERIES.c.next_attempt_at <= _NOW,
        _free(_NOW),
    ]
    if paced:
        due.append(_lane_free(DELIVERIES))
    return (
        sa.select(HOSTS)
        .where(
            sa.or_(HOSTS.c.breaker_open_until.is_(None), HOSTS.c.breaker_open_until <= _NOW),
            sa.exists().where(*due),
        )
        .order_by(HOSTS.c.last_request_at.asc().nulls_first(), HOSTS.c.host)
        .limit(HOSTS_PER_CLAIM)
        .with_for_update(skip_locked=True)
    )


_HOSTS_WITH_WORK = _hosts_with_work(paced=False)
_HOSTS_WITH_PACED_WORK = _hosts_with_work(paced=True)

#: Is any lane waiting for its next slot? Only then do claims check lanes:
#: the check changes PostgreSQL's plans for the worse (estimates high
#: enough to JIT-compile a query that runs in a tenth of a millisecond),
#: and unpaced queues, the bulk of the traffic, need none of it.
_ANY_LANE_BUSY = sa.select(PACES.c.id).where(PACES.c.next_at > _NOW).limit(1)

#: Requests in flight per host. Only pending rows hold leases: every other
#: state clears them, so the partial index ix_delivery_leased answers this.
_IN_FLIGHT = (
    sa.select(DELIVERIES.c.host, sa.func.count())
    .where(
        DELIVERIES.c.host.in_(sa.bindparam("hosts", expanding=True)),
        DELIVERIES.c.locked_by.is_not(None),
        DELIVERIES.c.locked_until > _NOW,
    )
    .group_by(DELIVERIES.c.host)
)


#: What a lease and a send need of a claimed row; every column read costs
#: its conversion (times most) on each claim.
_CLAIM_COLUMNS = (
    "id",
    "activity_id",
    "inbox",
    "host",
    "attempts",
    "unknown_errors",
    "first_attempt_at",
    "sent_activity_id",
    "pace_id",
)

#: A paced row claimed up to this fraction of an interval after its lane's
#: time keeps the lane's schedule (a worker polls, so it is rarely on time to
#: the millisecond, and a run's rate must not drift by a poll per post). One
#: claimed later than that comes after a gap (an outage, a crash, a pause):
#: the schedule starts again from now, so the backlog goes at the pace.
PACE_SLACK = 0.5


def _claimable_statement(paced: bool) -> sa.Select[Any]:
    d = DELIVERIES
    b = DELIVERIES.alias("earlier")

    def earlier_outstanding(key: sa.ColumnElement[Any]) -> sa.Exists:
        # Two EXISTS rather than one with an OR: each is a probe of
        # ix_delivery_order (host, ordering_key, id); the OR made PostgreSQL
        # scan every earlier row of the host for every candidate.
        return sa.exists().where(
            b.c.host == d.c.host,
            b.c.ordering_key == key,
            b.c.id < d.c.id,
            stored_in(b.c.state, State.PENDING, State.PARKED),
        )

    return (
        sa.select(*(d.c[name] for name in _CLAIM_COLUMNS))
        .where(
            d.c.host == sa.bindparam("host"),
            stored_in(d.c.state, State.PENDING),
            d.c.next_attempt_at <= _NOW,
            _free(_NOW),
            ~earlier_outstanding(d.c.ordering_key),
            ~earlier_outstanding(d.c.depends_on),
            # A paced row waits while its lane's next slot is still to come.
            *([_lane_free(d)] if paced else []),
        )
        .order_by(d.c.next_attempt_at, d.c.id)
        .limit(sa.bindparam("quota", type_=sa.Integer()))
    )


#: A host's due rows that nothing earlier to the same host blocks (and, with
#: some lane busy, that no busy lane holds back).
_CLAIMABLE = _claimable_statement(paced=False)
_CLAIMABLE_PACED = _claimable_statement(paced=True)


def claim(
    conn: sa.Connection,
    *,
    worker: str,
    now: datetime,
    limit: int,
    limits: Limits,
    urls: Urls,
    bodies: dict[str, bytes] | None = None,
) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries for ``worker`` (in the caller's transaction)."""
    if limit <= 0:
        return []
    paced = conn.execute(_ANY_LANE_BUSY, {"now": now}).first() is not None
    if paced and conn.dialect.name == "postgresql":
        # The lane checks' estimates pass jit_above_cost: compiling took
        # 15-60 ms of every claim, for plans that run in well under one.
        conn.exec_driver_sql("SET LOCAL jit = off")
    hosts_with_work = _HOSTS_WITH_PACED_WORK if paced else _HOSTS_WITH_WORK
    claimable = _CLAIMABLE_PACED if paced else _CLAIMABLE
    locked = conn.execute(hosts_with_work, {"now": now}).mappings().all()
    if not locked:
        return []
    in_flight: dict[str, int] = dict(
        conn.execute(_IN_FLIGHT, {"hosts": [h["host"] for h in locked], "now": now}).all()
    )
    chosen: list[sa.RowMapping] = []
    served: list[str] = []
    lanes: set[tuple[int, str]] = set()
    for host in locked:
        if len(chosen) >= limit:
            break
        quota = _quota(host, now, limits, in_flight.get(host["host"], 0))
        if quota <= 0:
            continue
        rows = (
            conn.execute(
                claimable,
                {"host": host["host"], "now": now, "quota": min(quota, limit - len(chosen))},
            )
            .mappings()
            .all()
        )
        rows = _one_per_lane(rows, host["host"], lanes)
        if rows:
            chosen.extend(rows)
            served.append(host["host"])
    if not chosen:
        return []
    if lanes:
        _take_slots(conn, lanes, now)
    return _lease(
        conn, chosen, served, worker=worker, now=now, limits=limits, urls=urls, bodies=bodies
    )


def _one_per_lane(
    rows: list[sa.RowMapping], host: str, lanes: set[tuple[int, str]]
) -> list[sa.RowMapping]:
    """The rows, with one paced row per free lane: each claim takes one slot of it."""
    kept = []
    for row in rows:
        pace = row["pace_id"]
        if pace is not None:
            if (pace, host) in lanes:
                continue  # its slot is after this one's
            lanes.add((pace, host))
        kept.append(row)
    return kept


def next_slot(next_at: datetime | None, interval_s: float, now: datetime) -> datetime:
    """A lane's time after a claim at ``now`` (at or after ``next_at``, its time until now)."""
    step = timedelta(seconds=interval_s)
    if next_at is not None and now - next_at <= step * PACE_SLACK:
        return next_at + step  # on schedule, give or take a poll
    return now + step  # the first claim, or one after a gap: a new schedule from now


def _take_slots(conn: sa.Connection, lanes: set[tuple[int, str]], now: datetime) -> None:
    """Move each lane a claimed row took on by its interval."""
    for pace, host in sorted(lanes):
        lane = conn.execute(
            sa.select(PACES.c.interval_s, PACES.c.next_at).where(
                PACES.c.id == pace, PACES.c.host == host
            )
        ).first()
        if lane is None:
            continue  # no lane was made for it: unpaced
        conn.execute(
            sa.update(PACES)
            .where(PACES.c.id == pace, PACES.c.host == host)
            .values(next_at=next_slot(lane.next_at, lane.interval_s, now))
        )


def _quota(host: Any, now: datetime, limits: Limits, in_flight: int) -> int:
    breaker = health.breaker_state(host, now)
    if breaker == "open":
        return 0
    last = host["last_request_at"]
    if (
        limits.interval_ms
        and last is not None
        and now - last < timedelta(milliseconds=limits.interval_ms)
    ):
        return 0
    quota = limits.per_host - in_flight
    if breaker == "half_open" or limits.interval_ms:
        # One probe after the cool-off; and pacing sends one request at a time.
        quota = min(quota, 1 if in_flight == 0 else 0)
    return quota


#: Each activity's actor and its stored JSON as text (none for bodies already
#: cached). The text is sent as it is: decoding and re-encoding every body
#: cost more than the rest of a claim.
_ACTIVITY_BODIES = sa.select(
    ACTIVITIES.c.id,
    ACTIVITIES.c.actor,
    sa.case(
        (ACTIVITIES.c.id.in_(sa.bindparam("cached", expanding=True)), None),
        else_=sa.cast(ACTIVITIES.c.json, sa.Text),
    ),
).where(ACTIVITIES.c.id.in_(sa.bindparam("ids", expanding=True)))

#: Each leased row's own values: its id, the activity id sent, its first attempt.
_LEASE_ROWS = {
    "id": DELIVERIES.c.id.type,
    "sent": DELIVERIES.c.sent_activity_id.type,
    "first": DELIVERIES.c.first_attempt_at.type,
}


@lru_cache(maxsize=4)
def _lease_statement(dialect: Dialect) -> sa.Update:
    rows = rows_table(dialect, _LEASE_ROWS)
    now = sa.bindparam("now", type_=DELIVERIES.c.updated_at.type)
    return (
        sa.update(DELIVERIES)
        .where(DELIVERIES.c.id == rows.c.id)
        .values(
            locked_by=sa.bindparam("worker", type_=DELIVERIES.c.locked_by.type),
            locked_until=sa.bindparam("until", type_=DELIVERIES.c.locked_until.type),
            attempts=DELIVERIES.c.attempts + 1,
            attempt_started_at=now,
            first_attempt_at=rows.c.first,
            sent_activity_id=rows.c.sent,
            updated_at=now,
        )
    )


_SERVED = (
    sa.update(HOSTS)
    .where(HOSTS.c.host.in_(sa.bindparam("hosts", expanding=True)))
    .values(last_request_at=sa.bindparam("now", type_=HOSTS.c.last_request_at.type))
)


def _lease(
    conn: sa.Connection,
    rows: list[sa.RowMapping],
    hosts: list[str],
    *,
    worker: str,
    now: datetime,
    limits: Limits,
    urls: Urls,
    bodies: dict[str, bytes] | None,
) -> list[Claimed]:
    cache = bodies if bodies is not None else {}
    actors: dict[str, str] = {}
    for activity_id, actor, text in conn.execute(
        _ACTIVITY_BODIES,
        {
            "ids": list({row["activity_id"] for row in rows}),
            "cached": list({r["activity_id"] for r in rows if r["activity_id"] in cache}) or [""],
        },
    ):
        actors[activity_id] = actor
        if text is not None:
            cache[activity_id] = text.encode()
    updates = []
    variants = []
    plan = []
    for row in rows:
        repeat = row["attempts"] > 0 and row["sent_activity_id"] is not None
        if row["attempts"] == 0 or repeat:
            # The first attempt, or a retry of one that may have arrived (a
            # crash, a timeout, a transient error): the same id, so that the
            # receiver can tell a repeat.
            sent = row["sent_activity_id"] or row["activity_id"]
        else:
            # The receiver answered the last id with a refusal (it may have
            # recorded it, as Lemmy 1.0 does before checking): an operator's
            # retry sends the activity anew.
            sent = _new_attempt_id(conn, row["activity_id"], urls, now, variants, cache)
        updates.append({"id": row["id"], "sent": sent, "first": row["first_attempt_at"] or now})
        plan.append((row, sent, repeat))
    if variants:
        bulk_insert(conn, ACTIVITIES, variants)
    until = now + timedelta(seconds=limits.lease_s)
    conn.execute(
        _lease_statement(conn.dialect),
        {
            **rows_params(conn.dialect, _LEASE_ROWS, updates),
            "worker": worker,
            "until": until,
            "now": now,
        },
    )
    conn.execute(_SERVED, {"hosts": hosts, "now": now})
    missing = {sent for _, sent, _ in plan if sent not in cache}
    if missing:
        # A repeat of an attempt that had a new id.
        for activity_id, text in conn.execute(
            _ACTIVITY_BODIES, {"ids": list(missing), "cached": [""]}
        ):
            cache[activity_id] = text.encode()
    return [
        Claimed(
            id=row["id"],
            inbox=row["inbox"],
            host=row["host"],
            actor=actors[row["activity_id"]],
            activity_id=sent,
            body=cache[sent],
            repeat=repeat,
            attempts=row["attempts"] + 1,
            unknown_errors=row["unknown_errors"],
            first_attempt_at=row["first_attempt_at"] or now,
        )
        for row, sent, repeat in plan
    ]


def _new_attempt_id(
    conn: sa.Connection,
    activity_id: str,
    urls: Urls,
    now: datetime,
    variants: list[dict[str, Any]],
    cache: dict[str, bytes],
) -> str:
    """Lemmy 1.0 records an activity id before checking it: a refused id is spent.

    The activity is rebuilt from its recipe with the new id (the object and
    its id stay the same); an activity without a recipe is sent as it was.
    """
    original = (
        conn.execute(sa.select(ACTIVITIES).where(ACTIVITIES.c.id == activity_id)).mappings().one()
    )
    if not original["recipe"]:
        return activity_id
    sent = new_activity_id()
    document = build(urls, original["recipe"], activity_id=sent)
    variants.append(
        {
            **{k: original[k] for k in ("actor", "type", "object_id", "depends_on", "recipe")},
            "id": sent,
            "public": False,
            "json": document,
            "created_at": now,
        }
    )
    cache[sent] = json.dumps(document, separators=(",", ":")).encode()
    return sent
