"""The publications as operators see and steer them: counts, reasons, retry, cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mirror.delivery.states import stored_not
from mirror.publish.from_deliveries import CHANGED_COMMUNITY, FINISHED_FOLLOWERS
from mirror.publish.records import (
    PUBLICATIONS,
    iso,
    state_values,
)
from mirror.publish.release import ORPHANED, UNBLOCKED
from mirror.publish.states import State

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
        .values(state_values(State.CANCELLED, "its run was cancelled", now))
    )
    return result.rowcount or 0


def counts(conn: sa.Connection, *, run_id: int | None = None) -> dict[str, int]:
    """Publications by state (every state named, zeros included)."""
    # Confirmed rows, the bulk, are not read: they are the total less the
    # others, which ix_publication_unconfirmed holds.
    query = (
        sa.select(PUBLICATIONS.c.state, sa.func.count())
        .where(stored_not(PUBLICATIONS.c.state, State.CONFIRMED.value))
        .group_by(PUBLICATIONS.c.state)
    )
    total = sa.select(sa.func.count()).select_from(PUBLICATIONS)
    if run_id is not None:
        query = query.where(PUBLICATIONS.c.run_id == run_id)
        total = total.where(PUBLICATIONS.c.run_id == run_id)
    found = dict(conn.execute(query).all())
    found[State.CONFIRMED.value] = int(conn.scalar(total) or 0) - sum(found.values())
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
    for query in (CHANGED_COMMUNITY, FINISHED_FOLLOWERS, UNBLOCKED, ORPHANED):
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
        # The literal lets the planner read ix_publication_unconfirmed alone.
        .where(stored_not(PUBLICATIONS.c.state, State.CONFIRMED.value))
        .where(PUBLICATIONS.c.state.in_(shown))
        .group_by(PUBLICATIONS.c.state, PUBLICATIONS.c.kind, PUBLICATIONS.c.reason)
        .order_by(count.desc(), PUBLICATIONS.c.state, PUBLICATIONS.c.kind)
        .limit(limit)
    )
    if run_id is not None:
        query = query.where(PUBLICATIONS.c.run_id == run_id)
    return [
        {**row._asdict(), "next_at": iso(row.next_at) if row.next_at else None}
        for row in conn.execute(query)
    ]
