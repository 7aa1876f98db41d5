"""The anomaly API under its former module path (``from fleetledger.analytics.anomalies import detect``).

Detection lives in :mod:`.detector`, root causes in :mod:`.causes`, storage and the review lifecycle
in :mod:`.lifecycle`, the alert rule in :mod:`.alert_rule`; see the package docstring.
"""

from __future__ import annotations

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
from fleetledger.analytics.anomalies.detector import detect
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
    "detect",
    "explain",
    "list_anomalies",
    "get_anomaly",
    "set_status",
    "evaluate_anomaly_rule",
    "register_evaluator",
]
