"""The operator's commands on the queue: status, retry, cancel, revive, prune."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.models import Follower, ReceivedActivity
from mirror.delivery import hosts as health
from mirror.delivery.record import revive_parked
from mirror.delivery.states import (
    OPERATOR_STATES,
    OUTSTANDING,
    PARKED_DEAD,
    PARKED_PAUSED,
    State,
    operator_state_sql,
    stored_in,
    stored_not,
)
from mirror.delivery.tables import DELIVERIES, HOSTS
from mirror.errors import MirrorError


def status(conn: sa.Connection, now: datetime) -> dict[str, Any]:
    view = operator_state_sql(DELIVERIES, now)
    # Only the rows not delivered are counted (from ix_delivery_unsent); the
    # delivered bulk is the rest of the table, whose count SQLite takes from
    # its pages without visiting a row.
    counts = dict(
        conn.execute(
            sa.select(view, sa.func.count())
            .where(stored_not(DELIVERIES.c.state, State.DELIVERED))
            .group_by(view)
        ).all()
    )
    total = int(conn.scalar(sa.select(sa.func.count()).select_from(DELIVERIES)) or 0)
    counts[State.DELIVERED.value] = total - sum(counts.values())
    by_state = {name: int(counts.get(name, 0)) for name in OPERATOR_STATES}
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
            "outstanding": sum(by_state[s] for s in OUTSTANDING),
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
