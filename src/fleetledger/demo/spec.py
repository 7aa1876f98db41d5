"""What the demo generates: :class:`DemoSpec` (seed, days, events, end of the window)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = ["DemoSpec"]


def _default_end() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class DemoSpec:
    """What to generate: ``events`` events over the ``days`` days ending at ``end`` (exclusive).

    ``end`` must be time-zone aware; it is converted to UTC and rounded down to the hour.
    """

    seed: int = 7
    days: int = 90
    events: int = 200_000
    end: datetime = field(default_factory=_default_end)

    def __post_init__(self) -> None:
        if self.days < 1 or self.events < 0:
            raise ValueError("days must be >= 1 and events >= 0")
        if self.end.tzinfo is None or self.end.utcoffset() is None:
            raise ValueError("end needs a time zone")
        end = self.end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        object.__setattr__(self, "end", end)

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)
