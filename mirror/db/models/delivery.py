"""The delivery queue: one row per (activity, inbox), and per-host health."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mirror.db.base import Base
from mirror.db.types import UTCDateTime

URL = sa.String(2048)
TZ = UTCDateTime()
#: A 64-bit id on PostgreSQL; SQLite autoincrements only INTEGER PRIMARY KEY.
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

PENDING_ROWS = "state = 'pending'"
OUTSTANDING_ROWS = "state IN ('pending', 'parked')"
#: Everything but the bulk: operators' counts read these and subtract from the total.
UNSENT_ROWS = "state != 'delivered'"


def _where(condition: str) -> dict[str, sa.TextClause]:
    """A partial index's condition, on both backends."""
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


class Delivery(Base):
    """One activity to one inbox: a small state machine advanced by workers.

    Stored states: pending, delivered, failed, cancelled, parked. A lease
    (locked_by, locked_until) is columns, not a state: operators see a
    leased pending row as in_flight, and a pending row with attempts as
    retrying (mirror.delivery.states).
    """

    __tablename__ = "delivery"
    __table_args__ = (
        sa.UniqueConstraint("activity_id", "inbox"),
        # The queue's indexes hold only rows still to send (and parked ones,
        # which block what comes after them): a delivered row, the bulk of the
        # table, costs no entries in them when it is marked delivered.
        # Queries name the states as literals (mirror.delivery.states.stored_in).
        sa.Index("ix_delivery_pending_due", "next_attempt_at", **_where(PENDING_ROWS)),
        # Is anything earlier to the same host still outstanding?
        sa.Index(
            "ix_delivery_outstanding_order",
            "host",
            "ordering_key",
            "id",
            **_where(OUTSTANDING_ROWS),
        ),
        # A claim walks one host's due rows in order and stops at its quota.
        sa.Index(
            "ix_delivery_host_pending", "host", "next_attempt_at", "id", **_where(PENDING_ROWS)
        ),
        # Counting a host's requests in flight reads only leased rows.
        sa.Index(
            "ix_delivery_leased",
            "host",
            "locked_until",
            **_where("locked_by IS NOT NULL"),
        ),
        # Counting by operator state (mirror.delivery.operate.status) reads
        # this and the table's count: delivered = total - the rest.
        sa.Index("ix_delivery_unsent", "state", "attempts", "locked_until", **_where(UNSENT_ROWS)),
    )

    id: Mapped[int] = mapped_column(BIGID, primary_key=True, autoincrement=True)
    activity_id: Mapped[str] = mapped_column(sa.String(64), sa.ForeignKey("activity.id"))
    inbox: Mapped[str] = mapped_column(URL)
    host: Mapped[str] = mapped_column(sa.String(255))
    #: What the activity is about (its object's id): Create < Update < Delete.
    ordering_key: Mapped[str] = mapped_column(URL)
    #: The object this one needs delivered first to the same host (a parent).
    depends_on: Mapped[str | None] = mapped_column(URL)
    state: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(TZ)
    first_attempt_at: Mapped[datetime | None] = mapped_column(TZ)
    attempt_started_at: Mapped[datetime | None] = mapped_column(TZ)
    attempt_finished_at: Mapped[datetime | None] = mapped_column(TZ)
    #: The activity id of the last attempt: a retry sends it again (a receiver
    #: recognises the repeat); None after the receiver refused it, when the
    #: next attempt (an operator's retry) gets a new id.
    sent_activity_id: Mapped[str | None] = mapped_column(sa.String(64))
    last_status: Mapped[int | None] = mapped_column(sa.Integer)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    #: Lemmy's generic "unknown" answers so far (retried a few times only).
    unknown_errors: Mapped[int] = mapped_column(sa.Integer, default=0)
    locked_by: Mapped[str | None] = mapped_column(sa.String(64))
    locked_until: Mapped[datetime | None] = mapped_column(TZ)
    #: The pace it keeps, if any (a paced backfill run's id): see DeliveryPace.
    pace_id: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(TZ)
    updated_at: Mapped[datetime] = mapped_column(TZ)
    delivered_at: Mapped[datetime | None] = mapped_column(TZ)


class DeliveryHost(Base):
    """A destination server's health: circuit breaker, dead mark, pacing."""

    __tablename__ = "delivery_host"

    host: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    consecutive_failures: Mapped[int] = mapped_column(sa.Integer, default=0)
    breaker_open_until: Mapped[datetime | None] = mapped_column(TZ)
    breaker_cooloff_s: Mapped[int | None] = mapped_column(sa.Integer)
    failing_since: Mapped[datetime | None] = mapped_column(TZ)
    dead_since: Mapped[datetime | None] = mapped_column(TZ)
    last_success_at: Mapped[datetime | None] = mapped_column(TZ)
    last_failure_at: Mapped[datetime | None] = mapped_column(TZ)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    last_request_at: Mapped[datetime | None] = mapped_column(TZ)


class DeliveryPace(Base):
    """A paced stream's lane to one destination server: when its next delivery may go.

    A paced backfill run's posts (their Creates, Updates and re-publications)
    carry the run's id as their pace; the claim takes one of them per lane
    only when `next_at` has come, and moves it on by `interval_s`. Due times
    alone are floors: after an outage or a crash every one of them has
    passed, and the backlog would go at once.
    """

    __tablename__ = "delivery_pace"
    # Each claim asks whether any lane waits for its next slot.
    __table_args__ = (sa.Index("ix_delivery_pace_next_at", "next_at"),)

    #: The stream's id (a backfill run's).
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    host: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    interval_s: Mapped[float] = mapped_column(sa.Float)
    #: When the next delivery of this lane may be claimed (None: now).
    next_at: Mapped[datetime | None] = mapped_column(TZ)


class DeliveryWorker(Base):
    """A running delivery worker and its heartbeat.

    A worker that stops beating (killed, its machine gone) is taken for dead
    after three of its own intervals, and another worker releases its leases:
    until they expire they would count toward the per-host limit.
    """

    __tablename__ = "delivery_worker"

    #: The worker's id, as its leases name it (Delivery.locked_by).
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(TZ)
    heartbeat_at: Mapped[datetime] = mapped_column(TZ)
    #: Its interval between beats (each worker is judged by its own).
    heartbeat_s: Mapped[float] = mapped_column(sa.Float)
