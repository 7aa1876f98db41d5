"""The Budget: a scope (dimension filters), a period, an amount, thresholds and an action at 100%.

Scopes nest: a child budget repeats every filter of its parent and narrows it (``department=research``
then ``department=research, project=search``), so every event the child counts also counts in its
parents, without any roll-up step. An empty scope (or ``org=...``) is the whole organisation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from fleetledger.budgets.periods import PERIODS, Window, period_window, zone
from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import format_usd
from fleetledger.core.time import from_us
from fleetledger.storage.schema import EVENT_INDEX

__all__ = ["Budget", "ACTIONS", "SCOPE_KEYS", "normalize_scope", "scope_text", "LEVELS", "level_for"]

ACTIONS = ("block", "downgrade", "throttle", "notify")
SCOPE_KEYS = (
    "org",
    "department",
    "cost_center",
    "project",
    "team",
    "agent",
    "user",
    "task",
    "session_id",
    "environment",
    "version",
    "operation",
    "model",
    "provider",
)
#: Alert levels reached by spend, in order; 0 means below the warning threshold.
LEVELS = ("ok", "warning", "critical", "exceeded")


def normalize_scope(scope: Mapping[str, Any] | Sequence[str] | None) -> dict[str, list[str]]:
    """``{"department": "research"}`` or ``["department=research", "tag.team=nlp"]`` -> ``{key: [values]}``."""
    items: list[tuple[str, Any]] = []
    if scope is None:
        return {}
    if isinstance(scope, Mapping):
        items = list(scope.items())
    else:
        for text in scope:
            key, sep, value = str(text).partition("=")
            if not sep:
                raise InvalidInput(f"scope: {text!r} must be key=value, e.g. department=research")
            items.append((key, value))
    out: dict[str, list[str]] = {}
    for key, value in items:
        key = str(key).strip()
        if key not in SCOPE_KEYS and not (key.startswith("tag.") and len(key) > 4):
            raise InvalidInput(f"scope: unknown key {key!r}; use one of {', '.join(SCOPE_KEYS)} or tag.<name>")
        values = value if isinstance(value, list | tuple | set) else str(value).split(",")
        cleaned = sorted({str(v).strip() for v in values if str(v).strip()})
        if not cleaned:
            raise InvalidInput(f"scope: {key} needs a value")
        if key == "org":
            continue  # one organisation per ledger: org-wide is the empty scope
        out.setdefault(key, [])
        out[key] = sorted(set(out[key]) | set(cleaned))
    return out


def scope_text(scope: Mapping[str, Sequence[str]]) -> str:
    if not scope:
        return "org"
    return ",".join(f"{k}={'|'.join(v)}" for k, v in sorted(scope.items()))


def level_for(percent: Decimal, warning: Decimal, critical: Decimal) -> int:
    if percent >= 100:
        return 3
    if percent >= critical:
        return 2
    if percent >= warning:
        return 1
    return 0


@dataclass(frozen=True)
class Budget:
    id: int
    name: str
    scope: dict[str, list[str]]
    period: str
    timezone: str
    amount: Decimal
    currency: str
    limit_nanos: int
    warning_pct: Decimal
    critical_pct: Decimal
    action: str
    fail_mode: str
    active: bool = True
    window_days: int | None = None
    starts_us: int | None = None
    ends_us: int | None = None
    downgrade_model: str | None = None
    throttle_rpm: int | None = None
    parent_id: int | None = None
    created_us: int = 0
    #: Approved overages: (extra nano-USD, deadline_us) raising the limit until the deadline.
    overages: tuple[tuple[int, int], ...] = field(default=(), compare=False)

    @classmethod
    def from_row(cls, row: Any, overages: Sequence[tuple[int, int]] = ()) -> Budget:
        return cls(
            id=row.id,
            name=row.name,
            scope={k: list(v) for k, v in (row.scope or {}).items()},
            period=row.period,
            timezone=row.timezone,
            amount=Decimal(row.amount),
            currency=row.currency,
            limit_nanos=row.limit_nanos,
            warning_pct=Decimal(row.warning_pct),
            critical_pct=Decimal(row.critical_pct),
            action=row.action,
            fail_mode=row.fail_mode,
            active=row.active,
            window_days=row.window_days,
            starts_us=row.starts_us,
            ends_us=row.ends_us,
            downgrade_model=row.downgrade_model,
            throttle_rpm=row.throttle_rpm,
            parent_id=row.parent_id,
            created_us=row.created_us,
            overages=tuple(overages),
        )

    def window(self, at: datetime) -> Window:
        return period_window(
            self.period,
            at,
            timezone=self.timezone,
            starts_us=self.starts_us,
            ends_us=self.ends_us,
            window_days=self.window_days,
        )

    def limit_at(self, at_us: int) -> int:
        """The limit in nano-USD, raised by approved overages whose deadline has not passed."""
        return self.limit_nanos + sum(extra for extra, deadline in self.overages if at_us < deadline)

    def level(self, spent_nanos: int, at_us: int) -> int:
        limit = self.limit_at(at_us)
        percent = Decimal(spent_nanos) * 100 / limit if limit else Decimal(100)
        return level_for(percent, self.warning_pct, self.critical_pct)

    def matches(self, dims: Mapping[str, Any]) -> bool:
        tags = dims.get("tags") or {}
        for key, values in self.scope.items():
            value = tags.get(key[4:]) if key.startswith("tag.") else dims.get(key)
            if value is None or str(value) not in values:
                return False
        return True

    def row_matcher(self) -> list[tuple[int, frozenset[str]]]:
        """Conditions on event-row tuples (tag conditions are checked separately)."""
        return [(EVENT_INDEX[k], frozenset(v)) for k, v in self.scope.items() if not k.startswith("tag.")]

    def within_departments(self, departments: Iterable[str]) -> bool:
        """Whether the budget is scoped to some of ``departments`` and to nothing beyond them.

        A department-scoped key sees exactly these budgets: an org-wide budget (no department in
        its scope) or one that also covers another department is not its to see.
        """
        own = set(self.scope.get("department", []))
        return bool(own) and own <= set(departments)

    def summary(self) -> dict[str, Any]:
        return {
            "budget_id": self.id,
            "name": self.name,
            "scope": scope_text(self.scope),
            "period": self.period if self.period != "rolling" else f"rolling {self.window_days}d",
            "timezone": self.timezone,
            "amount": f"{self.amount:f}",
            "currency": self.currency,
            "amount_usd": format_usd(self.limit_nanos),
            "warning_pct": f"{self.warning_pct:f}",
            "critical_pct": f"{self.critical_pct:f}",
            "action": self.action,
            "downgrade_model": self.downgrade_model,
            "throttle_rpm": self.throttle_rpm,
            "fail_mode": self.fail_mode,
            "parent_id": self.parent_id,
            "active": self.active,
            **({"starts_at": from_us(self.starts_us).isoformat()} if self.starts_us is not None else {}),
            **({"ends_at": from_us(self.ends_us).isoformat()} if self.ends_us is not None else {}),
        }


def validate_period(
    period: str, timezone: str, window_days: int | None, starts_us: int | None, ends_us: int | None
) -> None:
    if period not in PERIODS:
        raise InvalidInput(f"period: {period!r} must be one of {', '.join(PERIODS)}")
    zone(timezone)
    if period == "custom":
        if starts_us is None or ends_us is None:
            raise InvalidInput("period: custom needs --starts and --ends")
        if ends_us <= starts_us:
            raise InvalidInput("ends: the period ends before it starts")
    if period == "rolling" and (not window_days or window_days < 1 or window_days > 366):
        raise InvalidInput("window_days: a rolling budget needs a window of 1..366 days")


def dumps_scope(scope: Mapping[str, Sequence[str]]) -> str:
    return json.dumps(scope, sort_keys=True)
