"""Publishing: activities built, recorded and queued, one delivery row per inbox.

An activity too large for a receiver is refused before anything is written.
Deliveries to a host known to be dead are queued parked. Deliveries that
keep a pace (a paced backfill run's posts) name it, and each of its lanes
(one per destination server) is created with them: the claim takes them
one lane slot at a time (mirror.delivery.claim).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from mirror.db.bulk import bulk_insert
from mirror.delivery.states import PARKED_DEAD, State, stored_in
from mirror.delivery.tables import ACTIVITIES, DELIVERIES, HOSTS, PACES
from mirror.errors import MirrorError
from mirror.vocab.activities import build
from mirror.vocab.ids import Urls

#: Lemmy reads at most 256 KiB of an inbox POST (actix-web's default).
MAX_ACTIVITY_BYTES = 256 * 1024


class TooLarge(MirrorError):
    """An activity too large for the receiver; refused before anything is sent."""


@dataclass(frozen=True, slots=True)
class Pace:
    """A paced stream: at most one of its deliveries per ``interval_s`` to each server.

    ``id`` names the stream (a backfill run's id); the queue knows no more of it.
    """

    id: int
    interval_s: float

    @classmethod
    def per_minute(cls, stream: int, rate: float) -> Pace | None:
        """``rate`` deliveries a minute; None (unpaced) for a rate of 0."""
        return cls(stream, 60.0 / rate) if rate > 0 else None


def new_activity_id() -> str:
    return uuid.uuid4().hex


def host_of(inbox: str) -> str:
    """The server an inbox belongs to (host:port when a port is given)."""
    return urlsplit(inbox).netloc.lower()


class Outbox:
    """Activities published together: each built at once, all written at ``flush``.

    A backfill publishes thousands of activities in one transaction; an
    insert per activity and a host lookup and an insert per delivery batch
    cost a round trip each (20,000 took 18 s on PostgreSQL). Rows go in in
    the order of the ``publish`` calls, so the queue's per-object order
    (row ids) is the one publishing them one at a time gives.
    """

    def __init__(self, conn: sa.Connection, *, urls: Urls) -> None:
        self.conn = conn
        self.urls = urls
        self._activities: list[dict[str, Any]] = []
        self._deliveries: list[_Enqueued] = []

    def __len__(self) -> int:
        return len(self._activities)

    def publish(
        self,
        *,
        username: str,
        recipe: dict[str, Any],
        inboxes: Iterable[str],
        now: datetime,
        public: bool = False,
        depends_on: str | None = None,
        activity_id: str | None = None,
        due_at: datetime | None = None,
        run_id: int | None = None,
        pace: Pace | None = None,
        about: str | None = None,
        due_by_host: dict[str, datetime] | None = None,
    ) -> str:
        """Build the activity (refused now if too large); returns its id.

        ``due_at`` schedules the first attempt (a floor); default now;
        ``due_by_host`` a later floor for the inboxes of some servers (one
        whose new-account limit would drop it before then).
        ``pace`` spaces its deliveries with the others of that pace, whatever
        their due times (which pass during an outage). ``about`` is the object
        it concerns when that is not its `object` (an Announce is about the
        object of the activity it embeds): the queue orders by it.
        """
        activity_id = activity_id or new_activity_id()
        document = build(self.urls, recipe, activity_id=activity_id)
        size = len(json.dumps(document, separators=(",", ":")).encode())
        if size > MAX_ACTIVITY_BYTES:
            raise TooLarge(
                f"{document['type']} {document['id']} is {size} bytes; receivers take at most "
                f"{MAX_ACTIVITY_BYTES}"
            )
        obj = document.get("object")
        object_id = about or (
            obj if isinstance(obj, str) else obj.get("id") if isinstance(obj, dict) else None
        )
        self._activities.append(
            {
                "id": activity_id,
                "actor": username,
                "type": document["type"],
                "object_id": object_id,
                "depends_on": depends_on,
                "recipe": recipe,
                "public": public,
                "json": document,
                "created_at": now,
                "run_id": run_id,
            }
        )
        self._deliveries.append(
            _Enqueued(
                activity_id,
                object_id or document["id"],
                depends_on,
                tuple(inboxes),
                now,
                due_at,
                pace,
                due_by_host or {},
            )
        )
        return activity_id

    def flush(self) -> None:
        """Record the activities (served at their ids) and queue their deliveries."""
        if not self._activities:
            return
        bulk_insert(self.conn, ACTIVITIES, self._activities)
        _enqueue(self.conn, self._deliveries)
        self._activities, self._deliveries = [], []


def publish(conn: sa.Connection, *, urls: Urls, **activity: Any) -> str:
    """Build one activity, record it and enqueue it: an Outbox of one.

    ``activity`` holds :meth:`Outbox.publish`'s arguments.
    """
    outbox = Outbox(conn, urls=urls)
    activity_id = outbox.publish(**activity)
    outbox.flush()
    return activity_id


@dataclass(frozen=True, slots=True)
class _Enqueued:
    activity_id: str
    ordering_key: str
    depends_on: str | None
    inboxes: Iterable[str]
    now: datetime
    due_at: datetime | None
    pace: Pace | None = None
    due_by_host: dict[str, datetime] = field(default_factory=dict)


_HOSTS_DEAD_SINCE = sa.select(HOSTS.c.host, HOSTS.c.dead_since).where(
    HOSTS.c.host.in_(sa.bindparam("hosts", expanding=True))
)
#: Hosts looked up per statement.
_HOSTS_PER_LOOKUP = 500


def enqueue_batch(
    conn: sa.Connection,
    entries: Iterable[tuple[str, str, str | None, str]],
    *,
    now: datetime,
    pace_of: dict[str, Pace],
    due_of: dict[str, datetime] | None = None,
) -> int:
    """Stored activities queued for more inboxes, in this order: each entry is
    (activity id, ordering key, depends on, inbox); ``pace_of`` the pace of
    the activities that keep one, ``due_of`` the first attempt of those that
    must wait (default now). (An (activity, inbox) already queued is left alone.)"""
    due_of = due_of or {}
    return _enqueue(
        conn,
        [
            _Enqueued(
                activity_id,
                key,
                depends_on,
                (inbox,),
                now,
                due_of.get(activity_id),
                pace_of.get(activity_id),
            )
            for activity_id, key, depends_on, inbox in entries
        ],
    )


def enqueue(
    conn: sa.Connection,
    *,
    activity_id: str,
    ordering_key: str,
    depends_on: str | None,
    inboxes: Iterable[str],
    now: datetime,
    due_at: datetime | None = None,
    pace: Pace | None = None,
) -> int:
    """One row per inbox; an (activity, inbox) already queued is left alone."""
    return _enqueue(
        conn,
        [_Enqueued(activity_id, ordering_key, depends_on, tuple(inboxes), now, due_at, pace)],
    )


def _enqueue(conn: sa.Connection, batch: Sequence[_Enqueued]) -> int:
    targets = [sorted(set(entry.inboxes)) for entry in batch]
    hosts = sorted({host_of(t) for inboxes in targets for t in inboxes})
    known: dict[str, datetime | None] = {}
    for start in range(0, len(hosts), _HOSTS_PER_LOOKUP):
        chunk = hosts[start : start + _HOSTS_PER_LOOKUP]
        known.update(
            {host: since for host, since in conn.execute(_HOSTS_DEAD_SINCE, {"hosts": chunk})}
        )
    # Claims look for work host by host, so every destination has a row.
    # Inserted only when missing: an insert that conflicts still costs a
    # statement per enqueue (a backfill enqueues to the same host all day).
    missing = [{"host": h, "consecutive_failures": 0} for h in hosts if h not in known]
    bulk_insert(conn, HOSTS, missing, ignore_conflicts=True)
    dead = {host: since for host, since in known.items() if since is not None}
    rows = []
    lanes: dict[tuple[int, str], float] = {}
    for entry, inboxes in zip(batch, targets, strict=True):
        for inbox in inboxes:
            host = host_of(inbox)
            parked = host in dead
            if entry.pace is not None:
                lanes[(entry.pace.id, host)] = entry.pace.interval_s
            rows.append(
                {
                    "activity_id": entry.activity_id,
                    "inbox": inbox,
                    "host": host,
                    "ordering_key": entry.ordering_key,
                    "depends_on": entry.depends_on,
                    "state": State.PARKED if parked else State.PENDING,
                    "attempts": 0,
                    "unknown_errors": 0,
                    "next_attempt_at": max(
                        entry.due_at or entry.now, entry.due_by_host.get(host, entry.now)
                    ),
                    "last_error": f"{PARKED_DEAD} {dead[host].isoformat()}" if parked else None,
                    "pace_id": entry.pace.id if entry.pace is not None else None,
                    "created_at": entry.now,
                    "updated_at": entry.now,
                }
            )
    add_lanes(conn, lanes)
    bulk_insert(conn, DELIVERIES, rows, ignore_conflicts=True)
    return len(rows)


def add_lanes(conn: sa.Connection, lanes: dict[tuple[int, str], float]) -> None:
    """Each (pace, host) lane that deliveries are queued on, free until its first claim.

    A lane that exists keeps its time: a re-publication of a run takes the
    next slot after the run's earlier posts.
    """
    bulk_insert(
        conn,
        PACES,
        [
            {"id": pace, "host": host, "interval_s": interval, "next_at": None}
            for (pace, host), interval in sorted(lanes.items())
        ],
        ignore_conflicts=True,
    )


def _given_up(activity_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (
        DELIVERIES.c.activity_id == activity_id,
        stored_in(DELIVERIES.c.state, State.FAILED, State.CANCELLED),
    )


def requeueable(conn: sa.Connection, activity_id: str) -> bool:
    """Whether :func:`requeue` would queue any of the activity's deliveries again."""
    return bool(conn.scalar(sa.select(sa.exists().where(*_given_up(activity_id)))))


def requeue(
    conn: sa.Connection,
    activity_id: str,
    *,
    now: datetime,
    due_at: datetime | None = None,
    pace: Pace | None = None,
) -> int:
    """An activity's failed or cancelled deliveries go back in the queue (a re-run).

    With ``pace`` they keep that pace from now on (the run that queues them again).
    """
    where = _given_up(activity_id)
    if pace is not None:
        hosts = conn.scalars(sa.select(DELIVERIES.c.host).where(*where).distinct()).all()
        add_lanes(conn, {(pace.id, host): pace.interval_s for host in hosts})
    result = conn.execute(
        sa.update(DELIVERIES)
        .where(*where)
        .values(
            state=State.PENDING,
            next_attempt_at=due_at or now,
            pace_id=pace.id if pace is not None else None,
            # A new start: its retries get their horizon again, as `mirror retry` gives.
            first_attempt_at=None,
            unknown_errors=0,
            updated_at=now,
        )
    )
    return result.rowcount or 0


def refresh_statistics(conn: sa.Connection) -> None:
    """After enqueueing many rows at once, let PostgreSQL's planner see them.

    Until autovacuum's next ANALYZE (up to a minute or more), a freshly filled
    queue looks empty to the planner, which then checks a claim's ordering
    rule by scanning every earlier row of the host for every candidate:
    seconds per claim at ten thousand rows instead of milliseconds.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ANALYZE delivery, activity")
