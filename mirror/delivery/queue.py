"""The delivery queue's SQL: publish and enqueue, claim with a lease, record outcomes.

Claiming goes host by host. A worker first locks the hosts it will serve
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent workers spread
over hosts instead of waiting; SQLite has one writer at a time anyway),
then leases at most ``per_host - in_flight`` due rows of each, skipping
rows that an earlier undelivered row to the same host blocks: one about the
same object (Create before Update before Delete) or about the object this
one depends on (a parent before its replies). The lease and the attempt
start are written in the claim's transaction; the outcome in a later one.
A row whose attempt started but never finished was cut short (a crash):
it is repeated with the same activity id. Any other retry gets a new id,
rebuilt from the activity's recipe.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from mirror.db.base import table_of
from mirror.db.bulk import bulk_insert, mostly_true, rows_params, rows_table
from mirror.db.models import Activity, Delivery, DeliveryHost, Follower, ReceivedActivity
from mirror.delivery import hosts as health
from mirror.delivery.backoff import Policy, next_attempt_at
from mirror.delivery.outcome import Delivered, Failed, Outcome, Retry, classify
from mirror.delivery.states import State, operator_state_sql, stored_in
from mirror.errors import MirrorError
from mirror.vocab.activities import build
from mirror.vocab.ids import Urls

DELIVERIES = table_of(Delivery)
HOSTS = table_of(DeliveryHost)
ACTIVITIES = table_of(Activity)
#: Lemmy reads at most 256 KiB of an inbox POST (actix-web's default).
MAX_ACTIVITY_BYTES = 256 * 1024
PARKED_DEAD = "parked: host dead since"
PARKED_BEHIND = "parked: waits for"
PARKED_PAUSED = "parked: run paused"
PARKED_REFUSED = "parked: the host refuses"
#: Hosts considered per claim.
HOSTS_PER_CLAIM = 64


class TooLarge(MirrorError):
    """An activity too large for the receiver; refused before anything is sent."""


def new_activity_id() -> str:
    return uuid.uuid4().hex


def host_of(inbox: str) -> str:
    """The server an inbox belongs to (host:port when a port is given)."""
    return urlsplit(inbox).netloc.lower()


# -- publishing -----------------------------------------------------------------


class Outbox:
    """Activities published together: each built at once, all written at ``flush``.

    A backfill publishes thousands of activities in one transaction; an
    insert per activity and a host lookup and an insert per delivery batch
    cost a round trip each (20,000 took 18 s on PostgreSQL). Rows go in in
    the order of the ``publish`` calls, so the queue's per-object order
    (row ids) is the one publishing them one at a time gives.
    """

    def __init__(self, conn: sa.Connection, *, urls: Urls) -> None:
        self.conn = conn
        self.urls = urls
        self._activities: list[dict[str, Any]] = []
        self._deliveries: list[_Enqueued] = []

    def __len__(self) -> int:
        return len(self._activities)

    def publish(
        self,
        *,
        username: str,
        recipe: dict[str, Any],
        inboxes: Iterable[str],
        now: datetime,
        public: bool = False,
        depends_on: str | None = None,
        activity_id: str | None = None,
        due_at: datetime | None = None,
        run_id: int | None = None,
    ) -> str:
        """Build the activity (refused now if too large); returns its id.

        ``due_at`` schedules the first attempt (a paced backfill); default now.
        """
        activity_id = activity_id or new_activity_id()
        document = build(self.urls, recipe, activity_id=activity_id)
        size = len(json.dumps(document, separators=(",", ":")).encode())
        if size > MAX_ACTIVITY_BYTES:
            raise TooLarge(
                f"{document['type']} {document['id']} is {size} bytes; receivers take at most "
                f"{MAX_ACTIVITY_BYTES}"
            )
        obj = document.get("object")
        object_id = (
            obj if isinstance(obj, str) else obj.get("id") if isinstance(obj, dict) else None
        )
        self._activities.append(
            {
                "id": activity_id,
                "actor": username,
                "type": document["type"],
                "object_id": object_id,
                "depends_on": depends_on,
                "recipe": recipe,
                "public": public,
                "json": document,
                "created_at": now,
                "run_id": run_id,
            }
        )
        self._deliveries.append(
            _Enqueued(
                activity_id, object_id or document["id"], depends_on, tuple(inboxes), now, due_at
            )
        )
        return activity_id

    def flush(self) -> None:
        """Record the activities (served at their ids) and queue their deliveries."""
        if not self._activities:
            return
        bulk_insert(self.conn, ACTIVITIES, self._activities)
        _enqueue(self.conn, self._deliveries)
        self._activities, self._deliveries = [], []


def publish(conn: sa.Connection, *, urls: Urls, **activity: Any) -> str:
    """Build one activity, record it and enqueue it: an Outbox of one.

    ``activity`` holds :meth:`Outbox.publish`'s arguments.
    """
    outbox = Outbox(conn, urls=urls)
    activity_id = outbox.publish(**activity)
    outbox.flush()
    return activity_id


@dataclass(frozen=True, slots=True)
class _Enqueued:
    activity_id: str
    ordering_key: str
    depends_on: str | None
    inboxes: Iterable[str]
    now: datetime
    due_at: datetime | None


_HOSTS_DEAD_SINCE = sa.select(HOSTS.c.host, HOSTS.c.dead_since).where(
    HOSTS.c.host.in_(sa.bindparam("hosts", expanding=True))
)
#: Hosts looked up per statement.
_HOSTS_PER_LOOKUP = 500


def enqueue(
    conn: sa.Connection,
    *,
    activity_id: str,
    ordering_key: str,
    depends_on: str | None,
    inboxes: Iterable[str],
    now: datetime,
    due_at: datetime | None = None,
) -> int:
    """One row per inbox; an (activity, inbox) already queued is left alone."""
    return _enqueue(
        conn, [_Enqueued(activity_id, ordering_key, depends_on, tuple(inboxes), now, due_at)]
    )


def _enqueue(conn: sa.Connection, batch: Sequence[_Enqueued]) -> int:
    targets = [sorted(set(entry.inboxes)) for entry in batch]
    hosts = sorted({host_of(t) for inboxes in targets for t in inboxes})
    known: dict[str, datetime | None] = {}
    for start in range(0, len(hosts), _HOSTS_PER_LOOKUP):
        chunk = hosts[start : start + _HOSTS_PER_LOOKUP]
        known.update(
            {host: since for host, since in conn.execute(_HOSTS_DEAD_SINCE, {"hosts": chunk})}
        )
    # Claims look for work host by host, so every destination has a row.
    # Inserted only when missing: an insert that conflicts still costs a
    # statement per enqueue (a backfill enqueues to the same host all day).
    missing = [{"host": h, "consecutive_failures": 0} for h in hosts if h not in known]
    bulk_insert(conn, HOSTS, missing, ignore_conflicts=True)
    dead = {host: since for host, since in known.items() if since is not None}
    rows = []
    for entry, inboxes in zip(batch, targets, strict=True):
        for inbox in inboxes:
            host = host_of(inbox)
            parked = host in dead
            rows.append(
                {
                    "activity_id": entry.activity_id,
                    "inbox": inbox,
                    "host": host,
                    "ordering_key": entry.ordering_key,
                    "depends_on": entry.depends_on,
                    "state": State.PARKED if parked else State.PENDING,
                    "attempts": 0,
                    "unknown_errors": 0,
                    "next_attempt_at": entry.due_at or entry.now,
                    "last_error": f"{PARKED_DEAD} {dead[host].isoformat()}" if parked else None,
                    "created_at": entry.now,
                    "updated_at": entry.now,
                }
            )
    bulk_insert(conn, DELIVERIES, rows, ignore_conflicts=True)
    return len(rows)


def refresh_statistics(conn: sa.Connection) -> None:
    """After enqueueing many rows at once, let PostgreSQL's planner see them.

    Until autovacuum's next ANALYZE (up to a minute or more), a freshly filled
    queue looks empty to the planner, which then checks a claim's ordering
    rule by scanning every earlier row of the host for every candidate:
    seconds per claim at ten thousand rows instead of milliseconds.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ANALYZE delivery, activity")


# -- claiming -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A leased delivery, ready to send."""

    id: int
    inbox: str
    host: str
    actor: str
    #: The id of the activity this attempt sends (a retry's is new).
    activity_id: str
    body: bytes
    #: This attempt repeats one that was cut short (same activity id).
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

#: Hosts with due work, least recently served first; on PostgreSQL hosts that
#: another worker is serving are skipped rather than waited for.
_HOSTS_WITH_WORK = (
    sa.select(HOSTS)
    .where(
        sa.or_(HOSTS.c.breaker_open_until.is_(None), HOSTS.c.breaker_open_until <= _NOW),
        sa.exists().where(
            DELIVERIES.c.host == HOSTS.c.host,
            stored_in(DELIVERIES.c.state, State.PENDING),
            DELIVERIES.c.next_attempt_at <= _NOW,
            _free(_NOW),
        ),
    )
    .order_by(HOSTS.c.last_request_at.asc().nulls_first(), HOSTS.c.host)
    .limit(HOSTS_PER_CLAIM)
    .with_for_update(skip_locked=True)
)

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
    "attempt_started_at",
    "attempt_finished_at",
    "sent_activity_id",
)


def _claimable_statement() -> sa.Select[Any]:
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
        )
        .order_by(d.c.next_attempt_at, d.c.id)
        .limit(sa.bindparam("quota", type_=sa.Integer()))
    )


#: A host's due rows that nothing earlier to the same host blocks.
_CLAIMABLE = _claimable_statement()


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
    locked = conn.execute(_HOSTS_WITH_WORK, {"now": now}).mappings().all()
    if not locked:
        return []
    in_flight: dict[str, int] = dict(
        conn.execute(_IN_FLIGHT, {"hosts": [h["host"] for h in locked], "now": now}).all()
    )
    chosen: list[sa.RowMapping] = []
    served: list[str] = []
    for host in locked:
        if len(chosen) >= limit:
            break
        quota = _quota(host, now, limits, in_flight.get(host["host"], 0))
        if quota <= 0:
            continue
        rows = (
            conn.execute(
                _CLAIMABLE,
                {"host": host["host"], "now": now, "quota": min(quota, limit - len(chosen))},
            )
            .mappings()
            .all()
        )
        if rows:
            chosen.extend(rows)
            served.append(host["host"])
    if not chosen:
        return []
    return _lease(
        conn, chosen, served, worker=worker, now=now, limits=limits, urls=urls, bodies=bodies
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
        started, finished = row["attempt_started_at"], row["attempt_finished_at"]
        repeat = started is not None and (finished is None or finished < started)
        if repeat or row["attempts"] == 0:
            sent = row["sent_activity_id"] or row["activity_id"]
        else:
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
        # A repeat after a crash of an attempt that had a new id.
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
    """Lemmy 1.0 records an activity id before checking it: a retry needs a new one.

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


# -- outcomes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """What happened when a claimed delivery was sent."""

    claimed: Claimed
    status: int | None
    headers: Mapping[str, str]
    body: str
    error: str | None = None
    #: From signing to the answer.
    duration_s: float = 0.0
    #: Why it was never sent, if it was not (mirror.delivery.outcome.REFUSED, UNSIGNED).
    unsent: str | None = None


@dataclass(frozen=True, slots=True)
class Rules:
    policy: Policy
    breaker: health.BreakerPolicy
    max_generic_errors: int


#: Each delivered row's own values.
_DELIVERED_ROWS = {
    "id": DELIVERIES.c.id.type,
    "status": DELIVERIES.c.last_status.type,
    "note": DELIVERIES.c.last_error.type,
}


@lru_cache(maxsize=4)
def _delivered_statement(dialect: Dialect) -> sa.Update:
    rows = rows_table(dialect, _DELIVERED_ROWS)
    now = sa.bindparam("now", type_=DELIVERIES.c.updated_at.type)
    # Only this worker's lease of a still pending row: a cancelled row stays cancelled.
    return (
        sa.update(DELIVERIES)
        .where(
            DELIVERIES.c.id == rows.c.id,
            mostly_true(
                dialect,
                sa.and_(
                    stored_in(DELIVERIES.c.state, State.PENDING),
                    DELIVERIES.c.locked_by
                    == sa.bindparam("worker", type_=DELIVERIES.c.locked_by.type),
                ),
            ),
        )
        .values(
            state=State.DELIVERED,
            locked_by=None,
            locked_until=None,
            attempt_finished_at=now,
            last_status=rows.c.status,
            last_error=rows.c.note,
            updated_at=now,
            delivered_at=now,
        )
    )


_HOSTS_BY_NAME = sa.select(HOSTS).where(HOSTS.c.host.in_(sa.bindparam("hosts", expanding=True)))


def complete(
    conn: sa.Connection,
    attempts: Sequence[Attempt],
    *,
    worker: str,
    now: datetime,
    rules: Rules,
    rng: random.Random | None = None,
) -> list[tuple[Attempt, Outcome]]:
    """Record outcomes: delivered, rescheduled, or failed (and their dependants parked).

    Deliveries, the common case, are written with one statement for the
    whole batch, and each host's health once per batch.
    """
    results: list[tuple[Attempt, Outcome]] = []
    delivered: list[dict[str, Any]] = []
    for attempt in attempts:
        c = attempt.claimed
        outcome = classify(
            attempt.status,
            attempt.headers,
            attempt.body,
            now=now,
            repeat=c.repeat,
            generic_errors=c.unknown_errors,
            max_generic_errors=rules.max_generic_errors,
            network_error=attempt.error,
            unsent=attempt.unsent,
        )
        if isinstance(outcome, Retry):
            at = next_attempt_at(
                policy=rules.policy,
                attempts=c.attempts,
                now=now,
                first_attempt_at=c.first_attempt_at,
                retry_after=outcome.retry_after,
                rng=rng,
            )
            if at is None:
                outcome = Failed(f"gave up after {c.attempts} attempts: {outcome.reason}")
            else:
                _finish(
                    conn,
                    c,
                    worker,
                    now,
                    State.PENDING,
                    attempt,
                    outcome.reason,
                    next_at=at,
                    generic=outcome.generic,
                )
        if isinstance(outcome, Delivered):
            delivered.append({"id": c.id, "status": attempt.status, "note": outcome.note or None})
        elif isinstance(outcome, Failed) and _finish(
            conn, c, worker, now, State.FAILED, attempt, outcome.reason
        ):
            park_dependants(
                conn,
                c.id,
                f"{PARKED_BEHIND} delivery {c.id}, which failed: {outcome.reason}",
                now,
            )
            if outcome.actor_refused:
                park_refused(conn, c.host, c.actor, outcome.reason, now)
        results.append((attempt, outcome))
    if delivered:
        conn.execute(
            _delivered_statement(conn.dialect),
            {**rows_params(conn.dialect, _DELIVERED_ROWS, delivered), "worker": worker, "now": now},
        )
    _record_hosts(conn, results, now, rules.breaker)
    return results


def _finish(
    conn: sa.Connection,
    c: Claimed,
    worker: str,
    now: datetime,
    state: State,
    attempt: Attempt,
    error: str | None,
    *,
    next_at: datetime | None = None,
    generic: bool = False,
) -> bool:
    values: dict[str, Any] = {
        "state": state,
        "locked_by": None,
        "locked_until": None,
        "attempt_finished_at": now,
        "last_status": attempt.status,
        "last_error": error,
        "updated_at": now,
    }
    if state == State.DELIVERED:
        values["delivered_at"] = now
    if next_at is not None:
        values["next_attempt_at"] = next_at
    if generic:
        values["unknown_errors"] = DELIVERIES.c.unknown_errors + 1
    # Only this worker's lease of a still pending row: a cancelled row stays cancelled.
    result = conn.execute(
        sa.update(DELIVERIES)
        .where(
            DELIVERIES.c.id == c.id,
            stored_in(DELIVERIES.c.state, State.PENDING),
            DELIVERIES.c.locked_by == worker,
        )
        .values(**values)
    )
    return bool(result.rowcount)


def park_dependants(conn: sa.Connection, delivery_id: int, reason: str, now: datetime) -> int:
    """Park every pending delivery to the same host that waits for this one, transitively."""
    first = conn.execute(
        sa.select(DELIVERIES.c.host, DELIVERIES.c.ordering_key).where(
            DELIVERIES.c.id == delivery_id
        )
    ).one()
    frontier = [(first.host, first.ordering_key, delivery_id)]
    parked = 0
    while frontier:
        host, key, after = frontier.pop()
        rows = conn.execute(
            sa.update(DELIVERIES)
            .where(
                DELIVERIES.c.host == host,
                stored_in(DELIVERIES.c.state, State.PENDING),
                DELIVERIES.c.id > after,
                sa.or_(DELIVERIES.c.ordering_key == key, DELIVERIES.c.depends_on == key),
            )
            .values(
                state=State.PARKED,
                last_error=reason[:1000],
                updated_at=now,
                locked_by=None,
                locked_until=None,
            )
            .returning(DELIVERIES.c.host, DELIVERIES.c.ordering_key, DELIVERIES.c.id)
        ).all()
        parked += len(rows)
        frontier.extend((r.host, r.ordering_key, r.id) for r in rows if r.ordering_key != key)
    return parked


def park_refused(conn: sa.Connection, host: str, actor: str, reason: str, now: datetime) -> int:
    """The host refuses this actor (a ban): hold everything else it would send there.

    A backfill stops instead of collecting thousands of identical failures;
    `mirror retry --host HOST` sends them once the ban is lifted.
    """
    result = conn.execute(
        sa.update(DELIVERIES)
        .where(
            DELIVERIES.c.host == host,
            stored_in(DELIVERIES.c.state, State.PENDING),
            DELIVERIES.c.locked_by.is_(None),
            DELIVERIES.c.activity_id.in_(
                sa.select(ACTIVITIES.c.id).where(ACTIVITIES.c.actor == actor)
            ),
        )
        .values(
            state=State.PARKED,
            last_error=f"{PARKED_REFUSED} {actor}: {reason}"[:1000],
            updated_at=now,
        )
    )
    return result.rowcount or 0


def _record_hosts(
    conn: sa.Connection,
    results: Sequence[tuple[Attempt, Outcome]],
    now: datetime,
    policy: health.BreakerPolicy,
) -> None:
    by_host: dict[str, list[Outcome]] = {}
    for attempt, outcome in results:
        by_host.setdefault(attempt.claimed.host, []).append(outcome)
    if not by_host:
        return
    rows = {
        row["host"]: dict(row)
        for row in conn.execute(_HOSTS_BY_NAME, {"hosts": list(by_host)}).mappings()
    }
    for host, outcomes in by_host.items():
        current = rows.get(host, {"host": host})
        was_dead = current.get("dead_since") is not None
        changes: dict[str, Any] = {}
        for outcome in outcomes:  # in the order the answers came
            if isinstance(outcome, Retry) and outcome.host_failure:
                step = health.after_failure(current, now, outcome.reason, policy)
            else:
                # Any answer that is not a 5xx shows the host is up.
                step = health.after_success(current, now)
            current = {**current, **step}
            changes.update(step)
        if was_dead and current.get("dead_since") is None:
            revive_parked(conn, host, now)
        # Prebuilt statements: building one per batch cost more than running it.
        columns, statement = _AFTER_SUCCESS if changes.keys() == _AFTER_SUCCESS[0] else _HEALTH
        conn.execute(statement, {"h_host": host, **{f"h_{c}": current.get(c) for c in columns}})


def _host_update(columns: frozenset[str]) -> tuple[frozenset[str], sa.Update]:
    return columns, (
        sa.update(HOSTS)
        .where(HOSTS.c.host == sa.bindparam("h_host"))
        .values({c: sa.bindparam(f"h_{c}", type_=HOSTS.c[c].type) for c in sorted(columns)})
    )


#: Only what a success changes: a failure another worker records meanwhile stays.
_AFTER_SUCCESS = _host_update(frozenset(health.after_success({}, datetime.min)))
#: Every health column (all but the key and the pacing stamp the claim writes).
_HEALTH = _host_update(frozenset(HOSTS.c.keys()) - {"host", "last_request_at"})


def revive_parked(conn: sa.Connection, host: str, now: datetime) -> int:
    result = conn.execute(
        sa.update(DELIVERIES)
        .where(
            DELIVERIES.c.host == host,
            stored_in(DELIVERIES.c.state, State.PARKED),
            DELIVERIES.c.last_error.like(f"{PARKED_DEAD}%"),
        )
        .values(state=State.PENDING, next_attempt_at=now, last_error=None, updated_at=now)
    )
    return result.rowcount or 0


def release(conn: sa.Connection, worker: str) -> int:
    """Give back this worker's leases (graceful shutdown): the rows are repeated later."""
    result = conn.execute(
        sa.update(DELIVERIES)
        .where(DELIVERIES.c.locked_by == worker, stored_in(DELIVERIES.c.state, State.PENDING))
        .values(locked_by=None, locked_until=None)
    )
    return result.rowcount or 0


# -- operating ------------------------------------------------------------------


def status(conn: sa.Connection, now: datetime) -> dict[str, Any]:
    view = operator_state_sql(DELIVERIES, now)
    counts = dict(conn.execute(sa.select(view, sa.func.count()).group_by(view)).all())
    by_state = {
        name: int(counts.get(name, 0))
        for name in (
            "pending",
            "in_flight",
            "retrying",
            "delivered",
            "failed",
            "cancelled",
            "parked",
        )
    }
    oldest = conn.scalar(
        sa.select(sa.func.min(DELIVERIES.c.next_attempt_at)).where(
            stored_in(DELIVERIES.c.state, State.PENDING),
            sa.or_(DELIVERIES.c.locked_until.is_(None), DELIVERIES.c.locked_until <= now),
        )
    )
    outstanding: dict[str, int] = dict(
        conn.execute(
            sa.select(DELIVERIES.c.host, sa.func.count())
            .where(stored_in(DELIVERIES.c.state, State.PENDING, State.PARKED))
            .group_by(DELIVERIES.c.host)
        ).all()
    )
    hosts = []
    for row in conn.execute(sa.select(HOSTS).order_by(HOSTS.c.host)).mappings():
        hosts.append(
            {
                "host": row["host"],
                "breaker": health.breaker_state(dict(row), now),
                "consecutive_failures": row["consecutive_failures"],
                "dead": row["dead_since"] is not None,
                "dead_since": _iso(row["dead_since"]),
                "last_success_at": _iso(row["last_success_at"]),
                "last_failure_at": _iso(row["last_failure_at"]),
                "last_error": row["last_error"],
                "outstanding": int(outstanding.get(row["host"], 0)),
            }
        )
    followers = conn.scalar(
        sa.select(sa.func.count()).select_from(Follower).where(Follower.state == "active")
    )
    return {
        "deliveries": {
            "by_state": by_state,
            "outstanding": sum(by_state[s] for s in ("pending", "in_flight", "retrying")),
            "oldest_due_at": _iso(oldest),
            "oldest_due_age_s": (now - oldest).total_seconds() if oldest and oldest <= now else 0,
        },
        "hosts": hosts,
        "followers": int(followers or 0),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def retry(conn: sa.Connection, *, now: datetime, failed: bool, host: str | None) -> int:
    """Failed (with --failed) and parked deliveries go back to the queue, due now."""
    states = [State.PARKED] + ([State.FAILED, State.CANCELLED] if failed else [])
    condition: list[sa.ColumnElement[bool]] = [DELIVERIES.c.state.in_(states)]
    if host:
        condition.append(DELIVERIES.c.host == host.lower())
    else:
        # Without a host, parked-for-dead-host rows stay (`hosts revive` is for
        # those), and so do paused runs' (`runs resume`).
        condition.append(
            sa.or_(
                DELIVERIES.c.last_error.is_(None),
                sa.and_(
                    ~DELIVERIES.c.last_error.like(f"{PARKED_DEAD}%"),
                    ~DELIVERIES.c.last_error.like(f"{PARKED_PAUSED}%"),
                ),
            )
        )
    result = conn.execute(
        sa.update(DELIVERIES)
        .where(*condition)
        .values(
            state=State.PENDING,
            next_attempt_at=now,
            first_attempt_at=None,
            unknown_errors=0,
            updated_at=now,
        )
    )
    return result.rowcount or 0


def cancel(conn: sa.Connection, *, now: datetime, host: str | None, activity: str | None) -> int:
    """Outstanding deliveries (of a host, or an activity) will not be sent."""
    condition: list[sa.ColumnElement[bool]] = [
        stored_in(DELIVERIES.c.state, State.PENDING, State.PARKED)
    ]
    if host:
        condition.append(DELIVERIES.c.host == host.lower())
    if activity:
        condition.append(DELIVERIES.c.activity_id == activity)
    result = conn.execute(
        sa.update(DELIVERIES)
        .where(*condition)
        .values(state=State.CANCELLED, locked_by=None, locked_until=None, updated_at=now)
    )
    return result.rowcount or 0


def revive(conn: sa.Connection, host: str, now: datetime) -> int:
    """An operator says a dead host is back: clear its health, unpark its deliveries."""
    host = host.lower()
    exists = conn.scalar(sa.select(HOSTS.c.host).where(HOSTS.c.host == host))
    if exists is None:
        raise MirrorError(f"no deliveries were ever made to {host}")
    conn.execute(
        sa.update(HOSTS)
        .where(HOSTS.c.host == host)
        .values(
            consecutive_failures=0,
            breaker_open_until=None,
            breaker_cooloff_s=None,
            failing_since=None,
            dead_since=None,
        )
    )
    return revive_parked(conn, host, now)


def prune(conn: sa.Connection, *, now: datetime, retention_days: int) -> tuple[int, int]:
    """Remove delivered rows and inbox de-duplication records older than the retention."""
    cutoff = now - timedelta(days=retention_days)
    deliveries = conn.execute(
        sa.delete(DELIVERIES).where(
            stored_in(DELIVERIES.c.state, State.DELIVERED), DELIVERIES.c.delivered_at < cutoff
        )
    ).rowcount
    received = table_of(ReceivedActivity)
    seen = conn.execute(sa.delete(received).where(received.c.received_at < cutoff)).rowcount
    return deliveries or 0, seen or 0
