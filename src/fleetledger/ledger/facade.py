"""The Ledger: record, price, attribute, store and query LLM usage.

Everything else (CLI, REST API, gateway, dashboard) calls this object::

    from fleetledger import Ledger

    ledger = Ledger("sqlite:///fleetledger.db")
    with ledger.attribute(department="research", agent="summarizer"):
        event = ledger.record(provider="openai", model="gpt-4o", input_tokens=1200, output_tokens=300)
    print(event.cost_usd)                    # Decimal('0.006000000')
    ledger.record_response(openai_response, project="search")   # usage read from the SDK object
    ledger.costs(by=["department", "model"], since="30d")

``record()`` validates and prices the event in the caller's thread and returns it; the database
write happens on a background thread in batches (see :mod:`fleetledger.ingest.writer`). Pass
``background=False`` to write synchronously. Reads flush pending writes first.
"""

from __future__ import annotations

import atexit
import gc
import itertools
import json
import secrets
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fleetledger.alerts.engine import AlertEngine
from fleetledger.budgets.enforce import Decision, Enforcer, Reservation
from fleetledger.budgets.service import BudgetService
from fleetledger.core import attribution
from fleetledger.core.bus import COST_RECORDED, EventBus
from fleetledger.core.errors import FleetLedgerError, InvalidEvent, InvalidInput
from fleetledger.core.money import format_usd, nanos_to_usd, parse_usd, usd_to_nanos
from fleetledger.core.settings import Settings
from fleetledger.core.time import to_us
from fleetledger.core.usage import UsageEvent, parse_event
from fleetledger.ingest.writer import BatchWriter, Journal, recover_journals
from fleetledger.pricing import Cost, Pricer
from fleetledger.pricing.overrides import load_overrides
from fleetledger.storage.schema import EVENT_COLUMNS, EVENT_INDEX
from fleetledger.storage.store import Store

__all__ = ["Ledger", "PricedEvent", "IngestResult", "Rejection"]

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class PricedEvent:
    """A usage event with its exact cost."""

    event: UsageEvent
    cost: Cost
    event_id: str

    @property
    def cost_usd(self) -> Decimal:
        return nanos_to_usd(self.cost.total_nanos)

    def to_dict(self) -> dict[str, Any]:
        data = self.event.canonical_dict()
        data["event_id"] = self.event_id
        data["provider"] = self.cost.provider
        data["cost"] = self.cost.as_dict()
        data["cost_usd"] = format_usd(self.cost.total_nanos)
        return data


@dataclass(slots=True)
class Rejection:
    location: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"location": self.location, "reason": self.reason}


@dataclass(slots=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    cost_nanos: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    #: With ``track=True``: one entry per item, in input order (index or location, status, id, cost).
    items: list[dict[str, Any]] = field(default_factory=list)
    spend_by_provider: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


#: The order :func:`event_row` builds in; must equal the table's (checked at import).
_ROW_ORDER = (
    "event_id",
    "ts_us",
    "provider",
    "model",
    "department",
    "cost_center",
    "project",
    "team",
    "user",
    "agent",
    "task",
    "environment",
    "version",
    "operation",
    "session_id",
    "service_tier",
    "category",
    "status",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "units",
    "tags",
    "latency_ms",
    "request_id",
    "trace_id",
    "span_id",
    "prompt_hash",
    "cost_nanos",
    "cost_input_nanos",
    "cost_cache_read_nanos",
    "cost_cache_write_nanos",
    "cost_output_nanos",
    "cost_other_nanos",
    "cost_components",
    "priced",
    "price_source",
    "price_version",
    "catalog_model",
    "unpriced_reason",
    "source",
    "ingested_us",
)
if _ROW_ORDER != EVENT_COLUMNS:  # pragma: no cover - a schema change must update event_row too
    raise RuntimeError("event_row() is out of step with the events table columns")
_COST = EVENT_INDEX["cost_nanos"]
_EVENT_ID = EVENT_INDEX["event_id"]
_PROVIDER = EVENT_INDEX["provider"]
_INPUT = EVENT_INDEX["input_tokens"]
#: What ``cost.recorded`` carries on the event bus.
_PUBLISHED = (
    "event_id",
    "ts_us",
    "provider",
    "model",
    "department",
    "project",
    "agent",
    "environment",
    "cost_nanos",
    "priced",
)
_LINE_ITEM_DIMS = frozenset(
    (
        "provider",
        "model",
        "department",
        "cost_center",
        "project",
        "team",
        "user",
        "agent",
        "task",
        "environment",
        "version",
        "operation",
        "session_id",
        "tags",
    )
)


def _json_text(value: str | None) -> str:
    return "null" if value is None else json.dumps(value)


def _json(value: Any) -> str | None:
    return json.dumps(value, separators=(",", ":")) if value else None


def event_row(priced: PricedEvent, *, source: str | None, ingested_us: int) -> tuple[Any, ...]:
    """The ``events`` table row for a priced event, as a tuple in column order (see _ROW_ORDER)."""
    event, cost = priced.event, priced.cost
    extra = event.extra_units()
    return (
        priced.event_id,
        to_us(event.timestamp),
        cost.provider,
        event.model,
        event.department,
        event.cost_center,
        event.project,
        event.team,
        event.user,
        event.agent,
        event.task,
        event.environment,
        event.version,
        event.operation,
        event.session_id,
        event.service_tier,
        event.category,
        event.status,
        event.input_tokens,
        event.cache_read_tokens,
        event.cache_write_tokens,
        event.output_tokens,
        event.reasoning_tokens,
        _json(extra),
        _json(event.tags),
        event.latency_ms,
        event.request_id,
        event.trace_id,
        event.span_id,
        event.prompt_hash,
        cost.total_nanos,
        *cost.buckets,
        _json(cost.components),
        cost.priced,
        cost.source,
        cost.version,
        cost.model_id,
        cost.reason,
        source,
        ingested_us,
    )


class Ledger:
    """Records, prices, stores and queries LLM usage. Thread-safe; share one per process.

    ``Ledger("http://host:8000", api_key=...)`` returns an :class:`~fleetledger.sdk.http.HttpLedger`
    that records to a fleetledger server through a disk spool (see docs/sdk-http.md).
    """

    def __new__(cls, url: str | None = None, **kwargs: Any) -> Ledger:
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            from fleetledger.sdk.http import HttpLedger

            return HttpLedger(url, **kwargs)  # type: ignore[return-value]
        return super().__new__(cls)

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        background: bool = True,
        store: Store | None = None,
    ) -> None:
        base = settings or Settings()
        self.settings = base.model_copy(update={"database_url": url}) if url else base
        self.clock: Clock = clock or _utcnow
        self.store = store or Store(self.settings.database_url)
        self.pricer = Pricer(load_overrides(self.store))
        self.bus = EventBus()
        self.enforcer = Enforcer(self.store, clock=self.clock, publish=self.bus.publish)
        # Budget levels published on the bus become alerts (outbox rows) through the alert rules.
        self.alerts = AlertEngine(self.store, clock=self.clock, bus=self.bus)
        # Forecast and anomaly rules are evaluated by the insight engine, imported only when used
        # (statsmodels is slow to import).
        self.alerts.register_evaluator("forecast_overrun", self._evaluate_forecast_rule)
        self.alerts.register_evaluator("anomaly", _evaluate_anomaly_rule)
        self.alerts.register_evaluator("reconciliation_drift", self._evaluate_reconciliation_rule)
        self.budgets = BudgetService(
            self.store,
            self.enforcer,
            clock=self.clock,
            fx_rates=self.settings.fx_rates,
            approval_limit_usd=self.settings.approval_limit_usd,
        )
        self._id_prefix = secrets.token_hex(8)
        self._id_counter = itertools.count(1)
        self._writer: BatchWriter | None = None
        self._closed = False
        if background:
            self._recover()
            journal = Journal(self.settings.resolved_spool_dir())
            self._writer = BatchWriter(
                self._write_rows,
                batch_size=self.settings.batch_size,
                interval_s=self.settings.flush_interval_s,
                queue_size=self.settings.queue_size,
                journal=journal,
            )
            atexit.register(_close_at_exit, weakref.ref(self))

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write everything pending, then release the database."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()
        self.alerts.close()
        self.store.dispose()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every recorded event is in the database."""
        return self._writer.flush(timeout) if self._writer is not None else True

    def _recover(self) -> None:
        for path, records in recover_journals(self.settings.resolved_spool_dir()):
            events = [self._price(parse_event(r["event"]), r["event"]["event_id"]) for r in records]
            by_source: dict[str | None, list[PricedEvent]] = {}
            for record, priced in zip(records, events, strict=True):
                by_source.setdefault(record.get("source"), []).append(priced)
            for source, batch in by_source.items():
                self._write_priced(batch, source=source)
            path.unlink(missing_ok=True)

    # -- recording -----------------------------------------------------------------------------

    def attribute(self, **dimensions: Any) -> AbstractContextManager[None]:
        """Default dimensions for events recorded inside the block (nests; thread/task local)."""
        return attribution.attribute(**dimensions)

    def record(
        self, *, source: str | None = "sdk", reservation: Reservation | None = None, **fields: Any
    ) -> PricedEvent:
        """Validate, price and record one event; returns it priced. Raises InvalidEvent.

        With ``reservation``, the event is written at once and commits the reservation with the
        event's actual cost, in the same transaction.
        """
        fields = attribution.with_defaults(fields)
        if fields.get("timestamp") is None:
            fields["timestamp"] = self.clock()
        if reservation is not None:
            for key, value in reservation.dims.items():
                fields.setdefault(key, value)
        event = parse_event(fields)
        return self.record_event(event, source=source, reservation=reservation)

    def record_event(
        self, event: UsageEvent, *, source: str | None = "sdk", reservation: Reservation | None = None
    ) -> PricedEvent:
        if event.event_id is None:
            # A random 64-bit prefix per Ledger plus a counter: unique across processes, and ten
            # times cheaper than uuid4() on the hot path.
            object.__setattr__(event, "event_id", f"ev-{self._id_prefix}-{next(self._id_counter):x}")
        priced = self._price(event, event.event_id)  # type: ignore[arg-type]
        if reservation is not None:
            self._write_rows([event_row(priced, source=source, ingested_us=to_us(self.clock()))], reservation)
        elif self._writer is not None:
            # The row is built here, not on the writer thread: the writer then holds the GIL for
            # less time, which is what keeps record()'s tail latency low (measured, bench/run.py).
            row = event_row(priced, source=source, ingested_us=to_us(self.clock()))
            journal_line = f'{{"source":{_json_text(source)},"event":{event.model_dump_json(exclude_none=True)}}}'
            self._writer.submit(row, journal_line)
        else:
            self._write_priced([priced], source=source)
        return priced

    def record_response(self, response: Any, *, provider: str | None = None, **dimensions: Any) -> PricedEvent:
        """Record the usage reported in a provider SDK response object or its raw JSON."""
        from fleetledger.ingest.responses import extract_usage

        extracted = extract_usage(response, provider=provider)
        return self.record(**{**extracted.as_event_fields(), **dimensions})

    def _price(self, event: UsageEvent, event_id: str) -> PricedEvent:
        try:
            cost = self.pricer.price(event)
        except FleetLedgerError as exc:
            raise InvalidEvent(str(exc)) from None
        return PricedEvent(event=event, cost=cost, event_id=event_id)

    def _write_priced(self, batch: Sequence[PricedEvent], *, source: str | None = None) -> list[tuple[Any, ...]]:
        ingested = to_us(self.clock())
        return self._write_rows([event_row(priced, source=source, ingested_us=ingested) for priced in batch])

    def _write_rows(
        self, rows: Sequence[tuple[Any, ...]], reservation: Reservation | None = None
    ) -> list[tuple[Any, ...]]:
        """Store rows, count them in their budgets and commit ``reservation``, in one transaction."""
        with self.store.write() as conn:
            fresh = self.store.insert_events(conn, rows)
            events = self.enforcer.on_events(conn, fresh)
            if reservation is not None and not reservation.provisional:
                row = rows[0]
                self.enforcer.close_reservation(
                    conn,
                    reservation.id,
                    status="committed",
                    actual_nanos=row[_COST],
                    event_id=row[_EVENT_ID],
                    input_tokens=row[_INPUT],
                )
        self.enforcer.publish_after(events)
        if fresh and self.bus.subscriber_count(COST_RECORDED):
            for row in fresh:
                self.bus.publish(COST_RECORDED, {name: row[EVENT_INDEX[name]] for name in _PUBLISHED})
        return list(fresh)

    def _evaluate_forecast_rule(self, rule: Any, now: datetime, store: Store) -> Any:
        from fleetledger.analytics.forecast import forecast_overrun_evaluator

        return forecast_overrun_evaluator(rule, now, store, ledger=self)

    def _evaluate_reconciliation_rule(self, rule: Any, now: datetime, store: Store) -> Any:
        from fleetledger.reconciliation.compare import evaluate_drift_rule, settings_keys

        return evaluate_drift_rule(
            rule,
            now,
            store,
            pricer=self.pricer,
            keys=settings_keys(self),
            tolerance_usd=self.settings.reconciliation_tolerance_usd,
        )

    # -- budgets -------------------------------------------------------------------------------

    def estimate_cost(
        self,
        *,
        model: str,
        provider: str | None = None,
        prompt: str | None = None,
        input_tokens: int | None = None,
        max_output_tokens: int = 0,
        service_tier: str = "standard",
    ) -> Decimal:
        """An upper estimate of a request's cost from its prompt and its max output tokens."""
        from fleetledger.budgets.estimate import estimate_input_tokens

        if input_tokens is None:
            input_tokens = estimate_input_tokens(prompt or "", model, self.enforcer.learned_ratio(model))
        event = parse_event(
            {
                "timestamp": self.clock(),
                "provider": provider,
                "model": model,
                "input_tokens": input_tokens,
                "output_tokens": max_output_tokens,
                "service_tier": service_tier,
            }
        )
        return nanos_to_usd(self.pricer.price(event).total_nanos)

    def _budget_dims(self, dims: Mapping[str, Any]) -> dict[str, Any]:
        merged = dict(attribution.current())
        merged.update({k: v for k, v in dims.items() if v is not None})
        return merged

    def reserve(
        self,
        estimated_cost_usd: Decimal | str | int | None = None,
        *,
        ttl_s: float = 300,
        prompt: str | None = None,
        max_output_tokens: int = 0,
        **dims: Any,
    ) -> Reservation:
        """Hold ``estimated_cost_usd`` against every matching budget, or raise BudgetExceeded.

        Without an estimate, one is made from ``model``, ``prompt`` and ``max_output_tokens``.
        """
        dims = self._budget_dims(dims)
        if estimated_cost_usd is None:
            if not dims.get("model"):
                raise InvalidInput("reserve(): give estimated_cost_usd, or model (and prompt / max_output_tokens)")
            estimated_cost_usd = self.estimate_cost(
                model=dims["model"], provider=dims.get("provider"), prompt=prompt, max_output_tokens=max_output_tokens
            )
        amount = usd_to_nanos(parse_usd(estimated_cost_usd, field="estimated_cost_usd"))
        if amount < 0:
            raise InvalidInput("estimated_cost_usd: must not be negative")
        reservation = self.enforcer.reserve(
            amount,
            dims,
            ttl=timedelta(seconds=ttl_s),
            model=dims.get("model"),
            prompt_chars=len(prompt) if prompt else None,
        )
        reservation._ledger = self
        return reservation

    def check(self, estimated_cost_usd: Decimal | str | int, **dims: Any) -> Decision:
        """What reserve() would decide, without holding anything."""
        amount = usd_to_nanos(parse_usd(estimated_cost_usd, field="estimated_cost_usd"))
        return self.enforcer.check(amount, self._budget_dims(dims))

    def commit_reservation(self, reservation: Reservation, actual_cost_usd: Decimal | str | int) -> PricedEvent:
        """Charge ``actual_cost_usd`` as a line item with the reservation's attribution."""
        fields = {k: v for k, v in reservation.dims.items() if k in _LINE_ITEM_DIMS}
        return self.record(
            reservation=reservation,
            category="other",
            operation=fields.pop("operation", None) or "reservation",
            cost_usd=parse_usd(actual_cost_usd, field="actual_cost_usd"),
            **fields,
        )

    def release_reservation(self, reservation: Reservation) -> None:
        if reservation.provisional:
            return
        with self.store.write() as conn:
            self.enforcer.close_reservation(conn, reservation.id, status="released", actual_nanos=0)

    # -- bulk ingest ---------------------------------------------------------------------------

    def ingest(
        self,
        items: Iterable[tuple[str, Any]],
        *,
        source: str | None = None,
        batch_size: int = 5_000,
        on_progress: Callable[[int], None] | None = None,
        track: bool = False,
    ) -> IngestResult:
        """Ingest ``(location, event mapping | UsageEvent | InvalidEvent)`` pairs.

        Bad items are rejected with their location and reason; every valid item around them is
        stored. Items without ``event_id`` get one derived from their content, so ingesting the
        same data twice changes nothing. ``track`` lists every item's outcome in ``result.items``.
        """
        result = IngestResult()
        batch: list[PricedEvent] = []
        pending: list[dict[str, Any]] = []
        gc_was_enabled = gc.isenabled()
        # Bulk ingest allocates millions of short-lived, acyclic objects; the cyclic collector
        # scanning them cost a quarter of the time (measured). It is restored below.
        gc.disable()

        def write() -> None:
            stored = self._write_priced(batch, source=source)
            result.accepted += len(stored)
            result.duplicates += len(batch) - len(stored)
            result.cost_nanos += sum(row[_COST] for row in stored)
            for row in stored:
                provider = row[_PROVIDER]
                result.spend_by_provider[provider] = result.spend_by_provider.get(provider, 0) + row[_COST]
            if track:
                fresh = {row[_EVENT_ID] for row in stored}
                for entry in pending:
                    if entry["event_id"] in fresh:
                        fresh.discard(entry["event_id"])  # a repeat within the batch is a duplicate
                    else:
                        entry["status"] = "duplicate"
                        entry.pop("cost_usd", None)
                pending.clear()
            if on_progress is not None:
                on_progress(len(batch))
            batch.clear()

        def place(location: str) -> dict[str, Any]:
            return {"index": int(location)} if location.isdigit() else {"location": location}

        try:
            for location, item in items:
                try:
                    if isinstance(item, InvalidEvent):
                        raise item
                    event = item if isinstance(item, UsageEvent) else parse_event(item, location=location)
                    priced = self._price(event, event.event_id or event.content_id())
                    batch.append(priced)
                    if track:
                        entry = {
                            **place(location),
                            "status": "accepted",
                            "event_id": priced.event_id,
                            "cost_usd": format_usd(priced.cost.total_nanos),
                        }
                        pending.append(entry)
                        result.items.append(entry)
                except InvalidEvent as exc:
                    result.rejected += 1
                    result.rejections.append(Rejection(location, exc.message))
                    if track:
                        result.items.append({**place(location), "status": "rejected", "reason": exc.message})
                    if on_progress is not None:
                        on_progress(1)
                    continue
                if len(batch) >= batch_size:
                    write()
            if batch:
                write()
        finally:
            if gc_was_enabled:
                gc.enable()
        return result

    # -- reading -------------------------------------------------------------------------------

    def costs(
        self,
        by: Sequence[str] = (),
        since: Any = "30d",
        until: Any = None,
        where: Mapping[str, Sequence[str | None]] | None = None,
    ) -> Any:
        """Grouped spend (see :func:`fleetledger.analytics.costs.cost_report`)."""
        from fleetledger.analytics.costs import cost_report

        self.flush()
        return cost_report(self, by=by, since=since, until=until, where=where)

    def recent_events(self, **query: Any) -> list[dict[str, Any]]:
        """The newest events matching a range and filters (see analytics.recent_events)."""
        from fleetledger.analytics.costs import recent_events

        self.flush()
        return recent_events(self, **query)

    def event(self, event_id: str) -> dict[str, Any] | None:
        from fleetledger.analytics.costs import event_detail

        self.flush()
        return event_detail(self.store, event_id)


def _evaluate_anomaly_rule(rule: Any, now: datetime, store: Store) -> Any:
    from fleetledger.analytics.anomalies.detect import evaluate_anomaly_rule

    return evaluate_anomaly_rule(rule, now, store)


def _close_at_exit(ref: weakref.ref[Ledger]) -> None:
    ledger = ref()
    if ledger is not None:
        ledger.close()
