"""The publication rows: table handles, the one guarded move, and what every step formats.

The steps that move the rows (mirror.publish.from_deliveries, .confirm,
.release) and the operators' views (mirror.publish.publications) share these.
The graph is mirror.publish.states.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mirror.db.base import table_of
from mirror.db.models import Activity, BackfillRun, Delivery, LocalActor, Publication
from mirror.publish.states import State

PUBLICATIONS = table_of(Publication)
RUNS = table_of(BackfillRun)
DELIVERIES = table_of(Delivery)
ACTIVITIES = table_of(Activity)
ACTORS = table_of(LocalActor)
#: The target of comments whose post is unknown: the followers, no community.
FOLLOWERS_ONLY = "followers"
#: Rows one step reads at most (the job comes back for the rest).
BATCH = 500
#: Lookups that fail for a passing reason are asked again this much later.
LATER = timedelta(seconds=30)
#: Given to the operator when a run's target has no lookup.
NO_LOOKUP = "{server} offers no lookup of objects; the delivery got a 2xx"
NOW = sa.bindparam("now", type_=PUBLICATIONS.c.due_at.type)


def state_values(state: State, reason: str | None, now: datetime) -> dict[str, Any]:
    return {"state": state.value, "reason": reason, "due_at": None, "updated_at": now}


def move(conn: sa.Connection, publication_id: str, source: State, values: dict[str, Any]) -> int:
    """Change a row still in ``source`` (another step may have moved it meanwhile)."""
    result = conn.execute(
        sa.update(PUBLICATIONS)
        .where(PUBLICATIONS.c.id == publication_id, PUBLICATIONS.c.state == source.value)
        .values(**values)
    )
    return result.rowcount or 0


def actor_created(conn: sa.Connection, username: str) -> datetime | None:
    # The actor document's `published` is its created_at (mirror.vocab.actor).
    return conn.scalar(sa.select(ACTORS.c.created_at).where(ACTORS.c.username == username))


def first_line(text: str | None) -> str | None:
    return text.strip().splitlines()[0][:500] if text and text.strip() else text


def software_name(software: str | None) -> str:
    return software or "the target's software (unknown)"


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def hours(age: timedelta) -> str:
    return f"{age.total_seconds() / 3600:g} h"
