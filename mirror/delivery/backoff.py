"""When to try again: exponential backoff with jitter, Retry-After, a horizon."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mirror.config import DeliverySettings

#: The longest Retry-After we honour; a server asking for more is asked again then.
MAX_RETRY_AFTER = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Policy:
    base_s: float
    max_s: float
    horizon_s: float

    @classmethod
    def of(cls, delivery: DeliverySettings) -> Policy:
        """The policy `[delivery]` sets (deliveries and re-publications share it)."""
        return cls(
            base_s=delivery.backoff_base_s,
            max_s=delivery.backoff_max_s,
            horizon_s=delivery.retry_horizon_s,
        )


def next_attempt_at(
    *,
    policy: Policy,
    attempts: int,
    now: datetime,
    first_attempt_at: datetime,
    retry_after: datetime | None = None,
    rng: random.Random | None = None,
) -> datetime | None:
    """The next attempt's time after ``attempts`` failures, or None: give up.

    The delay doubles per attempt up to ``max_s``, with "equal jitter"
    (between half and all of it) so that many deliveries failing together
    do not come back together. Nothing is scheduled past the horizon.
    """
    if retry_after is not None:
        at = max(now, min(retry_after, now + MAX_RETRY_AFTER))
    else:
        delay = min(policy.max_s, policy.base_s * 2 ** max(0, attempts - 1))
        jitter = (rng or random).uniform(0.5, 1.0)
        at = now + timedelta(seconds=delay * jitter)
    if at > first_attempt_at + timedelta(seconds=policy.horizon_s):
        return None
    return at


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """Retry-After as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
