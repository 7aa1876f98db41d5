"""Time: microsecond integers in storage, aware UTC datetimes in Python, friendly ranges on input.

Range expressions (``--since`` / ``--until`` and the API's ``since`` / ``until``):

* relative: ``90m``, ``24h``, ``30d``, ``2w`` (back from now);
* calendar: ``today``, ``MTD`` (month to date), ``QTD``, ``YTD`` (UTC calendar);
* absolute: ``2026-01-01`` (midnight UTC) or ``2026-01-01T09:30:00+02:00`` (a zone is required).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fleetledger.core.errors import InvalidInput

__all__ = ["to_us", "from_us", "parse_moment", "parse_range", "floor_day"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RELATIVE = re.compile(r"^(\d+)\s*(m|min|h|d|w)$", re.IGNORECASE)
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def to_us(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


def floor_day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def parse_moment(value: Any, *, now: datetime, field: str = "since") -> datetime:
    """A point in time from a range expression, a date, or an aware datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInput(f"{field}: datetime needs a time zone")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = str(value).strip()
    match = _RELATIVE.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2).lower()
        return now - timedelta(**{_UNITS[unit]: amount})
    lowered = text.lower()
    today = floor_day(now)
    if lowered == "today":
        return today
    if lowered == "now":
        return now
    if lowered == "mtd":
        return today.replace(day=1)
    if lowered == "qtd":
        return today.replace(month=(today.month - 1) // 3 * 3 + 1, day=1)
    if lowered == "ytd":
        return today.replace(month=1, day=1)
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{field}: {text!r} is not a time; use 30d, 24h, MTD, QTD, YTD, today, 2026-01-01 or 2026-01-01T00:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"{field}: {text!r} needs a time zone, e.g. {text}Z")
    return parsed.astimezone(UTC)


def parse_range(since: Any, until: Any, *, now: datetime) -> tuple[datetime, datetime]:
    start = parse_moment(since, now=now, field="since")
    end = now if until is None else parse_moment(until, now=now, field="until")
    if end <= start:
        raise InvalidInput(f"time range: until ({end.isoformat()}) must be after since ({start.isoformat()})")
    return start, end
