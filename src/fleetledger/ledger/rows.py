"""Priced events, the ``events`` rows they become, and the sink that stores rows in one transaction.

:func:`event_row` is the one place an event becomes a row (a tuple in the table's column order,
built in the caller's thread so the writer thread holds the GIL for less time). The
:class:`EventSink` is what the background writer (:class:`~fleetledger.ingest.writer.BatchWriter`)
and the synchronous paths of the :class:`~fleetledger.ledger.facade.Ledger` hand rows to: in one
write transaction it inserts them (idempotently by ``event_id``), counts the new ones in their
budgets and commits a reservation; after the commit it publishes the budget events and
``cost.recorded``. The composition root (:mod:`fleetledger.ledger.app`) builds it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from fleetledger.budgets.enforce import Enforcer, Reservation
from fleetledger.core.bus import COST_RECORDED, EventBus
from fleetledger.core.errors import FleetLedgerError, InvalidEvent
from fleetledger.core.money import format_usd, nanos_to_usd
from fleetledger.core.time import to_us
from fleetledger.core.usage import UsageEvent
from fleetledger.pricing import Cost, Pricer
from fleetledger.storage.schema import EVENT_COLUMNS, EVENT_INDEX
from fleetledger.storage.store import Store

__all__ = ["PricedEvent", "event_row", "price_event", "EventSink", "Clock"]

Clock = Callable[[], datetime]


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


def price_event(pricer: Pricer, event: UsageEvent, event_id: str) -> PricedEvent:
    """``event`` priced by ``pricer``; a pricing error is the event's fault (InvalidEvent)."""
    try:
        cost = pricer.price(event)
    except FleetLedgerError as exc:
        raise InvalidEvent(str(exc)) from None
    return PricedEvent(event=event, cost=cost, event_id=event_id)


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


class EventSink:
    """Stores event rows, counts them in their budgets and commits a reservation, in one transaction."""

    def __init__(self, store: Store, enforcer: Enforcer, bus: EventBus, clock: Clock) -> None:
        self.store = store
        self.enforcer = enforcer
        self.bus = bus
        self.clock = clock

    def write_priced(self, batch: Sequence[PricedEvent], *, source: str | None = None) -> list[tuple[Any, ...]]:
        """Store priced events (see :meth:`write_rows`); returns the rows that were new."""
        ingested = to_us(self.clock())
        return self.write_rows([event_row(priced, source=source, ingested_us=ingested) for priced in batch])

    def write_rows(
        self, rows: Sequence[tuple[Any, ...]], reservation: Reservation | None = None
    ) -> list[tuple[Any, ...]]:
        """Store rows, count them in their budgets and commit ``reservation``, in one transaction.

        Returns the rows that were new (a repeated ``event_id`` changes nothing). Budget events and
        ``cost.recorded`` are published after the commit.
        """
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
