"""Alerts: rules over spend and budgets, a durable outbox, and channels that reach people once.

The pieces, each in its own module:

* :mod:`fleetledger.core.bus` -- the in-process event bus (``cost.recorded``, ``budget.*``, ``alert.fired``);
* :mod:`.rules` -- rule kinds, scope and parameter validation, the built-in spend evaluators;
* :mod:`.registry` -- :class:`RuleRegistry`, ``kind -> evaluator`` (the composition root registers
  the kinds analytics and reconciliation provide);
* :mod:`.engine` -- :class:`AlertEngine`: channel and rule CRUD, ``fire`` with cooldown and
  escalation, ``evaluate``, ``history``;
* :mod:`.records` -- the records handed back (alerts with deliveries, channels);
* :mod:`.outbox` -- claim, send and settle deliveries with retries and backoff;
* :mod:`.channels` -- webhook (HMAC-signed), Slack, email (SMTP) and PagerDuty Events API v2;
* :mod:`.tables` -- the four tables (migration ``0002``).
"""

from __future__ import annotations

from fleetledger.alerts.channels import DeliveryResult, verify_signature
from fleetledger.alerts.engine import Alert, AlertChannel, AlertEngine, Delivery
from fleetledger.alerts.outbox import DeliveryOutcome, DeliveryReport, OutboxWorker, deliver_due
from fleetledger.alerts.registry import RuleRegistry
from fleetledger.alerts.rules import Finding, Rule
from fleetledger.core.bus import (
    ALERT_FIRED,
    BUDGET_ADJUSTED,
    BUDGET_CRITICAL,
    BUDGET_EXCEEDED,
    BUDGET_WARNING,
    COST_RECORDED,
    EventBus,
)

__all__ = [
    "AlertEngine",
    "Alert",
    "AlertChannel",
    "Delivery",
    "Rule",
    "Finding",
    "RuleRegistry",
    "EventBus",
    "OutboxWorker",
    "deliver_due",
    "DeliveryResult",
    "DeliveryOutcome",
    "DeliveryReport",
    "verify_signature",
    "COST_RECORDED",
    "BUDGET_WARNING",
    "BUDGET_CRITICAL",
    "BUDGET_EXCEEDED",
    "BUDGET_ADJUSTED",
    "ALERT_FIRED",
]
