"""The composition root: the one place that builds what a ledger runs on.

:func:`build` takes explicit :class:`~fleetledger.core.settings.Settings` and a clock (nothing here
reads the environment or the wall clock) and makes, in this order:

1. the :class:`~fleetledger.storage.store.Store` on ``settings.database_url``, or adopts the one
   given (a caller may share one store between ledgers);
2. the :class:`~fleetledger.pricing.Pricer` over the store's price overrides;
3. the :class:`~fleetledger.core.bus.EventBus`;
4. the budget :class:`~fleetledger.budgets.enforce.Enforcer`, publishing ``budget.*`` on the bus;
5. the :class:`~fleetledger.alerts.engine.AlertEngine`, listening to ``budget.*``, whose
   :class:`~fleetledger.alerts.registry.RuleRegistry` starts with the built-in spend kinds and gets
   the kinds of the layers above alerts from :func:`register_rule_kinds`: ``forecast_overrun``
   (analytics.forecast), ``anomaly`` (analytics.anomalies) and ``reconciliation_drift``
   (reconciliation.drift);
6. the :class:`~fleetledger.budgets.service.BudgetService`;
7. the :class:`~fleetledger.ledger.rows.EventSink`: rows, budget counters and a reservation's
   commit in one transaction, then the bus;
8. with ``background``: replays, through the sink, the journals a previous process left in the
   spool directory, then starts the :class:`~fleetledger.ingest.writer.BatchWriter` over the sink
   with a fresh journal.

The result, :class:`Components`, is what the :class:`~fleetledger.ledger.facade.Ledger` is a façade
over: the Ledger's constructor calls :func:`build` and exposes ``settings``, ``clock``, ``store``,
``pricer``, ``bus``, ``enforcer``, ``alerts`` and ``budgets``, and adds recording and queries on
top. It looks nothing up lazily and registers nothing itself.

The forecast rule needs the façade itself (budgets, prices and a flushed store, through
:func:`fleetledger.analytics.forecast.budget_runway`), so :func:`build` takes the ``ledger`` it
builds for; an evaluator reaches it only when a rule is evaluated, after construction. The
forecast and anomaly evaluators import their module on first use: those modules pull in numpy
(and statsmodels for a fit), which a process that only records events never needs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fleetledger.alerts.engine import AlertEngine
from fleetledger.alerts.registry import RuleRegistry
from fleetledger.alerts.rules import Finding, Rule
from fleetledger.budgets.enforce import Enforcer
from fleetledger.budgets.service import BudgetService
from fleetledger.core.bus import EventBus
from fleetledger.core.settings import Settings
from fleetledger.core.usage import parse_event
from fleetledger.ingest.writer import BatchWriter, Journal, recover_journals
from fleetledger.ledger.rows import Clock, EventSink, PricedEvent, price_event
from fleetledger.pricing import Pricer
from fleetledger.pricing.overrides import load_overrides
from fleetledger.reconciliation.drift import evaluate_drift_rule
from fleetledger.reconciliation.keys import key_maps
from fleetledger.storage.store import Store

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["Components", "build", "register_rule_kinds"]


@dataclass(slots=True)
class Components:
    """The collaborators of one ledger, built by :func:`build`; :meth:`close` releases them."""

    settings: Settings
    clock: Clock
    store: Store
    pricer: Pricer
    bus: EventBus
    enforcer: Enforcer
    alerts: AlertEngine
    budgets: BudgetService
    sink: EventSink
    #: The background writer (None with ``background=False``: writes are synchronous).
    writer: BatchWriter | None

    def close(self) -> None:
        """Write everything pending, stop the alert engine's listeners, release the database."""
        if self.writer is not None:
            self.writer.close()
        self.alerts.close()
        self.store.dispose()


def build(
    settings: Settings,
    *,
    clock: Clock,
    ledger: Ledger,
    store: Store | None = None,
    background: bool = True,
) -> Components:
    """Build the collaborators of ``ledger`` from ``settings`` and ``clock`` (see the module docstring)."""
    store = store or Store(settings.database_url)
    pricer = Pricer(load_overrides(store))
    bus = EventBus()
    enforcer = Enforcer(store, clock=clock, publish=bus.publish)
    # Budget levels published on the bus become alerts (outbox rows) through the alert rules.
    alerts = AlertEngine(store, clock=clock, bus=bus)
    register_rule_kinds(alerts.registry, ledger=ledger, pricer=pricer, settings=settings)
    budgets = BudgetService(
        store,
        enforcer,
        clock=clock,
        fx_rates=settings.fx_rates,
        approval_limit_usd=settings.approval_limit_usd,
    )
    sink = EventSink(store, enforcer, bus, clock)
    writer = None
    if background:
        spool = settings.resolved_spool_dir()
        _replay_journals(spool, pricer, sink)
        writer = BatchWriter(
            sink.write_rows,
            batch_size=settings.batch_size,
            interval_s=settings.flush_interval_s,
            queue_size=settings.queue_size,
            journal=Journal(spool),
        )
    return Components(settings, clock, store, pricer, bus, enforcer, alerts, budgets, sink, writer)


def register_rule_kinds(registry: RuleRegistry, *, ledger: Ledger, pricer: Pricer, settings: Settings) -> None:
    """Register the rule kinds whose evaluators live above the alerts layer."""

    def forecast_overrun(rule: Rule, now: datetime, store: Store) -> Iterable[Finding]:
        from fleetledger.analytics.forecast import forecast_overrun_evaluator  # numpy: imported on first use

        return forecast_overrun_evaluator(rule, now, store, ledger=ledger)

    def anomaly(rule: Rule, now: datetime, store: Store) -> Iterable[Finding]:
        from fleetledger.analytics.anomalies.alert_rule import evaluate_anomaly_rule  # numpy: on first use

        return evaluate_anomaly_rule(rule, now, store)

    def reconciliation_drift(rule: Rule, now: datetime, store: Store) -> Iterable[Finding]:
        return evaluate_drift_rule(
            rule,
            now,
            store,
            pricer=pricer,
            # Read at evaluation, so a bad FLEETLEDGER_RECONCILIATION_KEYS fails the rule, not the ledger.
            keys=key_maps(settings.reconciliation_keys),
            tolerance_usd=settings.reconciliation_tolerance_usd,
        )

    registry.register("forecast_overrun", forecast_overrun)
    registry.register("anomaly", anomaly)
    registry.register("reconciliation_drift", reconciliation_drift)


def _replay_journals(spool_dir: Path, pricer: Pricer, sink: EventSink) -> None:
    """Store what a previous process journaled but did not write, then delete its journals."""
    for path, records in recover_journals(spool_dir):
        by_source: dict[str | None, list[PricedEvent]] = defaultdict(list)
        for record in records:
            priced = price_event(pricer, parse_event(record["event"]), record["event"]["event_id"])
            by_source[record.get("source")].append(priced)
        for source, batch in by_source.items():
            sink.write_priced(batch, source=source)
        path.unlink(missing_ok=True)
