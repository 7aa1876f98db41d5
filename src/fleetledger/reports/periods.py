"""Report periods: a month, quarter or year (parsed by the one shared parser in
:func:`fleetledger.analytics.allocation.period_range`) or an inclusive day range
``2026-10-01..2026-10-31``; and the periods a recurring schedule covers (weeks, months, quarters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from fleetledger.analytics.allocation import period_range
from fleetledger.core.errors import InvalidInput

__all__ = ["Period", "parse_period", "last_complete_period", "RECURRENCES"]

RECURRENCES = ("weekly", "monthly", "quarterly")
_DAY_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")
#: Longest day range a report covers (a year and a bit: enough for a fiscal year, bounded work).
MAX_DAYS = 400


@dataclass(frozen=True)
class Period:
    """A UTC ``[start, end)`` with its label as the user wrote it (normalised)."""

    label: str
    start: datetime
    end: datetime

    @property
    def slug(self) -> str:
        """The label as a file name part (``2026-10-01_2026-10-31`` for a day range)."""
        return self.label.replace("..", "_")


def _day(text: str, field: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"period: {text!r} ({field}) is not a date YYYY-MM-DD") from None


def parse_period(text: str) -> Period:
    """``2026-10`` (month), ``2026-Q4`` (quarter), ``2026`` (year) or ``2026-10-01..2026-10-31``.

    A day range includes both days. Errors name the ``period`` parameter.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("period: required, e.g. 2026-10, 2026-Q4, 2026 or 2026-10-01..2026-10-31")
    text = text.strip()
    match = _DAY_RANGE.match(text)
    if match:
        first, last = _day(match.group(1), "first day"), _day(match.group(2), "last day")
        if last < first:
            raise InvalidInput(f"period: {text!r} ends before it starts")
        if (last - first).days + 1 > MAX_DAYS:
            raise InvalidInput(f"period: {text!r} is longer than {MAX_DAYS} days; use a year (2026) or shorter ranges")
        if not (2015 <= first.year and last.year < 2100):
            raise InvalidInput(f"period: {text!r} is out of range")
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
        return Period(f"{first.isoformat()}..{last.isoformat()}", start, end)
    label = text.upper()  # 2026-q4 -> 2026-Q4
    try:
        start, end = period_range(label)
    except InvalidInput as exc:
        message = exc.message
        if "must be" in message:
            message = f"period: {text!r} must be YYYY-MM, YYYY-Qn, YYYY or YYYY-MM-DD..YYYY-MM-DD"
        raise InvalidInput(message) from None
    return Period(label, start, end)


def last_complete_period(recurrence: str, now: datetime) -> Period:
    """The latest period of ``recurrence`` that has ended by ``now`` (UTC; weeks run Monday-Sunday)."""
    now = now.astimezone(UTC)
    today = date(now.year, now.month, now.day)
    if recurrence == "weekly":
        this_monday = today - timedelta(days=today.weekday())
        first = this_monday - timedelta(days=7)
        return parse_period(f"{first.isoformat()}..{(first + timedelta(days=6)).isoformat()}")
    if recurrence == "monthly":
        year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
        return parse_period(f"{year}-{month:02d}")
    if recurrence == "quarterly":
        quarter = (today.month - 1) // 3 + 1
        year, quarter = (today.year, quarter - 1) if quarter > 1 else (today.year - 1, 4)
        return parse_period(f"{year}-Q{quarter}")
    raise InvalidInput(f"recurrence: {recurrence!r} must be one of {', '.join(RECURRENCES)}")
