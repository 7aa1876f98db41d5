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

The Ledger is a façade, not a service locator: its constructor resolves the settings and the clock
and hands them to the composition root (:func:`fleetledger.ledger.app.build`), which builds the
store, pricer, bus, budget enforcer, alert engine (with every rule kind registered), budgets
service, event sink and background writer. The Ledger records through the sink and the writer and
answers queries with :mod:`fleetledger.analytics.costs`, imported like any other lower layer.

A Ledger opens a database. For a fleetledger server, :func:`fleetledger.connect` returns an
:class:`~fleetledger.sdk.http.HttpLedger` for ``http(s)://`` URLs (and a Ledger otherwise);
``Ledger("http://...")`` raises :class:`~fleetledger.core.errors.InvalidInput` saying so.
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

from fleetledger.analytics.costs import cost_report, event_detail, recent_events
from fleetledger.budgets.enforce import Decision, Reservation
from fleetledger.budgets.estimate import estimate_input_tokens
from fleetledger.core import attribution
from fleetledger.core.errors import InvalidEvent, InvalidInput
from fleetledger.core.money import format_usd, nanos_to_usd, parse_usd, usd_to_nanos
from fleetledger.core.settings import Settings
from fleetledger.core.time import to_us
from fleetledger.core.usage import DIMENSIONS, UsageEvent, parse_event
from fleetledger.ingest.responses import extract_usage
from fleetledger.ledger.app import build
from fleetledger.ledger.rows import Clock, PricedEvent, event_row, price_event
from fleetledger.storage.schema import EVENT_INDEX
from fleetledger.storage.store import Store

__all__ = ["Ledger", "PricedEvent", "IngestResult", "Rejection", "event_row"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


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


_COST = EVENT_INDEX["cost_nanos"]
_EVENT_ID = EVENT_INDEX["event_id"]
_PROVIDER = EVENT_INDEX["provider"]
#: The attribution a reservation's line item keeps: every dimension but those that describe the
#: call itself (a line item has its own tier, category and status), plus tags.
_LINE_ITEM_DIMS = (frozenset(DIMENSIONS) - {"service_tier", "category", "status"}) | {"tags"}


def _json_text(value: str | None) -> str:
    return "null" if value is None else json.dumps(value)


class Ledger:
    """Records, prices, stores and queries LLM usage. Thread-safe; share one per process.

    ``url`` (or ``settings.database_url``) is a database: ``sqlite:///path.db`` or
    ``postgresql://user@host/db``. To record to a fleetledger *server*, use
    :func:`fleetledger.connect` or :class:`fleetledger.HttpLedger`; an ``http(s)://`` URL here is
    refused with that advice. The collaborators (``store``, ``pricer``, ``bus``, ``enforcer``,
    ``alerts``, ``budgets``) are built by the composition root, :func:`fleetledger.ledger.app.build`.
    """

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
        resolved = base.model_copy(update={"database_url": url}) if url else base
        if resolved.database_url.strip().lower().startswith(("http://", "https://")):
            raise InvalidInput(
                f"Ledger({resolved.database_url!r}): a Ledger opens a database; to record to a fleetledger "
                "server use fleetledger.connect(url) or fleetledger.HttpLedger(url, api_key=...)"
            )
        self.settings = resolved
        self.clock: Clock = clock or _utcnow
        parts = build(self.settings, clock=self.clock, ledger=self, store=store, background=background)
        self._parts = parts
        self.store = parts.store
        self.pricer = parts.pricer
        self.bus = parts.bus
        self.enforcer = parts.enforcer
        self.alerts = parts.alerts
        self.budgets = parts.budgets
        self._sink = parts.sink
        self._writer = parts.writer
        self._id_prefix = secrets.token_hex(8)
        self._id_counter = itertools.count(1)
        self._closed = False
        if self._writer is not None:
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
        self._parts.close()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every recorded event is in the database."""
        return self._writer.flush(timeout) if self._writer is not None else True

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
        priced = price_event(self.pricer, event, event.event_id)  # type: ignore[arg-type]
        if reservation is not None:
            self._sink.write_rows([event_row(priced, source=source, ingested_us=to_us(self.clock()))], reservation)
        elif self._writer is not None:
            # The row is built here, not on the writer thread: the writer then holds the GIL for
            # less time, which is what keeps record()'s tail latency low (measured, bench/run.py).
            row = event_row(priced, source=source, ingested_us=to_us(self.clock()))
            journal_line = f'{{"source":{_json_text(source)},"event":{event.model_dump_json(exclude_none=True)}}}'
            self._writer.submit(row, journal_line)
        else:
            self._sink.write_priced([priced], source=source)
        return priced

    def record_response(self, response: Any, *, provider: str | None = None, **dimensions: Any) -> PricedEvent:
        """Record the usage reported in a provider SDK response object or its raw JSON."""
        extracted = extract_usage(response, provider=provider)
        return self.record(**{**extracted.as_event_fields(), **dimensions})

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
            stored = self._sink.write_priced(batch, source=source)
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
                    priced = price_event(self.pricer, event, event.event_id or event.content_id())
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
        self.flush()
        return cost_report(self, by=by, since=since, until=until, where=where)

    def recent_events(self, **query: Any) -> list[dict[str, Any]]:
        """The newest events matching a range and filters (see analytics.recent_events)."""
        self.flush()
        return recent_events(self, **query)

    def event(self, event_id: str) -> dict[str, Any] | None:
        """One stored event by id, with its cost breakdown; None when there is none."""
        self.flush()
        return event_detail(self.store, event_id)


def _close_at_exit(ref: weakref.ref[Ledger]) -> None:
    ledger = ref()
    if ledger is not None:
        ledger.close()
