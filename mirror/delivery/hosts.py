"""Per-host health: a circuit breaker, and a dead mark for hosts failing for days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int
    cooloff_s: int
    dead_after_s: int
    max_cooloff_s: int = 3600


def after_success(host: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A 2xx (or any answer but a 5xx) closes the breaker and revives the host."""
    return {
        "consecutive_failures": 0,
        "breaker_open_until": None,
        "breaker_cooloff_s": None,
        "failing_since": None,
        "dead_since": None,
        "last_success_at": now,
    }


def after_failure(
    host: dict[str, Any], now: datetime, error: str, policy: BreakerPolicy
) -> dict[str, Any]:
    """A network error or 5xx: count it; open the breaker; mark dead after days."""
    failures = (host.get("consecutive_failures") or 0) + 1
    failing_since = host.get("failing_since") or now
    changes: dict[str, Any] = {
        "consecutive_failures": failures,
        "failing_since": failing_since,
        "last_failure_at": now,
        "last_error": error[:500],
    }
    if failures >= policy.failures:
        # A failed probe doubles the cool-off, up to an hour.
        previous = host.get("breaker_cooloff_s")
        cooloff = min(policy.max_cooloff_s, previous * 2) if previous else policy.cooloff_s
        changes["breaker_cooloff_s"] = cooloff
        changes["breaker_open_until"] = now + timedelta(seconds=cooloff)
    if host.get("dead_since") is None and now - failing_since >= timedelta(
        seconds=policy.dead_after_s
    ):
        changes["dead_since"] = now
    return changes


def after_refusal(now: datetime, error: str) -> dict[str, Any]:
    """Not sent to the host at all (the guard refused it): its last error, nothing else.

    The breaker counts only what the host did; no request reached it.
    """
    return {"last_failure_at": now, "last_error": error[:500]}


def breaker_state(host: dict[str, Any] | None, now: datetime) -> str:
    """closed, open (no requests) or half_open (one probe allowed)."""
    if host is None or host.get("breaker_open_until") is None:
        return "closed"
    return "open" if host["breaker_open_until"] > now else "half_open"
