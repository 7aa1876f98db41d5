"""Budget periods: calendar-aligned in the budget's time zone, or rolling.

A monthly budget in ``Europe/Berlin`` resets at local midnight on the 1st, which is 22:00 or 23:00
UTC the day before depending on daylight saving time; the boundaries are computed with zoneinfo in
local time and then converted to UTC, so they are right across DST changes.

Counters (``budget_usage``) are keyed by the period's start in UTC microseconds; rolling budgets
(the last N days) keep hourly counters and sum the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleetledger.core.errors import InvalidInput
from fleetledger.core.time import from_us, to_us

__all__ = ["PERIODS", "Window", "period_window", "zone", "HOUR_US"]

PERIODS = ("daily", "weekly", "monthly", "quarterly", "annual", "custom", "rolling")
HOUR_US = 3_600_000_000


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"timezone: {name!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)") from None


@dataclass(frozen=True)
class Window:
    """The period containing a moment: ``[start, end)`` in UTC and the counter bucket for it."""

    start: datetime
    end: datetime
    bucket_us: int  # the counter row a spend at that moment goes to
    rolling: bool = False

    @property
    def start_us(self) -> int:
        return to_us(self.start)

    @property
    def end_us(self) -> int:
        return to_us(self.end)


def _local_start(period: str, local: datetime) -> datetime:
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return day
    if period == "weekly":
        return day - timedelta(days=day.weekday())
    if period == "monthly":
        return day.replace(day=1)
    if period == "quarterly":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)  # annual


def _local_next(period: str, start: datetime) -> datetime:
    if period == "daily":
        return start + timedelta(days=1)
    if period == "weekly":
        return start + timedelta(days=7)
    months = {"monthly": 1, "quarterly": 3, "annual": 12}[period]
    month = start.month - 1 + months
    return start.replace(year=start.year + month // 12, month=month % 12 + 1)


def _wall(moment: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall-clock time re-attached to its zone (fold-safe for midnights)."""
    return moment.replace(tzinfo=tz)


def period_window(
    period: str,
    at: datetime,
    *,
    timezone: str = "UTC",
    starts_us: int | None = None,
    ends_us: int | None = None,
    window_days: int | None = None,
) -> Window:
    """The window of ``period`` that contains ``at``."""
    if period == "custom":
        if starts_us is None or ends_us is None:
            raise InvalidInput("period custom: needs a start and an end")
        return Window(from_us(starts_us), from_us(ends_us), starts_us)
    if period == "rolling":
        if not window_days:
            raise InvalidInput("period rolling: needs window_days")
        hour_us = to_us(at) - to_us(at) % HOUR_US
        return Window(at - timedelta(days=window_days), at, hour_us, rolling=True)
    if period not in PERIODS:
        raise InvalidInput(f"period: {period!r} must be one of {', '.join(PERIODS)}")
    tz = zone(timezone)
    local = at.astimezone(tz).replace(tzinfo=None)
    start_local = _local_start(period, local)
    end_local = _local_next(period, start_local)
    start = _wall(start_local, tz).astimezone(UTC)
    end = _wall(end_local, tz).astimezone(UTC)
    return Window(start, end, to_us(start))
