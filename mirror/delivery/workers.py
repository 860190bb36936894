"""Delivery workers register with a heartbeat; a dead one's leases are released.

A lease names its worker and runs for `[delivery].lease_s` (2 minutes by
default). A worker that dies (SIGKILL, its machine lost) leaves its leases
behind, and until they expire they count toward the per-host limit: the
host gets less than it may take, or nothing. So each worker beats, and a
worker that has missed MISSED_BEATS of its own intervals is taken for dead
by any other that looks (a survivor, or the one that replaced it): that one
releases the dead worker's leases, and its rows are repeated with the ids
they had (mirror.delivery.claim).

On SQLite one process claims (mirror.delivery.worker.ClaimerLock): the
process that takes the lock knows every other registered worker is dead,
and releases their leases at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from mirror.db.bulk import bulk_insert
from mirror.delivery.record import release
from mirror.delivery.tables import WORKERS

#: Beats a worker may miss before it is taken for dead.
MISSED_BEATS = 3
#: Beats per lease, so that a dead worker is found (MISSED_BEATS of them)
#: in a quarter of the time its leases would take to expire.
BEATS_PER_LEASE = 12
#: Bounds on the interval: no busier than twice a second, never slower than
#: every 10 s (the default 120 s lease gives 10 s: found dead within 30 s).
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.5, 10.0


def heartbeat_interval(lease_s: float) -> float:
    """Seconds between a worker's beats, for its lease length."""
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, lease_s / BEATS_PER_LEASE))


@dataclass(frozen=True, slots=True)
class Released:
    """A dead worker whose leases were given back."""

    worker: str
    last_beat: datetime
    leases: int


def register(conn: sa.Connection, worker: str, *, now: datetime, interval_s: float) -> None:
    """Say this worker runs, beating every ``interval_s``."""
    bulk_insert(
        conn,
        WORKERS,
        [{"id": worker, "started_at": now, "heartbeat_at": now, "heartbeat_s": interval_s}],
        update_on="id",
        update=("heartbeat_at", "heartbeat_s"),
    )


def beat(conn: sa.Connection, worker: str, *, now: datetime, interval_s: float) -> bool:
    """Renew this worker's heartbeat; False when it had been taken for dead.

    (Its leases were released then: what it still records for them is
    dropped, and the rows are repeated by whoever claims them.) It is
    registered again either way.
    """
    result = conn.execute(sa.update(WORKERS).where(WORKERS.c.id == worker).values(heartbeat_at=now))
    if result.rowcount:
        return True
    register(conn, worker, now=now, interval_s=interval_s)
    return False


def leave(conn: sa.Connection, worker: str) -> None:
    """A worker that stops (after giving back its leases) is no longer listed."""
    conn.execute(sa.delete(WORKERS).where(WORKERS.c.id == worker))


def release_dead(
    conn: sa.Connection, *, me: str, now: datetime, all_others: bool = False
) -> list[Released]:
    """Release the leases of every worker that missed MISSED_BEATS beats.

    ``all_others``: every other registered worker is known to be dead (this
    one holds SQLite's claimer lock). A worker is removed only if its
    heartbeat is still the one read here, so one that beats again meanwhile
    (a process that was stopped and continued) keeps its leases.
    """
    found = []
    for row in conn.execute(
        sa.select(WORKERS.c.id, WORKERS.c.heartbeat_at, WORKERS.c.heartbeat_s).where(
            WORKERS.c.id != me
        )
    ):
        silent = now - row.heartbeat_at > timedelta(seconds=MISSED_BEATS * row.heartbeat_s)
        if not (all_others or silent):
            continue
        removed = conn.execute(
            sa.delete(WORKERS).where(
                WORKERS.c.id == row.id, WORKERS.c.heartbeat_at == row.heartbeat_at
            )
        ).rowcount
        if removed:
            found.append(Released(row.id, row.heartbeat_at, release(conn, row.id)))
    return found


def alive(conn: sa.Connection, now: datetime) -> int:
    """How many workers are beating (`serve` runs one, so does each `worker`)."""
    rows = conn.execute(sa.select(WORKERS.c.heartbeat_at, WORKERS.c.heartbeat_s)).all()
    return sum(
        1
        for row in rows
        if now - row.heartbeat_at <= timedelta(seconds=MISSED_BEATS * row.heartbeat_s)
    )
