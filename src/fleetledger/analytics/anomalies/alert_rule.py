"""The ``anomaly`` alert rule: one finding per fresh detected anomaly (:func:`evaluate_anomaly_rule`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fleetledger.analytics.anomalies.anomaly import Anomaly
from fleetledger.analytics.anomalies.lifecycle import list_anomalies, scan_store
from fleetledger.core.errors import InvalidInput
from fleetledger.core.time import to_us
from fleetledger.storage.store import HOUR_US, Store

if TYPE_CHECKING:
    from fleetledger.alerts.rules import Finding, Rule

__all__ = ["evaluate_anomaly_rule", "register_evaluator"]


def _rule_params(params: Mapping[str, Any]) -> tuple[float, str, bool, int]:
    allowed = {"min_score", "severity", "scan", "lookback_h"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidInput(f"params.{unknown[0]}: not an anomaly rule parameter; use {', '.join(sorted(allowed))}")
    try:
        min_score = float(params.get("min_score", 0.8))
        lookback_h = int(params.get("lookback_h", 24))
    except (TypeError, ValueError):
        raise InvalidInput("params.min_score / lookback_h: numbers, e.g. 0.8 and 24") from None
    if not 0 <= min_score <= 1:
        raise InvalidInput("params.min_score: between 0 and 1")
    return min_score, str(params.get("severity", "warning")), bool(params.get("scan", True)), lookback_h


def _in_rule_scope(anomaly: Anomaly, scope: Mapping[str, Sequence[str]]) -> bool:
    for key, wanted in scope.items():
        value = anomaly.department if key == "department" else anomaly.scope.get(key)
        if value not in wanted:
            return False
    return True


def evaluate_anomaly_rule(rule: Rule, now: datetime, store: Store) -> list[Finding]:
    """The ``anomaly`` rule: one finding per anomaly detected in the last ``lookback_h`` hours.

    Params: ``min_score`` (default 0.8), ``severity`` (default warning), ``scan`` (default true:
    scan the last two days first) and ``lookback_h`` (default 24). Only ``detected`` anomalies
    alert; ``expected`` (and suppressed) ones never do.
    """
    from fleetledger.alerts.rules import Finding

    min_score, severity, rescan, lookback_h = _rule_params(rule.params)
    if rescan:
        scan_store(store, now=now, since="2d")
    fresh = [
        a
        for a in list_anomalies(store, status="detected")
        if a.score >= min_score
        and a.detected_at is not None
        and to_us(a.detected_at) >= to_us(now) - lookback_h * HOUR_US
        and _in_rule_scope(a, rule.scope)
    ]
    findings = []
    for a in fresh:
        what = ", ".join(f"{k}={v}" for k, v in a.scope.items()) or "fleet"
        cause = a.causes[0] if a.causes else None
        because = ""
        if cause:
            ((dim, val),) = cause["dimension"].items()
            because = f"; likely {cause['cause']} ({dim}={val})"
        findings.append(
            Finding(
                severity=severity,
                dedup_key=f"anomaly:{a.fingerprint}",
                title=f"Cost anomaly: {what}",
                message=f"{what} spent ${a.actual_usd:.2f} from {a.start:%Y-%m-%d %H:%M} to {a.end:%Y-%m-%d %H:%M} "
                f"UTC, expected ${a.expected_usd:.2f} (+{a.impact_pct}%){because}",
                data=a.to_dict(),
            )
        )
    return findings


def register_evaluator(engine: Any) -> None:
    """Plug the ``anomaly`` rule kind into an :class:`~fleetledger.alerts.AlertEngine`."""
    engine.register_evaluator("anomaly", evaluate_anomaly_rule)
