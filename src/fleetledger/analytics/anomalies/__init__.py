"""Cost anomalies: a seasonality-aware robust detector, ranked root causes and a review lifecycle.

The modules, bottom up: :mod:`.anomaly` (the record, the knobs, the vocabulary), :mod:`.series`
(the daily and hourly series and their weekly-profile expectation), :mod:`.scoring` (robust z,
overdispersion, the 0-1 score), :mod:`.causes` (root causes), :mod:`.detector` (the multi-scale
scan), :mod:`.lifecycle` (storage, suppression, statuses) and :mod:`.alert_rule` (the ``anomaly``
alert rule). :mod:`.detect` keeps the former single module's names importable.

The public names below load their module on first use: opening a ledger imports :mod:`.tables`
(hence this package) for the migrations, and must not load numpy and the detector with it. The
function :func:`.detector.detect` is not among them: ``fleetledger.analytics.anomalies.detect`` is
the module of that name.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetledger.analytics.anomalies.alert_rule import evaluate_anomaly_rule, register_evaluator
    from fleetledger.analytics.anomalies.anomaly import (
        CAUSE_DIMENSIONS,
        CAUSES,
        GRANULARITIES,
        LEVELS,
        STATUSES,
        Anomaly,
        DetectorConfig,
    )
    from fleetledger.analytics.anomalies.causes import explain
    from fleetledger.analytics.anomalies.lifecycle import get_anomaly, list_anomalies, scan, scan_store, set_status

__all__ = [
    "Anomaly",
    "DetectorConfig",
    "LEVELS",
    "GRANULARITIES",
    "STATUSES",
    "CAUSES",
    "CAUSE_DIMENSIONS",
    "scan",
    "scan_store",
    "explain",
    "list_anomalies",
    "get_anomaly",
    "set_status",
    "evaluate_anomaly_rule",
    "register_evaluator",
]

#: The module each public name lives in.
_HOMES = {
    **dict.fromkeys(
        ("Anomaly", "DetectorConfig", "LEVELS", "GRANULARITIES", "STATUSES", "CAUSES", "CAUSE_DIMENSIONS"),
        "fleetledger.analytics.anomalies.anomaly",
    ),
    **dict.fromkeys(
        ("scan", "scan_store", "list_anomalies", "get_anomaly", "set_status"),
        "fleetledger.analytics.anomalies.lifecycle",
    ),
    "explain": "fleetledger.analytics.anomalies.causes",
    "evaluate_anomaly_rule": "fleetledger.analytics.anomalies.alert_rule",
    "register_evaluator": "fleetledger.analytics.anomalies.alert_rule",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
