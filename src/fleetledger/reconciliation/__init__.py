"""Reconciliation: provider lines against the metered ledger, drift and its explanation.

* :mod:`.importers` -- readers of provider usage and cost reports and invoice CSVs;
* :mod:`.imports` -- :func:`import_lines`: store provider lines, idempotently;
* :mod:`.keys` -- :class:`KeyMap`: how a provider's keys meet the ledger's dimensions;
* :mod:`.compare` -- :func:`reconcile`: the per-cell comparison and its exact split into classes;
* :mod:`.report` -- :class:`Cell` and :class:`ReconciliationReport`, with their totals;
* :mod:`.drift` -- the ``reconciliation_drift`` alert rule's evaluator;
* :mod:`.tables` -- ``provider_lines``.
"""

from __future__ import annotations

from fleetledger.reconciliation.compare import DEFAULT_TOLERANCE_USD, reconcile, reconcile_ledger
from fleetledger.reconciliation.drift import evaluate_drift_rule, validate_drift_params
from fleetledger.reconciliation.importers.provider_lines import KINDS
from fleetledger.reconciliation.imports import ImportResult, import_for_ledger, import_lines, read_lines
from fleetledger.reconciliation.keys import DEFAULT_KEY_MAPS, KeyMap, key_maps, settings_keys
from fleetledger.reconciliation.report import CLASSES, Cell, ReconciliationReport

__all__ = [
    "KINDS",
    "CLASSES",
    "DEFAULT_TOLERANCE_USD",
    "DEFAULT_KEY_MAPS",
    "KeyMap",
    "key_maps",
    "settings_keys",
    "Cell",
    "ReconciliationReport",
    "ImportResult",
    "import_lines",
    "import_for_ledger",
    "read_lines",
    "reconcile",
    "reconcile_ledger",
    "evaluate_drift_rule",
    "validate_drift_params",
]
