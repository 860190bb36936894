"""One log line per delivery attempt, written once its outcome is recorded.

The line says what happened and what comes next, so that it does not read
as a schedule: `delivery 7 to lemmy.example: HTTP 500, attempt 2 took
12 ms, next attempt at 12:04:31 UTC`. Accepted deliveries are the common
case and the metrics count them: a line for each cost a tenth of the
worker's time, so they are logged at debug only (`-vv`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from mirror.delivery.outcome import Delivered, Failed
from mirror.delivery.record import Recorded

log = logging.getLogger(__name__)


def log_attempts(results: Sequence[Recorded], now: datetime) -> None:
    for attempt, outcome, next_at in results:
        accepted = attempt.status is not None and attempt.status < 300
        level = logging.DEBUG if accepted else logging.INFO
        if not log.isEnabledFor(level):
            continue
        c = attempt.claimed
        answer = f"HTTP {attempt.status}" if attempt.status is not None else attempt.error
        if isinstance(outcome, Delivered):
            then = "delivered" + (f" ({outcome.note})" if outcome.note else "")
        elif isinstance(outcome, Failed):
            then = f"failed for good: {outcome.reason}"
        elif next_at is not None:
            then = f"next attempt at {when(next_at, now)}"
        else:
            then = "to be tried again"
        ms = attempt.duration_s * 1000
        log.log(
            level,
            "delivery %d to %s: %s, attempt %d took %.0f ms, %s",
            c.id,
            c.host,
            answer,
            c.attempts,
            ms,
            then,
            extra={
                "delivery": c.id,
                "host": c.host,
                "status": attempt.status,
                "error": attempt.error,
                "attempt": c.attempts,
                "duration_ms": round(ms, 1),
                "activity": c.activity_id,
                "next_attempt_at": next_at.isoformat() if next_at else None,
            },
        )


def when(at: datetime, now: datetime) -> str:
    """HH:MM:SS UTC, with the date when it is not today's."""
    day = "" if at.date() == now.date() else f"{at:%Y-%m-%d} "
    return f"{day}{at:%H:%M:%S} UTC"
