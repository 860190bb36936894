"""Delivery states: the few that are stored, and the names operators see.

A lease is two columns (locked_by, locked_until), not a state, so a worker
that dies leaves nothing to repair: its lease just expires.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa


class State(StrEnum):
    PENDING = "pending"  # waiting for its first attempt or a retry (or leased: in flight)
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PARKED = "parked"  # held: its host is dead, or something it depends on failed


#: The graph: which stored state may follow which. pending -> pending is a
#: rescheduled retry; failed/cancelled/parked -> pending is an operator retry.
ALLOWED: dict[State, frozenset[State]] = {
    State.PENDING: frozenset(
        {State.PENDING, State.DELIVERED, State.FAILED, State.CANCELLED, State.PARKED}
    ),
    State.PARKED: frozenset({State.PENDING, State.CANCELLED, State.FAILED}),
    State.FAILED: frozenset({State.PENDING}),
    State.CANCELLED: frozenset({State.PENDING}),
    State.DELIVERED: frozenset(),
}

#: How a parked row's last_error begins: why it is held (what may unpark it).
PARKED_DEAD = "parked: host dead since"
PARKED_BEHIND = "parked: waits for"
PARKED_PAUSED = "parked: run paused"
PARKED_REFUSED = "parked: the host refuses"

#: What `mirror status` shows.
OPERATOR_STATES = ("pending", "in_flight", "retrying", "delivered", "failed", "cancelled", "parked")
#: Work still to do: a drained queue has none of these.
OUTSTANDING = ("pending", "in_flight", "retrying")


def stored_in(column: sa.ColumnElement[str], *states: State) -> sa.ColumnElement[bool]:
    """``column`` holds one of ``states``, written as SQL literals.

    The queue's indexes cover only pending (and parked) rows, so a delivered
    row costs no entries in them; a planner uses such a partial index only
    when it can see that the query's condition implies the index's, which a
    bound parameter hides (PostgreSQL's generic plans, SQLite always).
    """
    # Rendered like the conditions of mirror.db.models.delivery's indexes.
    literals = [sa.literal_column(f"'{state.value}'") for state in states]
    return column == literals[0] if len(literals) == 1 else column.in_(literals)


def stored_not(column: sa.ColumnElement[str], state: State | str) -> sa.ColumnElement[bool]:
    """``column`` holds anything but ``state``, as a literal: the condition of the
    partial indexes that leave out the bulk (delivered rows, confirmed publications)."""
    return column != sa.literal_column(f"'{state!s}'")


def sources(target: State) -> tuple[str, ...]:
    """The stored states that may move to ``target``."""
    return tuple(sorted(s.value for s, nexts in ALLOWED.items() if target in nexts))


def operator_state(state: str, attempts: int, locked_until: datetime | None, now: datetime) -> str:
    if state == State.PENDING:
        if locked_until is not None and locked_until > now:
            return "in_flight"
        return "retrying" if attempts > 0 else "pending"
    return state


def operator_state_sql(table: sa.Table, now: datetime) -> sa.ColumnElement[str]:
    """The same as operator_state, as SQL (for counting in the database)."""
    c = table.c
    return sa.case(
        (sa.and_(c.state == State.PENDING, c.locked_until > now), "in_flight"),
        (sa.and_(c.state == State.PENDING, c.attempts > 0), "retrying"),
        else_=c.state,
    )
