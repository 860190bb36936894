"""Time as a dependency: code that schedules or compares times takes a Clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Return the current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that moves only when told to; for tests and replays."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FrozenClock needs a timezone-aware datetime")
        self._now = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self._now

    def set(self, at: datetime) -> None:
        self._now = at.astimezone(UTC)


class ShiftedClock:
    """The system's time plus an offset that only moves forward when told to.

    For tests that must pass a day (a server's new-account limit) while the
    rest runs in real time: time keeps flowing, so timers and lookups due
    in a second still come.
    """

    def __init__(self) -> None:
        self._offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta | float) -> datetime:
        self._offset += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self.now()
