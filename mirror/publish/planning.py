"""Planning a run: the stream's chunks written one transaction each, resumable.

The run is made first, in state `planning`, and committed; each chunk of
the stream (mirror.publish.stream) is then queued in a transaction of its
own with the run's progress, so its deliveries may go at once (the chunks
follow the publication order) and a crash loses at most the chunk under
way. Planning the same run again (the same target and options) continues
from its progress, and so ends with exactly the publications one
uninterrupted run makes. At the end the Deletes of what is now excluded are
queued and the run becomes `active`; a run that queued nothing at all is
removed, as `mirror backfill` records no run when there is nothing new.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mirror.db import lease
from mirror.db.session import WRITE_OPTION
from mirror.publish.backfill import PUBLICATIONS, RUNS, Backfill
from mirror.publish.plan import Options
from mirror.publish.report import Report
from mirror.publish.stream import IN_BATCH, PAGE, Progress, excluded, walk
from mirror.publish.target import Target

PLANNING = "planning"
#: A planner holds its target's lease this long past each chunk it commits:
#: a second `mirror backfill` into the same target meanwhile is refused, and
#: a planner that died on another machine frees the target after it.
LEASE_S = 120.0


def after_chunk(count: int) -> None:
    """Called after each chunk's commit with the count so far (a test kills the process here)."""


class StillPlanning(Exception):
    """The target is planned by another process, or its run waits with other options, or the
    run was paused or cancelled while it was planned."""


def plan_run(
    engine: Engine,
    make: Callable[[sa.Connection], Backfill],
    target: Target,
    options: Options,
    run_options: dict[str, Any],
    *,
    page: int = PAGE,
    hook: Callable[[int], None] = after_chunk,
    holder: str | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Report:
    """Plan and queue a run chunk by chunk (see the module); returns its report.

    One planner at a time per target: it holds the target's lease
    (``holder``, by default this host and process) from before it picks the
    run until the run is planned.
    """
    me = holder or f"{socket.gethostname()}:{os.getpid()}"
    job = f"plan:{target.id}"
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            _take(conn, job, me, clock())
        try:
            return _plan(conn, make, target, options, run_options, page, hook, job, me, clock)
        finally:
            with conn.begin():
                lease.give_up(conn, job, me)


def _plan(
    conn: sa.Connection,
    make: Callable[[sa.Connection], Backfill],
    target: Target,
    options: Options,
    run_options: dict[str, Any],
    page: int,
    hook: Callable[[int], None],
    job: str,
    me: str,
    clock: Callable[[], datetime],
) -> Report:
    backfill = make(conn)
    with conn.begin():
        run_id, stored = _planning_run(conn, target, run_options, backfill.now)
    progress = Progress.of({k: v for k, v in (stored or {}).items() if k != "used"})
    report = backfill.begin(Report(None, target.id, {}), run_options, items=0, run_id=run_id)
    # The walk reads each page in the transaction that writes it: one
    # commit holds the chunk's publications, activities and its progress.
    chunks = walk(conn, options, orphans=not target.hosted, progress=progress, page=page)
    count = 0
    while True:
        with conn.begin() as transaction:
            chunk = next(chunks, None)
            if chunk is None:
                break
            if not lease.hold(conn, job, me, now=clock(), seconds=LEASE_S):
                # Stalled past its lease, and another planner took the
                # target: this one's chunk would be written twice.
                holder = lease.holder_of(conn, job, now=clock())
                transaction.rollback()
                raise StillPlanning(
                    f"run {run_id} into {target.id} is now planned by {holder}: "
                    "this planner stopped"
                )
            backfill.queue(chunk.items)
            used = (stored or {}).get("used", False) or report.run_id is not None
            moved = conn.execute(
                sa.update(RUNS)
                .where(RUNS.c.id == run_id, RUNS.c.state == PLANNING)
                .values(
                    progress={**chunk.progress, "used": used},
                    items=sum(chunk.progress["planned"].values()),
                )
            ).rowcount
            if not moved:
                # Paused or cancelled (`mirror runs`) while it was planned:
                # this chunk is not written, and planning stops.
                why = _stopped(conn, run_id)
                transaction.rollback()
                raise StillPlanning(why)
            stored = {**chunk.progress, "used": used}
        count += 1
        hook(count)
    progress = Progress.of({k: v for k, v in (stored or {}).items() if k != "used"})
    with conn.begin():
        deletions = list(_published(conn, excluded(conn, options)))
        backfill.finish(deletions, items=sum(progress.planned.values()))
        used = (stored or {}).get("used", False) or report.run_id is not None
        if used:
            conn.execute(
                sa.update(RUNS)
                .where(RUNS.c.id == run_id, RUNS.c.state == PLANNING)
                .values(state="active", progress=None, updated_at=backfill.now)
            )
        else:
            conn.execute(sa.delete(RUNS).where(RUNS.c.id == run_id, RUNS.c.state == PLANNING))

    report.run_id = run_id if used else None
    report.planned = progress.planned
    report.left_out = progress.left_out(options)
    return report


def _take(conn: sa.Connection, job: str, me: str, now: datetime) -> None:
    """Take the target's planning lease, or say who plans it now."""
    if lease.hold(conn, job, me, now=now, seconds=LEASE_S):
        return
    holder = lease.holder_of(conn, job, now=now) or "another process"
    host, _, pid = holder.rpartition(":")
    # Killed on this machine (its lease not yet run out): nobody plans the
    # target any more, so this planner continues its run at once.
    gone = host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))
    if gone and lease.take_over(conn, job, holder, me, now=now, seconds=LEASE_S):
        return
    raise StillPlanning(
        f"a backfill into {job.removeprefix('plan:')} is being planned now by {holder}: "
        "wait for it to finish (`mirror runs` shows it planning)"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stopped(conn: sa.Connection, run_id: int) -> str:
    state = conn.scalar(sa.select(RUNS.c.state).where(RUNS.c.id == run_id))
    if state == "paused":
        return (
            f"run {run_id} was paused while it was planned: `mirror runs resume {run_id}` lets "
            "what it queued go, and the same backfill again plans the rest"
        )
    return f"run {run_id} was {state or 'removed'} while it was planned"


def _planning_run(
    conn: sa.Connection, target: Target, run_options: dict[str, Any], now: datetime
) -> tuple[int, dict[str, Any] | None]:
    """The run this plan continues (one left in `planning` by a crash), or a new one."""
    paused = conn.scalar(
        sa.select(RUNS.c.id).where(
            RUNS.c.target == target.id, RUNS.c.state == "paused", RUNS.c.progress.is_not(None)
        )
    )
    if paused is not None:
        raise StillPlanning(
            f"run {paused} into {target.id} was paused while it was planned: `mirror runs "
            f"resume {paused}`, then this backfill again plans the rest"
        )
    left = conn.execute(
        sa.select(RUNS.c.id, RUNS.c.options, RUNS.c.progress)
        .where(RUNS.c.target == target.id, RUNS.c.state == PLANNING)
        .order_by(RUNS.c.id.desc())
        .limit(1)
    ).first()
    if left is not None:
        if _comparable(left.options) != _comparable(run_options):
            raise StillPlanning(
                f"run {left.id} into {target.id} was interrupted while it was planned, with "
                "other options: run that backfill again to finish it, or `mirror runs cancel "
                f"{left.id}`"
            )
        return int(left.id), left.progress
    run_id = conn.execute(
        sa.insert(RUNS)
        .values(
            target=target.id,
            inbox=target.inbox,
            options=run_options,
            state=PLANNING,
            items=0,
            software=target.software,
            version=target.version,
            created_at=now,
            updated_at=now,
        )
        .returning(RUNS.c.id)
    ).scalar_one()
    return int(run_id), None


def _comparable(options: dict[str, Any]) -> dict[str, Any]:
    # The pace and the attribution may be chosen anew; what is planned may not.
    return {k: options.get(k) for k in ("to", "from", "since", "limit")}


def _published(conn: sa.Connection, item_ids: Iterator[str]) -> Iterator[str]:
    """Those of these items that were mirrored anywhere (their objects get Deletes)."""
    batch: list[str] = []

    def found(ids: list[str]) -> list[str]:
        have = set(
            conn.scalars(
                sa.select(PUBLICATIONS.c.item_id).where(PUBLICATIONS.c.item_id.in_(ids)).distinct()
            )
        )
        return [i for i in ids if i in have]

    for item_id in item_ids:
        batch.append(item_id)
        if len(batch) >= IN_BATCH:
            yield from found(batch)
            batch = []
    if batch:
        yield from found(batch)
