"""The rule registry: for each alert rule kind, the evaluator that checks it.

Which kinds exist is fixed in one place, :data:`~fleetledger.alerts.rules.RULE_KINDS`, and so is
what a valid rule of each kind looks like (:func:`~fleetledger.alerts.rules.validate_params`).
How a *scheduled* kind is checked against the ledger is an evaluator,
``(rule, now, store) -> findings``, and this registry maps ``kind -> evaluator``:

* ``absolute_spend``, ``percent_increase`` and ``cost_per_request`` are built in: every registry
  starts with them (:data:`~fleetledger.alerts.rules.BUILTIN_EVALUATORS`).
* ``forecast_overrun`` (:mod:`fleetledger.analytics.forecast`), ``anomaly``
  (:mod:`fleetledger.analytics.anomalies`) and ``reconciliation_drift``
  (:mod:`fleetledger.reconciliation.drift`) are provided by layers above this one. The alerts
  package never imports them; the composition root (:func:`fleetledger.ledger.app.build`)
  registers their evaluators into the engine's registry, and they import ``Finding`` and ``Rule``
  from :mod:`fleetledger.alerts.rules`, so the dependency points one way.
* ``budget`` rules have no evaluator: they react to the budgets engine's ``budget.*`` events.

Each :class:`~fleetledger.alerts.engine.AlertEngine` has its own registry (a bare engine, such as
the one the CLI's rule commands open, knows only the built-in kinds and skips the others when it
evaluates). Registering an evaluator for a kind that does not exist, or for ``budget``, and
looking up a kind that does not exist, raise :class:`~fleetledger.core.errors.InvalidInput`
naming the kinds that do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from fleetledger.alerts.rules import BUILTIN_EVALUATORS, RULE_KINDS, Evaluator
from fleetledger.core.errors import InvalidInput

__all__ = ["RuleRegistry", "SCHEDULED_KINDS"]

#: The kinds an evaluator can be registered for (every kind but ``budget``).
SCHEDULED_KINDS = tuple(kind for kind in RULE_KINDS if kind != "budget")


class RuleRegistry:
    """``kind -> evaluator`` for the scheduled rule kinds; starts with the built-in spend kinds."""

    def __init__(self, evaluators: Mapping[str, Evaluator] | None = None) -> None:
        self._evaluators: dict[str, Evaluator] = dict(BUILTIN_EVALUATORS)
        for kind, evaluator in (evaluators or {}).items():
            self.register(kind, evaluator)

    def register(self, kind: str, evaluator: Evaluator) -> None:
        """Plug in (or replace) the evaluator of a scheduled kind, e.g. ``forecast_overrun``."""
        if kind not in SCHEDULED_KINDS:
            raise InvalidInput(f"kind: {kind!r} cannot have an evaluator; use one of {', '.join(SCHEDULED_KINDS)}")
        self._evaluators[kind] = evaluator

    def evaluator(self, kind: str) -> Evaluator | None:
        """The evaluator of ``kind``; None for ``budget`` and for a kind nothing registered yet."""
        if kind not in RULE_KINDS:
            raise InvalidInput(f"kind: {kind!r} is not a rule kind; use one of {', '.join(RULE_KINDS)}")
        return self._evaluators.get(kind)

    def __contains__(self, kind: object) -> bool:
        return kind in self._evaluators

    def __iter__(self) -> Iterator[str]:
        """The kinds that have an evaluator, in :data:`RULE_KINDS` order."""
        return iter([kind for kind in RULE_KINDS if kind in self._evaluators])

    def __repr__(self) -> str:
        return f"RuleRegistry({', '.join(self)})"
