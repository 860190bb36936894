"""Times as the pages show them: relative ("4 hours ago") or absolute dates.

A page never says when it was captured, so relative times are estimated
from a capture time the operator gives (or the file's modification time),
and every estimate carries its precision: the unit the page rounded to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_UNITS = {
    "second": 1,
    "sec": 1,
    "minute": 60,
    "min": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "year": 365 * 86400,
}
_RELATIVE = re.compile(
    r"^(?P<n>\d+|an?|one)\s+(?P<unit>second|sec|minute|min|hour|day|week|month|year)s?\s+ago$",
    re.IGNORECASE,
)
_MONTHS = {
    name: index
    for index, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_DAY_MONTH_YEAR = re.compile(
    r"^(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+(?P<m>[A-Za-z]+)\.?,?\s+(?P<y>\d{4})$"
)
_MONTH_DAY_YEAR = re.compile(
    r"^(?P<m>[A-Za-z]+)\.?\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s+(?P<y>\d{4})$"
)
_ISO_DATE = re.compile(r"^(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})$")

#: An absolute date is exact to the day but not to the time zone of the page.
DATE_PRECISION_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class Moment:
    """A time shown on a page: its words, and an estimate in UTC when possible."""

    raw: str
    estimated: datetime | None
    #: Half-width of the uncertainty, in seconds (the unit the page rounded to).
    precision_s: int | None
    absolute: bool = False


def parse_moment(raw: str, captured_at: datetime | None) -> Moment | None:
    """Parse a relative or absolute time; None if the words are not a time."""
    text = raw.strip()
    if not text:
        return None
    rel = _RELATIVE.match(text)
    if rel:
        amount = rel["n"].lower()
        count = 1 if amount in ("a", "an", "one") else int(amount)
        unit = _UNITS[rel["unit"].lower()]
        if captured_at is None:
            return Moment(text, None, unit)
        try:
            estimated = captured_at.astimezone(UTC) - timedelta(seconds=count * unit)
        except OverflowError:
            return Moment(text, None, unit)
        return Moment(text, estimated, unit)
    if text.lower() in ("just now", "now"):
        return Moment(text, captured_at.astimezone(UTC) if captured_at else None, 60)
    date = parse_date(text)
    if date is not None:
        return Moment(text, date, DATE_PRECISION_S, absolute=True)
    return None


def parse_date(text: str) -> datetime | None:
    """An absolute calendar date ("26 Apr 2025", "October 7th, 2020") at 00:00 UTC."""
    for pattern in (_DAY_MONTH_YEAR, _MONTH_DAY_YEAR, _ISO_DATE):
        match = pattern.match(text.strip())
        if not match:
            continue
        month_word = match["m"]
        month = int(month_word) if month_word.isdigit() else _MONTHS.get(month_word.lower())
        if month is None:
            return None
        try:
            return datetime(int(match["y"]), month, int(match["d"]), tzinfo=UTC)
        except ValueError:
            return None
    return None


def is_relative_time(text: str) -> bool:
    return bool(_RELATIVE.match(text.strip()))
