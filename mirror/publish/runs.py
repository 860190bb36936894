"""Backfill runs: progress from their publications and deliveries; pause, resume, cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.models import Activity, BackfillRun, Delivery, DeliveryHost
from mirror.delivery import hosts as health
from mirror.delivery.states import (
    OPERATOR_STATES,
    OUTSTANDING,
    PARKED_PAUSED,
    State,
    operator_state_sql,
    stored_in,
)
from mirror.errors import MirrorError
from mirror.publish import publications

RUNS = table_of(BackfillRun)
ACTIVITIES = table_of(Activity)
DELIVERIES = table_of(Delivery)
HOSTS = table_of(DeliveryHost)
ACTIVE, PAUSED, CANCELLED, PLANNING = "active", "paused", "cancelled", "planning"
#: What `mirror runs` shows of an active run with nothing left to do.
DONE = "done"


def _run_deliveries(run_id: int) -> sa.ColumnElement[bool]:
    return DELIVERIES.c.activity_id.in_(
        sa.select(ACTIVITIES.c.id).where(ACTIVITIES.c.run_id == run_id)
    )


def progress(conn: sa.Connection, run_id: int, now: datetime) -> dict[str, Any]:
    """What the run's items became on the target, its deliveries, and whether it is done.

    A run is done when the job has nothing left to do by itself: no item is
    waiting, queued, sent and not yet checked, or missing with a
    re-publication planned, and no delivery is outstanding. What waits for
    an operator (parked, failed, refused) does not keep it open.
    """
    view = operator_state_sql(DELIVERIES, now)
    counts = dict(
        conn.execute(
            sa.select(view, sa.func.count()).where(_run_deliveries(run_id)).group_by(view)
        ).all()
    )
    by_state = {name: int(counts.get(name, 0)) for name in OPERATOR_STATES}
    outstanding = sum(by_state[s] for s in OUTSTANDING)
    items = publications.counts(conn, run_id=run_id)
    still_open = publications.open_count(conn, run_id=run_id)
    due_later = conn.scalar(
        sa.select(sa.func.max(DELIVERIES.c.next_attempt_at)).where(
            _run_deliveries(run_id), stored_in(DELIVERIES.c.state, State.PENDING)
        )
    )
    total = sum(items.values())
    return {
        "publications": items,
        "by_state": by_state,
        # Items when it published any; a run of Deletes only counts deliveries.
        "total": total or sum(by_state.values()),
        "done": items["confirmed"] + items["unverifiable"] if total else by_state["delivered"],
        "outstanding": outstanding + still_open,
        "finished": outstanding == 0 and still_open == 0,
        "last_scheduled_at": due_later.isoformat() if due_later else None,
    }


def hosts(conn: sa.Connection, run_id: int, now: datetime) -> list[dict[str, Any]]:
    """The health of the servers the run delivers to: breaker, dead mark, last error."""
    names = sa.select(DELIVERIES.c.host).where(_run_deliveries(run_id)).distinct()
    found = []
    for row in conn.execute(
        sa.select(HOSTS).where(HOSTS.c.host.in_(names)).order_by(HOSTS.c.host)
    ).mappings():
        found.append(
            {
                "host": row["host"],
                "breaker": health.breaker_state(dict(row), now),
                "dead": row["dead_since"] is not None,
                "last_error": row["last_error"],
                # The last error is news only when nothing succeeded since.
                "failing": row["last_failure_at"] is not None
                and (
                    row["last_success_at"] is None
                    or row["last_failure_at"] > row["last_success_at"]
                ),
            }
        )
    return found


def list_runs(conn: sa.Connection, now: datetime) -> list[dict[str, Any]]:
    out = []
    for run in conn.execute(sa.select(RUNS).order_by(RUNS.c.id)).mappings():
        report = progress(conn, run["id"], now)
        state = DONE if run["state"] == ACTIVE and report["finished"] else run["state"]
        out.append(
            {
                "id": run["id"],
                "target": run["target"],
                "state": state,
                "items": run["items"],
                "created_at": run["created_at"].isoformat(),
                "options": run["options"],
                **report,
            }
        )
    return out


def _get(conn: sa.Connection, run_id: int) -> Any:
    run = conn.execute(sa.select(RUNS).where(RUNS.c.id == run_id)).mappings().first()
    if run is None:
        raise MirrorError(f"there is no backfill run {run_id} (see `mirror runs`)")
    return run


def _move(
    conn: sa.Connection,
    run_id: int,
    now: datetime,
    *,
    run_state: str,
    movable: tuple[str, ...],
    verb: str,
    where: list[sa.ColumnElement[bool]],
    values: dict[str, Any],
) -> int:
    """Change the run's matching deliveries, then the run's own state, if it is ``movable``."""
    state = _get(conn, run_id)["state"]
    if state == ACTIVE and progress(conn, run_id, now)["finished"]:
        state = DONE
    if state not in movable:
        # Pausing a finished run would show it paused with nothing held.
        raise MirrorError(
            f"run {run_id} is {state} already"
            if state == run_state
            else f"run {run_id} is {state}: only {' or '.join(movable)} runs can be {verb}"
        )
    moved = conn.execute(
        sa.update(DELIVERIES)
        .where(_run_deliveries(run_id), *where)
        .values(**values, updated_at=now)
    ).rowcount
    conn.execute(sa.update(RUNS).where(RUNS.c.id == run_id).values(state=run_state, updated_at=now))
    return moved or 0


def pause(conn: sa.Connection, run_id: int, now: datetime) -> int:
    """Hold the run's deliveries that are not in flight (in-flight ones finish).

    A run still being planned stops planning at its next chunk
    (mirror.publish.planning) and keeps where it stood.
    """
    return _move(
        conn,
        run_id,
        now,
        run_state=PAUSED,
        movable=(ACTIVE, PLANNING),
        verb="paused",
        where=[
            stored_in(DELIVERIES.c.state, State.PENDING),
            sa.or_(DELIVERIES.c.locked_until.is_(None), DELIVERIES.c.locked_until <= now),
        ],
        values={
            "state": State.PARKED,
            "last_error": f"{PARKED_PAUSED} ({run_id})",
            "locked_by": None,
            "locked_until": None,
        },
    )


def resume(conn: sa.Connection, run_id: int, now: datetime) -> int:
    """Let a paused run's deliveries go again (paced ones keep their times).

    A run paused while it was planned goes back to planning: the same
    backfill again plans the rest.
    """
    planned_part_way = _get(conn, run_id)["progress"] is not None
    return _move(
        conn,
        run_id,
        now,
        run_state=PLANNING if planned_part_way else ACTIVE,
        movable=(PAUSED,),
        verb="resumed",
        where=[
            stored_in(DELIVERIES.c.state, State.PARKED),
            DELIVERIES.c.last_error.like(f"{PARKED_PAUSED}%"),
        ],
        values={"state": State.PENDING, "last_error": None},
    )


def cancel(conn: sa.Connection, run_id: int, now: datetime) -> int:
    """Give up the run's outstanding deliveries and unsent items; what was delivered stays."""
    moved = _move(
        conn,
        run_id,
        now,
        run_state=CANCELLED,
        # A run still planning too (a crash left it so; a planner stops at its next chunk).
        movable=(ACTIVE, PAUSED, DONE, PLANNING),
        verb="cancelled",
        where=[stored_in(DELIVERIES.c.state, State.PENDING, State.PARKED)],
        values={"state": State.CANCELLED, "locked_by": None, "locked_until": None},
    )
    publications.cancel_unsent(conn, run_id, now)
    return moved
