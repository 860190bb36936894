"""A job that one process runs at a time: whoever holds its unexpired lease row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.bulk import bulk_insert
from mirror.db.models import JobLease

LEASES = table_of(JobLease)
#: An expiry that has passed for everyone.
EXPIRED = datetime(1970, 1, 1, tzinfo=UTC)


def hold(conn: sa.Connection, job: str, holder: str, *, now: datetime, seconds: float) -> bool:
    """Take or renew ``job``'s lease for ``holder``; False while another holds it.

    One statement decides, so two processes asking at once cannot both win:
    the row is created once, then only its holder or anyone after it
    expired may write it.
    """
    bulk_insert(
        conn,
        LEASES,
        [{"name": job, "holder": "", "expires_at": EXPIRED}],
        ignore_conflicts=True,
    )
    result = conn.execute(
        sa.update(LEASES)
        .where(
            LEASES.c.name == job,
            sa.or_(LEASES.c.holder == holder, LEASES.c.expires_at <= now),
        )
        .values(holder=holder, expires_at=now + timedelta(seconds=seconds))
    )
    return bool(result.rowcount)


def fresh(conn: sa.Connection, job: str, holder: str, *, now: datetime, seconds: float) -> bool:
    """``holder`` holds ``job`` with more than half of a ``seconds`` lease left.

    Read without a write transaction: a job that asks twice a second need
    not write its lease (nor take SQLite's write lock) every time.
    """
    current = conn.execute(
        sa.select(LEASES.c.holder, LEASES.c.expires_at).where(LEASES.c.name == job)
    ).first()
    return (
        current is not None
        and current.holder == holder
        and current.expires_at > now + timedelta(seconds=seconds / 2)
    )


def give_up(conn: sa.Connection, job: str, holder: str) -> None:
    """Let another process take the job at once (a graceful stop)."""
    conn.execute(
        sa.update(LEASES)
        .where(LEASES.c.name == job, LEASES.c.holder == holder)
        .values(expires_at=EXPIRED)
    )


def holder_of(conn: sa.Connection, job: str, *, now: datetime) -> str | None:
    row = conn.execute(
        sa.select(LEASES.c.holder, LEASES.c.expires_at).where(LEASES.c.name == job)
    ).first()
    return row.holder if row is not None and row.expires_at > now and row.holder else None


def take_over(
    conn: sa.Connection, job: str, old: str, new: str, *, now: datetime, seconds: float
) -> bool:
    """Give ``old``'s unexpired lease to ``new``: for a holder known to be gone."""
    result = conn.execute(
        sa.update(LEASES)
        .where(LEASES.c.name == job, LEASES.c.holder == old)
        .values(holder=new, expires_at=now + timedelta(seconds=seconds))
    )
    return bool(result.rowcount)
