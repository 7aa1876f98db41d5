"""The ``reconciliation_drift`` alert rule: tell finance when provider bills and the ledger part.

The rule's parameters are checked in the alerts layer
(:func:`fleetledger.alerts.rules.validate_drift_params`, so any alert engine validates them);
its evaluator is here, above the alerts layer, and imports :class:`~fleetledger.alerts.rules.Finding`
from it. The composition root (:func:`fleetledger.ledger.app.build`) registers
:func:`evaluate_drift_rule` for the kind with the ledger's pricer, key maps and tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal

from fleetledger.alerts.rules import Finding, Rule, usd_text, validate_drift_params
from fleetledger.core.money import format_usd, usd_to_nanos
from fleetledger.core.time import floor_day
from fleetledger.pricing import Pricer
from fleetledger.reconciliation.compare import DEFAULT_TOLERANCE_USD, reconcile
from fleetledger.reconciliation.keys import KeyMap
from fleetledger.storage.store import Store

__all__ = ["evaluate_drift_rule", "validate_drift_params"]


def evaluate_drift_rule(
    rule: Rule,
    now: datetime,
    store: Store,
    *,
    pricer: Pricer,
    keys: Mapping[str, KeyMap] | None = None,
    tolerance_usd: Decimal | str = DEFAULT_TOLERANCE_USD,
) -> list[Finding]:
    """The ``reconciliation_drift`` rule: one finding when the drift over the last ``days`` whole days
    passes ``threshold_usd`` or ``threshold_percent`` of the provider's total; at most once a day."""
    params = validate_drift_params(rule.params)
    until = floor_day(now)
    since = until - timedelta(days=params["days"])
    report = reconcile(
        store,
        pricer,
        since=since,
        until=until,
        now=now,
        provider=params.get("provider"),
        keys=keys,
        tolerance_usd=tolerance_usd,
    )
    drift = report.drift_nanos
    if not report.cells or drift == 0:
        return []
    provider_total = report.provider_nanos
    percent = (
        (Decimal(abs(drift)) * 100 / Decimal(abs(provider_total))).quantize(Decimal("0.01"))
        if provider_total
        else Decimal(100)
    )
    over_usd = "threshold_usd" in params and abs(drift) >= usd_to_nanos(params["threshold_usd"])
    over_percent = "threshold_percent" in params and percent >= Decimal(params["threshold_percent"])
    if not (over_usd or over_percent):
        return []
    classes = {name: nanos for name, nanos in report.by_class().items() if nanos and name != "matched"}
    main = max(classes, key=lambda name: abs(classes[name])) if classes else "matched"
    scope = f" ({params['provider']})" if params.get("provider") else ""
    return [
        Finding(
            severity=params["severity"],
            dedup_key=f"rule:{rule.id}:reconciliation:{since.date().isoformat()}:{until.date().isoformat()}",
            title=f"{rule.name}: provider and ledger differ by {usd_text(drift)} ({percent}%){scope}",
            message=(
                f"From {since.date().isoformat()} to {until.date().isoformat()} the provider side totals "
                f"{usd_text(provider_total)} and the ledger {usd_text(report.ledger_nanos)}: a drift of "
                f"{usd_text(drift)} ({percent}%), mostly {main.replace('_', ' ')}. Unexplained: "
                f"{usd_text(report.unexplained_nanos)}. See `fleetledger reconcile report`."
            ),
            data={
                "since": since.isoformat(),
                "until": until.isoformat(),
                "provider_usd": format_usd(provider_total),
                "ledger_usd": format_usd(report.ledger_nanos),
                "drift_usd": format_usd(drift),
                "drift_percent": str(percent),
                "by_class_usd": {name: format_usd(nanos) for name, nanos in classes.items()},
                "unexplained_usd": format_usd(report.unexplained_nanos),
            },
        )
    ]
