"""Follower copies: each post and comment a hosted Group announced to a follower's server,
as a row whose state says whether that server holds it.

A hosted Group's own publications are confirmed at once (the Group holds
them), but a 2xx from a follower's server is not proof: PieFed runs
`can_create_post` on an announced post and answers 200 to what it drops.
So where the server's software has a lookup (mirror.publish.servers), an
Announce{Create} of a post or comment queued for it gets a row here
(queued), which moves with its delivery: sent at the 2xx, then asked about
by the publication job (mirror.publish.follower_checks), as a publication
is. A server without a lookup gets no rows: `mirror communities status`
says it is unverifiable.

Rows are written in bulk with the Announces they follow (a backlog is
thousands of them), and the job reads only rows it may move (a partial index).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.bulk import bulk_insert
from mirror.db.models import FollowerCopy, HostedBacklog
from mirror.delivery.enqueue import host_of
from mirror.delivery.states import State as DeliveryState
from mirror.publish.confirm import Window
from mirror.publish.from_deliveries import delivery_values
from mirror.publish.records import (
    BATCH,
    DELIVERIES,
    NO_LOOKUP,
    software_name,
    state_values,
)
from mirror.publish.servers import server_for
from mirror.publish.states import State

COPIES = table_of(FollowerCopy)
BACKLOGS = table_of(HostedBacklog)
#: Copies the job may still move by itself (the states of the partial index).
OPEN = (State.WAITING, State.QUEUED, State.HELD, State.SENT, State.MISSING)


def move(conn: sa.Connection, copy_id: int, source: State, values: dict[str, Any]) -> int:
    """Change a row still in ``source`` (another step may have moved it meanwhile)."""
    result = conn.execute(
        sa.update(COPIES)
        .where(COPIES.c.id == copy_id, COPIES.c.state == source.value)
        .values(**values)
    )
    return result.rowcount or 0


def can_ask(software: str | None, unverifiable: str | None) -> bool:
    """Whether a server can be asked what it holds: its software has a lookup, and its
    lookup did not answer that it is off."""
    return server_for(software).lookup_path is not None and not unverifiable


def unverifiable_reason(software: str | None, unverifiable: str | None) -> str | None:
    """Why nothing tells whether the server stored what it got (None: it can be asked)."""
    if unverifiable:
        return unverifiable
    if server_for(software).lookup_path is None:
        return NO_LOOKUP.format(server=software_name(software))
    return None


class Tracker:
    """The copies of one Group's announces, gathered while a run or a backlog queues
    them and written at ``flush`` (after the Announces)."""

    def __init__(self, conn: sa.Connection, group: str) -> None:
        self.conn = conn
        self.group = group
        #: The servers that can be asked, by host (one query per run or backlog).
        self.askable = {
            row.host
            for row in conn.execute(
                sa.select(BACKLOGS.c.host, BACKLOGS.c.software, BACKLOGS.c.unverifiable).where(
                    BACKLOGS.c.community == group
                )
            )
            if can_ask(row.software, row.unverifiable)
        }
        self._rows: list[dict[str, Any]] = []

    def announced(
        self,
        *,
        inboxes: Iterable[str],
        object_id: str,
        kind: str,
        actor: str,
        parent_id: str | None,
        activity_id: str,
        now: datetime,
    ) -> None:
        """An Announce{Create} of a post or comment was queued for ``inboxes``."""
        for inbox in inboxes:
            host = host_of(inbox)
            if host not in self.askable:
                continue
            self._rows.append(
                {
                    "community": self.group,
                    "host": host,
                    "inbox": inbox,
                    "object_id": object_id,
                    "kind": kind,
                    "actor": actor,
                    "parent_id": parent_id,
                    "activity_id": activity_id,
                    "state": State.QUEUED.value,
                    "reason": None,
                    "due_at": None,
                    "sends": 1,
                    "checks": 0,
                    "sent_at": None,
                    "confirmed_at": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )

    def flush(self) -> None:
        rows, self._rows = self._rows, []
        # A copy the server has already (a backlog started again) keeps its row.
        bulk_insert(self.conn, COPIES, rows, ignore_conflicts=True)


# -- moved by the backlog and by operators ----------------------------------------------


def stopped(conn: sa.Connection, *, group: str, host: str, now: datetime) -> None:
    """The server's last follower left (its Announces were cancelled): nothing is asked."""
    conn.execute(
        sa.update(COPIES)
        .where(
            COPIES.c.community == group,
            COPIES.c.host == host,
            COPIES.c.state.in_([s.value for s in OPEN]),
        )
        .values(state_values(State.CANCELLED, "the server's last follower left", now))
    )


def resumed(conn: sa.Connection, *, group: str, host: str, now: datetime) -> None:
    """A follower there again: the cancelled copies follow their deliveries once more
    (a delivered one becomes sent and is asked about; a pending one waits for it)."""
    conn.execute(
        sa.update(COPIES)
        .where(
            COPIES.c.community == group,
            COPIES.c.host == host,
            COPIES.c.state == State.CANCELLED.value,
        )
        .values(state_values(State.QUEUED, None, now))
    )


def requeued(conn: sa.Connection, activity_ids: list[str], *, now: datetime) -> None:
    """A re-run queued failed or cancelled Announces again: their copies follow them."""
    if not activity_ids:
        return
    conn.execute(
        sa.update(COPIES)
        .where(
            COPIES.c.activity_id.in_(activity_ids),
            COPIES.c.state.in_([State.REFUSED.value, State.FAILED.value, State.CANCELLED.value]),
        )
        .values(state_values(State.QUEUED, None, now))
    )


# -- from deliveries ------------------------------------------------------------------

#: Copies whose Announce's delivery to the server moved on: a queued one was
#: answered or held, a held one let go.
CHANGED = (
    sa.select(
        COPIES.c.id,
        COPIES.c.state,
        BACKLOGS.c.software,
        BACKLOGS.c.unverifiable,
        DELIVERIES.c.state.label("delivery_state"),
        DELIVERIES.c.last_status,
        DELIVERIES.c.last_error,
        DELIVERIES.c.delivered_at,
    )
    .join(
        DELIVERIES,
        sa.and_(
            DELIVERIES.c.activity_id == COPIES.c.activity_id,
            DELIVERIES.c.inbox == COPIES.c.inbox,
        ),
    )
    .join(
        BACKLOGS,
        sa.and_(BACKLOGS.c.community == COPIES.c.community, BACKLOGS.c.host == COPIES.c.host),
        isouter=True,
    )
    .where(
        sa.or_(
            sa.and_(
                COPIES.c.state == State.QUEUED.value,
                DELIVERIES.c.state != DeliveryState.PENDING.value,
            ),
            sa.and_(
                COPIES.c.state == State.HELD.value,
                DELIVERIES.c.state != DeliveryState.PARKED.value,
            ),
        )
    )
)


def advance_from_deliveries(conn: sa.Connection, *, now: datetime, window: Window) -> int:
    """Copies whose delivery was answered, held or let go; returns how many moved."""
    moved = 0
    for row in conn.execute(CHANGED.limit(BATCH)).all():
        values = delivery_values(
            row,
            unverifiable=unverifiable_reason(row.software, row.unverifiable),
            now=now,
            window=window,
        )
        moved += move(conn, row.id, State(row.state), values)
    return moved


# -- what operators see ---------------------------------------------------------------


def counts(conn: sa.Connection, group: str) -> dict[str, dict[str, int]]:
    """Each server's copies of the Group's posts and comments, by state (one query)."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for host, state, count in conn.execute(
        sa.select(COPIES.c.host, COPIES.c.state, sa.func.count())
        .where(COPIES.c.community == group)
        .group_by(COPIES.c.host, COPIES.c.state)
    ):
        out[host][state] = int(count)
    return dict(out)
