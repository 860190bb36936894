"""Publications moved by their deliveries: sent (or unverifiable), refused, failed, held.

The delivery queue knows nothing of publications; the job reads what the
queue did with each publication's current activity and moves the row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mirror.delivery.states import State as DeliveryState
from mirror.publish.confirm import Window
from mirror.publish.records import (
    BATCH,
    DELIVERIES,
    FOLLOWERS_ONLY,
    NO_LOOKUP,
    PUBLICATIONS,
    RUNS,
    first_line,
    move,
    software_name,
    state_values,
)
from mirror.publish.servers import server_for
from mirror.publish.states import State

# -- from deliveries --------------------------------------------------------------

#: Publications to the community whose target delivery moved on: a queued
#: one was answered or held, a held one let go; a refused, failed or
#: cancelled one queued again by an operator (`mirror retry --failed`).
CHANGED_COMMUNITY = (
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
FINISHED_FOLLOWERS = sa.select(PUBLICATIONS.c.id).where(
    PUBLICATIONS.c.state == State.QUEUED.value,
    PUBLICATIONS.c.target == FOLLOWERS_ONLY,
    ~sa.exists().where(
        DELIVERIES.c.activity_id == PUBLICATIONS.c.activity_id,
        DELIVERIES.c.state == DeliveryState.PENDING.value,
    ),
)


def delivery_values(
    row: Any, *, unverifiable: str | None, now: datetime, window: Window
) -> dict[str, Any]:
    """A row's new values from what the queue did with its delivery (``row`` has
    delivery_state, delivered_at, last_status, last_error): a delivered one is sent
    and due for its first lookup, unless ``unverifiable`` says why it cannot be asked.
    Publications and follower copies alike."""
    state = row.delivery_state
    if state == DeliveryState.DELIVERED:
        if unverifiable is not None:
            return state_values(State.UNVERIFIABLE, unverifiable, now)
        sent = row.delivered_at or now
        return {
            **state_values(State.SENT, None, now),
            "sent_at": sent,
            "checks": 0,
            "due_at": window.next_check(sent, 0),
        }
    if state == DeliveryState.FAILED:
        refused = row.last_status is not None and 400 <= row.last_status < 500
        return state_values(
            State.REFUSED if refused else State.FAILED, first_line(row.last_error), now
        )
    if state == DeliveryState.CANCELLED:
        return state_values(State.CANCELLED, "its delivery was cancelled", now)
    if state == DeliveryState.PARKED:
        return state_values(State.HELD, first_line(row.last_error), now)
    return state_values(State.QUEUED, None, now)  # the queue let it go


def advance_from_deliveries(conn: sa.Connection, *, now: datetime, window: Window) -> int:
    """Publications whose delivery was answered, held or queued again."""
    moved = 0
    for row in conn.execute(CHANGED_COMMUNITY.limit(BATCH)).all():
        server = server_for(row.software)
        unverifiable = None
        if server.lookup_path is None or row.unverifiable:
            unverifiable = row.unverifiable or NO_LOOKUP.format(server=software_name(row.software))
        values = delivery_values(row, unverifiable=unverifiable, now=now, window=window)
        moved += move(conn, row.id, State(row.state), values)
    for (publication_id,) in conn.execute(FINISHED_FOLLOWERS.limit(BATCH)).all():
        moved += move(
            conn,
            publication_id,
            State.QUEUED,
            state_values(State.UNVERIFIABLE, "sent to the followers only: nothing to ask", now),
        )
    return moved
