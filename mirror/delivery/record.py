"""Recording outcomes: delivered, rescheduled or failed; dependants parked; host health.

Also giving back a worker's leases when it stops, and unparking a host's
deliveries when it answers again.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from mirror.db.bulk import mostly_true, rows_params, rows_table
from mirror.delivery import hosts as health
from mirror.delivery.backoff import Policy, next_attempt_at
from mirror.delivery.claim import Claimed
from mirror.delivery.outcome import (
    REASON_BYTES,
    REFUSED,
    Delivered,
    Failed,
    Outcome,
    Retry,
    classify,
)
from mirror.delivery.states import PARKED_BEHIND, PARKED_DEAD, PARKED_REFUSED, State, stored_in
from mirror.delivery.tables import ACTIVITIES, DELIVERIES, HOSTS


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


class Recorded(NamedTuple):
    """An attempt, what it meant, and when the next one is due (a retry only)."""

    attempt: Attempt
    outcome: Outcome
    next_at: datetime | None = None


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
) -> list[Recorded]:
    """Record outcomes: delivered, rescheduled, or failed (and their dependants parked).

    Deliveries, the common case, are written with one statement for the
    whole batch, and each host's health once per batch.
    """
    results: list[Recorded] = []
    delivered: list[dict[str, Any]] = []
    answering = _answering_since(conn, attempts)
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
        if isinstance(outcome, Retry) and _object_error(attempt, answering):
            outcome = _per_object(attempt)
        at = None
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
        results.append(Recorded(attempt, outcome, at))
    if delivered:
        conn.execute(
            _delivered_statement(conn.dialect),
            {**rows_params(conn.dialect, _DELIVERED_ROWS, delivered), "worker": worker, "now": now},
        )
    _record_hosts(conn, results, now, rules.breaker)
    return results


#: Attempts of one object that a host answers with a server error while it
#: answers others: then the error is the object's, not the host's.
PER_OBJECT_ATTEMPTS = 3
#: "Answers others": it took a delivery this long before the object's first attempt, or since.
ANSWERING_WITHIN = timedelta(hours=1)
#: A proxy's answers for a server that is down or overloaded: the host's, never the object's.
GATEWAY_ERRORS = frozenset({502, 503, 504})


def _server_error(attempt: Attempt) -> bool:
    """An error of the application itself (500 and the like), not of a gateway."""
    status = attempt.status
    return status is not None and status >= 500 and status not in GATEWAY_ERRORS


def _answering_since(conn: sa.Connection, attempts: Sequence[Attempt]) -> dict[str, datetime]:
    """When each host that answered a server error here last took a delivery.

    Read only for such hosts (a rare path); a delivery taken in this very
    batch counts as now.
    """
    hosts = {a.claimed.host for a in attempts if _server_error(a)}
    if not hosts:
        return {}
    found = {
        host: at
        for host, at in conn.execute(
            sa.select(HOSTS.c.host, HOSTS.c.last_success_at).where(HOSTS.c.host.in_(hosts))
        )
        if at is not None
    }
    for a in attempts:
        if a.claimed.host in hosts and a.status is not None and 200 <= a.status < 300:
            found[a.claimed.host] = datetime.max.replace(tzinfo=UTC)
    return found


def _object_error(attempt: Attempt, answering: dict[str, datetime]) -> bool:
    """An application error for this object from a host that takes other deliveries.

    PieFed answers 500 for one object it cannot store (a field too long for
    its column) and takes the rest: retrying that object for days would hold
    its replies back, and counting it against the host would open the
    breaker for everything else. A host that took nothing for an hour
    before the object's first attempt may be down: that stays the host's.
    """
    c = attempt.claimed
    since = answering.get(c.host)
    return (
        _server_error(attempt)
        and since is not None
        and since > c.first_attempt_at - ANSWERING_WITHIN
    )


def _per_object(attempt: Attempt) -> Outcome:
    status, c = attempt.status, attempt.claimed
    first = (attempt.body.strip().splitlines() or [""])[0][:REASON_BYTES]
    if c.attempts >= PER_OBJECT_ATTEMPTS:
        return Failed(f"HTTP {status} for this object ({c.attempts} times): {first}".rstrip())
    return Retry(f"HTTP {status}: {first}".rstrip())


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
    if state == State.FAILED and attempt.status is not None:
        # The receiver answered and refused this id (Lemmy 1.0 records an id
        # before checking it): if an operator sends it again, it goes as new.
        values["sent_activity_id"] = None
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
    results: Sequence[Recorded],
    now: datetime,
    policy: health.BreakerPolicy,
) -> None:
    by_host: dict[str, list[Recorded]] = {}
    for result in results:
        by_host.setdefault(result.attempt.claimed.host, []).append(result)
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
        for attempt, outcome, _ in outcomes:  # in the order the answers came
            if attempt.unsent is not None:
                # Never sent: the host neither answered nor failed. A refusal
                # here (the guard, a bad URL) is still its last error, so
                # that `mirror status` does not show it as healthy.
                if attempt.unsent != REFUSED or not isinstance(outcome, Failed):
                    continue
                step = health.after_refusal(now, outcome.reason)
            elif isinstance(outcome, Retry) and outcome.host_failure:
                step = health.after_failure(current, now, outcome.reason, policy)
            else:
                # Any answer that is not a 5xx shows the host is up.
                step = health.after_success(current, now)
            current = {**current, **step}
            changes.update(step)
        if not changes:
            continue
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
    """Give back a worker's leases (its graceful stop, or its death): the rows are
    repeated, with the ids they had."""
    result = conn.execute(
        sa.update(DELIVERIES)
        .where(DELIVERIES.c.locked_by == worker, stored_in(DELIVERIES.c.state, State.PENDING))
        .values(locked_by=None, locked_until=None)
    )
    return result.rowcount or 0
