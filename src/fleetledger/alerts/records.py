"""What the alert engine hands back: channels, fired alerts and their deliveries, as plain records.

Why a module of its own: the CLI, the REST API and the bus all serialise the same records
(``to_dict``), and the row-to-record conversions are shared by the engine's queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from fleetledger.alerts.channels import redact_config
from fleetledger.alerts.outbox import PENDING
from fleetledger.alerts.rules import Rule
from fleetledger.alerts.tables import alert_channels, alert_outbox
from fleetledger.core.time import from_us

__all__ = [
    "AlertChannel",
    "Delivery",
    "Alert",
    "channel_from_row",
    "rule_from_row",
    "alert_from_row",
    "load_deliveries",
]


@dataclass(frozen=True, slots=True)
class AlertChannel:
    id: int
    name: str
    kind: str
    config: dict[str, Any]
    created_at: datetime

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "config": redact_config(self.kind, self.config) if redact else dict(self.config),
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where one alert stands on one channel."""

    channel: str | None
    status: str
    attempts: int
    last_error: str | None
    delivered_at: datetime | None
    next_attempt: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
            "next_attempt": self.next_attempt.isoformat() if self.next_attempt else None,
        }


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    rule_id: int | None
    rule: str | None
    severity: str
    dedup_key: str
    title: str
    message: str
    data: dict[str, Any]
    fired_at: datetime
    deliveries: list[Delivery] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``alert.fired`` bus payload, and the JSON of ``alerts history``."""
        return {
            "alert_id": self.id,
            "rule_id": self.rule_id,
            "rule": self.rule,
            "severity": self.severity,
            "dedup_key": self.dedup_key,
            "title": self.title,
            "message": self.message,
            "data": self.data,
            "fired_at": self.fired_at.isoformat(),
            "channels": [d.channel for d in self.deliveries],
            "deliveries": [d.to_dict() for d in self.deliveries],
        }


def channel_from_row(row: Any) -> AlertChannel:
    return AlertChannel(
        id=row.id, name=row.name, kind=row.kind, config=dict(row.config), created_at=from_us(row.created_us)
    )


def rule_from_row(row: Any) -> Rule:
    return Rule(
        id=row.id,
        name=row.name,
        kind=row.kind,
        scope=dict(row.scope or {}),
        params=dict(row.params or {}),
        channels=list(row.channels or []),
        cooldown_s=int(row.cooldown_s),
        enabled=bool(row.enabled),
        created_at=from_us(row.created_us),
    )


def alert_from_row(row: Any, deliveries: list[Delivery]) -> Alert:
    """A row of ``alerts`` joined with its rule's name as ``rule_name``."""
    return Alert(
        id=row.id,
        rule_id=row.rule_id,
        rule=row.rule_name,
        severity=row.severity,
        dedup_key=row.dedup_key,
        title=row.title,
        message=row.message,
        data=dict(row.data or {}),
        fired_at=from_us(row.fired_us),
        deliveries=deliveries,
    )


def load_deliveries(conn: Connection, alert_ids: Sequence[int]) -> dict[int, list[Delivery]]:
    """Alert id -> its deliveries, one per channel, in the order they were queued."""
    if not alert_ids:
        return {}
    o = alert_outbox.c
    rows = conn.execute(
        select(
            o.alert_id,
            o.status,
            o.attempts,
            o.last_error,
            o.delivered_us,
            o.next_attempt_us,
            alert_channels.c.name.label("channel"),
        )
        .select_from(alert_outbox.outerjoin(alert_channels, o.channel_id == alert_channels.c.id))
        .where(o.alert_id.in_(list(alert_ids)))
        .order_by(o.id)
    )
    out: dict[int, list[Delivery]] = {}
    for row in rows:
        out.setdefault(row.alert_id, []).append(
            Delivery(
                channel=row.channel,
                status=row.status,
                attempts=int(row.attempts),
                last_error=row.last_error,
                delivered_at=from_us(row.delivered_us) if row.delivered_us is not None else None,
                next_attempt=from_us(row.next_attempt_us) if row.status == PENDING else None,
            )
        )
    return out
