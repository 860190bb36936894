"""Publications moved by lookups: confirmed, missing (with why and when to go again).

mirror.publish.lookup asks the target; this records what it said.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import sqlalchemy as sa

from mirror.delivery.backoff import Policy, next_attempt_at
from mirror.publish.lookup import Answer, Found, Later, NotFound, Unavailable
from mirror.publish.records import (
    BATCH,
    LATER,
    NOW,
    PUBLICATIONS,
    RUNS,
    actor_created,
    iso,
    move,
    state_values,
)
from mirror.publish.servers import MARGIN, server_for
from mirror.publish.states import HOLDS_REPLIES, State


@dataclass(frozen=True, slots=True)
class Window:
    """How long after a 2xx we look for an object, and how often."""

    #: The last lookup comes this long after the 2xx; not found then: missing.
    seconds: float

    def next_check(self, sent_at: datetime, checks: int) -> datetime | None:
        """Lookups at 1, 3, 9, 27 ... seconds after sending, the last at the window's end."""
        if checks > 0 and 3 ** (checks - 1) >= self.seconds:
            return None
        return sent_at + timedelta(seconds=min(3**checks, self.seconds))


# -- lookups ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    """A sent publication due for a lookup."""

    id: str
    kind: str
    target: str
    host: str
    software: str | None
    actor: str
    sent_at: datetime
    checks: int
    sends: int
    parent_id: str | None
    created_at: datetime


#: Lookups due, the earliest few of each target: one busy target's backlog
#: does not keep another's lookups waiting (each server has its own pace).
PER_TARGET = 4
_RANKED = (
    sa.select(
        PUBLICATIONS.c.id,
        PUBLICATIONS.c.kind,
        PUBLICATIONS.c.target,
        RUNS.c.software,
        PUBLICATIONS.c.actor,
        PUBLICATIONS.c.sent_at,
        PUBLICATIONS.c.checks,
        PUBLICATIONS.c.sends,
        PUBLICATIONS.c.parent_id,
        PUBLICATIONS.c.created_at,
        PUBLICATIONS.c.due_at,
        sa.func.row_number()
        .over(
            partition_by=PUBLICATIONS.c.target,
            order_by=(PUBLICATIONS.c.due_at, PUBLICATIONS.c.id),
        )
        .label("rank"),
    )
    .join(RUNS, RUNS.c.id == PUBLICATIONS.c.run_id)
    .where(
        PUBLICATIONS.c.state == State.SENT.value,
        PUBLICATIONS.c.due_at <= NOW,
    )
    .subquery()
)
_DUE_CHECKS = (
    sa.select(*(c for c in _RANKED.c if c.name not in ("rank", "due_at")))
    .where(_RANKED.c.rank <= PER_TARGET)
    .order_by(_RANKED.c.due_at, _RANKED.c.id)
    .limit(sa.bindparam("limit", type_=sa.Integer()))
)


def due_checks(conn: sa.Connection, *, now: datetime, limit: int = BATCH) -> list[Check]:
    return [
        Check(host=urlsplit(row.target).netloc, **row._asdict())
        for row in conn.execute(_DUE_CHECKS, {"now": now, "limit": limit})
    ]


@dataclass(frozen=True, slots=True)
class Rules:
    window: Window
    #: Re-publications of a missing item back off like deliveries, to this horizon.
    policy: Policy


def answered(
    answer: Answer,
    *,
    sent_at: datetime,
    checks: int,
    now: datetime,
    rules: Rules,
    missing: Callable[[NotFound], dict[str, Any]],
) -> dict[str, Any] | None:
    """A sent row's new values for a lookup's answer: confirmed, asked again later,
    or ``missing`` at the window's end; None when the server cannot be asked
    (Unavailable: the caller marks it). Pushes and follower copies alike."""
    if isinstance(answer, Found):
        return {**state_values(State.CONFIRMED, None, now), "confirmed_at": now}
    if isinstance(answer, Unavailable):
        return None
    if isinstance(answer, Later):
        return {"due_at": now + LATER, "reason": answer.reason, "updated_at": now}
    assert isinstance(answer, NotFound)
    due = rules.window.next_check(sent_at, checks + 1)
    if due is not None:
        return {"checks": checks + 1, "due_at": due, "updated_at": now}
    return missing(answer)


def record_check(
    conn: sa.Connection, check: Check, answer: Answer, *, now: datetime, rules: Rules
) -> State:
    """What one lookup showed; returns the publication's new state."""
    values = answered(
        answer,
        sent_at=check.sent_at,
        checks=check.checks,
        now=now,
        rules=rules,
        missing=lambda found: _missing(conn, check, found, now=now, rules=rules),
    )
    if values is None:
        assert isinstance(answer, Unavailable)
        _unverifiable_target(conn, check.target, answer.reason, now)
        return State.UNVERIFIABLE
    move(conn, check.id, State.SENT, values)
    return State(values.get("state", State.SENT))


def _unverifiable_target(conn: sa.Connection, target: str, reason: str, now: datetime) -> None:
    """The target answers no lookups (its API is off, or needs a login): stop asking.

    Its sent publications, and what its runs deliver from now on, become
    unverifiable; their replies go at once. A new run asks again.
    """
    runs = sa.select(RUNS.c.id).where(RUNS.c.target == target)
    conn.execute(sa.update(RUNS).where(RUNS.c.target == target).values(unverifiable=reason))
    conn.execute(
        sa.update(PUBLICATIONS)
        .where(PUBLICATIONS.c.state == State.SENT.value, PUBLICATIONS.c.run_id.in_(runs))
        .values(state_values(State.UNVERIFIABLE, reason, now))
    )


class Sent(Protocol):
    """What the reasoning about a missing object reads: a publication's Check, or a
    follower copy's (mirror.publish.follower_checks)."""

    kind: str
    software: str | None
    actor: str
    sent_at: datetime
    sends: int
    created_at: datetime


def _missing(
    conn: sa.Connection, check: Check, answer: NotFound, *, now: datetime, rules: Rules
) -> dict[str, Any]:
    parent_holds = None
    if check.parent_id is not None:
        parent = conn.execute(
            sa.select(PUBLICATIONS.c.state).where(PUBLICATIONS.c.id == check.parent_id)
        ).scalar()
        parent_holds = parent in HOLDS_REPLIES
    return missing_values(conn, check, answer, now=now, rules=rules, parent_holds=parent_holds)


def missing_values(
    conn: sa.Connection,
    sent: Sent,
    answer: NotFound,
    *,
    now: datetime,
    rules: Rules,
    parent_holds: bool | None,
) -> dict[str, Any]:
    """Not found after the window: why, probably, and when to publish it again.

    The target did not say (PieFed answers 200 to what it refuses), so the
    reason is inferred from what we know of the server and is said as such.
    ``parent_holds``: None for a post (no parent), else whether the target
    holds the parent (or nothing can tell).
    """
    after = f"not found {int(rules.window.seconds)} s after a 2xx ({answer.reason})"
    server = server_for(sent.software)
    if sent.kind == "post" and server.new_account_limit is not None:
        limit = server.new_account_limit
        created = actor_created(conn, sent.actor)
        if created is not None and sent.sent_at < created + limit.age:
            due = created + limit.age + MARGIN
            return {
                **state_values(State.MISSING, None, now),
                "due_at": due,
                "reason": (
                    f"{after}; probably the new-account limit ({limit.source}): "
                    f"@{sent.actor} was created {iso(created)}; published again at {iso(due)}"
                ),
            }
    if parent_holds is False:
        return {
            **state_values(State.WAITING, None, now),
            "reason": f"{after}; probably because its parent is not there: "
            "published again once the parent is confirmed",
        }
    due = next_attempt_at(
        policy=rules.policy, attempts=sent.sends, now=now, first_attempt_at=sent.created_at
    )
    if due is None:
        return {
            **state_values(State.MISSING, None, now),
            "reason": f"{after}; gave up after {sent.sends} publications",
        }
    return {
        **state_values(State.MISSING, None, now),
        "due_at": due,
        "reason": f"{after}; reason unknown: published again at {iso(due)}",
    }
