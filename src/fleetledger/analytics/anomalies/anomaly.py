"""The anomaly record, the detector's knobs and the vocabulary (levels, statuses, causes)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import nanos_to_usd
from fleetledger.core.time import to_us

__all__ = [
    "Anomaly",
    "DetectorConfig",
    "LEVELS",
    "GRANULARITIES",
    "STATUSES",
    "CAUSES",
    "CAUSE_DIMENSIONS",
    "choices",
]

LEVELS = ("fleet", "department", "agent")
GRANULARITIES = ("day", "hour")
STATUSES = ("detected", "investigating", "resolved", "false_positive", "expected")
CAUSES = ("runaway_loop", "model_switch", "price_change", "token_bloat", "request_surge", "mix_change")
#: Dimensions a change is attributed to, most specific and actionable first (the tie-break order).
CAUSE_DIMENSIONS = ("session_id", "model", "version", "environment", "provider", "operation", "agent", "task", "user")


@dataclass(frozen=True)
class DetectorConfig:
    """Knobs of the detector; the defaults were set on the demo fleet (seed 7; see the tests)."""

    weeks: int = 4  # same-weekday references
    min_weeks: int = 2  # fewer references than this: no expectation, no detection
    min_score: float = 0.8
    min_ratio: float = 1.5  # actual / expected spend of the window
    min_impact_share: float = 0.001  # of the fleet's median daily spend, per day of window (at least one)
    min_requests: float = 24.0  # median calls per day a series needs to be scored
    scale_floor: float = 0.1  # floor of the log-residual scale (10%)
    z_min: float = 4.0  # robust z a driver (requests, tokens per request, a model's requests) must reach
    z_spend: float = 1.5  # robust z the spend itself must reach (a confirmation: spend is heavy-tailed)
    z_half: float = 3.0  # the robust z that scores 0.5


@dataclass(frozen=True)
class Anomaly:
    """A detected anomaly window of one scope, with its root causes and review status."""

    level: str
    granularity: str
    scope: dict[str, str]
    start: datetime
    end: datetime
    score: float
    expected_nanos: int
    actual_nanos: int
    causes: list[dict[str, Any]] = field(default_factory=list)
    status: str = "detected"
    note: str | None = None
    department: str | None = None
    id: int | None = None
    detected_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def impact_nanos(self) -> int:
        return self.actual_nanos - self.expected_nanos

    @property
    def expected_usd(self) -> Decimal:
        return nanos_to_usd(self.expected_nanos)

    @property
    def actual_usd(self) -> Decimal:
        return nanos_to_usd(self.actual_nanos)

    @property
    def impact_usd(self) -> Decimal:
        return nanos_to_usd(self.impact_nanos)

    @property
    def impact_pct(self) -> Decimal | None:
        if self.expected_nanos <= 0:
            return None
        return (Decimal(self.impact_nanos) * 100 / Decimal(self.expected_nanos)).quantize(Decimal("0.1"))

    @property
    def cause(self) -> str | None:
        return self.causes[0]["cause"] if self.causes else None

    @property
    def fingerprint(self) -> str:
        key = json.dumps([self.granularity, self.level, self.scope, to_us(self.start)], sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:40]

    def to_dict(self) -> dict[str, Any]:
        pct = self.impact_pct
        return {
            "id": self.id,
            "level": self.level,
            "granularity": self.granularity,
            "scope": self.scope,
            "department": self.department,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "score": round(self.score, 3),
            "expected_usd": str(self.expected_usd),
            "actual_usd": str(self.actual_usd),
            "impact_usd": str(self.impact_usd),
            "impact_pct": None if pct is None else str(pct),
            "cause": self.cause,
            "causes": self.causes,
            "status": self.status,
            "note": self.note,
            "detected_at": self.detected_at.isoformat() if self.detected_at else None,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "fingerprint": self.fingerprint,
        }


def choices(values: Iterable[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    out = tuple(values)
    for value in out:
        if value not in allowed:
            raise InvalidInput(f"{what}: {value!r} is not one of {', '.join(allowed)}")
    return out
