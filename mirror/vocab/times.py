"""Timestamps as ActivityPub documents carry them (RFC 3339, UTC, "Z")."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(value: datetime) -> str:
    """Lemmy fails to parse an actor whose dates lack an offset; always write Z."""
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
