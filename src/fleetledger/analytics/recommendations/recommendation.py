"""The recommendation record, its kinds and statuses, and the 30-day window every figure covers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from fleetledger.core.money import format_usd
from fleetledger.core.time import from_us

__all__ = ["KINDS", "STATUSES", "WINDOW", "DAY_US", "WINDOW_US", "Recommendation", "percent", "iso"]

KINDS = ("model_downgrade", "caching", "batch", "provider_switch", "prompt_trim", "output_cap")
STATUSES = ("identified", "in_review", "approved", "implemented", "declined")
WINDOW = timedelta(days=30)
DAY_US = 86_400_000_000
WINDOW_US = 30 * DAY_US


@dataclass
class Recommendation:
    id: int
    kind: str
    scope: dict[str, Any]
    title: str
    current_nanos: int
    optimized_nanos: int
    effort: str
    risk: str
    quality_impact: str
    steps: list[str]
    rollback: list[str]
    status: str = "identified"
    implemented_us: int | None = None
    realized: dict[str, Any] | None = None
    fingerprint: str = ""
    created_us: int = 0
    updated_us: int = 0

    @property
    def savings_nanos(self) -> int:
        return self.current_nanos - self.optimized_nanos

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "scope": self.scope,
            "affected_agents": self.scope.get("agents", []),
            "current_cost_monthly_usd": format_usd(self.current_nanos),
            "optimized_cost_monthly_usd": format_usd(self.optimized_nanos),
            "savings_monthly_usd": format_usd(self.savings_nanos),
            "savings_annual_usd": format_usd(self.savings_nanos * 12),
            "savings_percent": (percent(self.savings_nanos, self.current_nanos) if self.current_nanos else "0"),
            "effort": self.effort,
            "risk": self.risk,
            "quality_impact": self.quality_impact,
            "steps": self.steps,
            "rollback": self.rollback,
            "status": self.status,
            "implemented_at": iso(self.implemented_us),
            "realized": self.realized,
            "created_at": iso(self.created_us),
            "updated_at": iso(self.updated_us),
        }


def percent(part: int, whole: int) -> str:
    """A display percentage with one decimal (never summed)."""
    return str((Decimal(100 * part) / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_EVEN))


def iso(us: int | None) -> str | None:
    return None if us is None else from_us(us).isoformat().replace("+00:00", "Z")
