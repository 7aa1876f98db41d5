"""The Ledger: record, price, attribute, store and query LLM usage.

Everything else (CLI, REST API, gateway, dashboard) calls this object::

    from tokenledger import Ledger

    ledger = Ledger("sqlite:///tokenledger.db")
    with ledger.attribute(department="research", agent="summarizer"):
        event = ledger.record(provider="openai", model="gpt-4o", input_tokens=1200, output_tokens=300)
    print(event.cost_usd)                    # Decimal('0.006000000')
    ledger.record_response(openai_response, project="search")   # usage read from the SDK object
    ledger.costs(by=["department", "model"], since="30d")

``record()`` validates and prices the event in the caller's thread and returns it; the database
write happens on a background thread in batches (see :mod:`tokenledger.writer`). Pass
``background=False`` to write synchronously. Reads flush pending writes first.
"""

from __future__ import annotations

import atexit
import contextvars
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from .errors import InvalidEvent, TokenLedgerError
from .money import format_usd, nanos_to_usd
from .pricing import BUCKETS, Cost, Pricer
from .pricing.overrides import load_overrides
from .settings import Settings
from .store.store import Store
from .timeutil import to_us
from .usage import DIMENSIONS, UsageEvent, parse_event
from .writer import BatchWriter, Journal, recover_journals

__all__ = ["Ledger", "PricedEvent", "IngestResult", "Rejection"]

Clock = Callable[[], datetime]
_ATTRIBUTION: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "tokenledger_attribution", default=MappingProxyType({})
)
_ATTRIBUTABLE = frozenset((*DIMENSIONS, "tags")) - {"provider", "model", "status"}


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

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def event_row(priced: PricedEvent, *, source: str | None, ingested_us: int) -> dict[str, Any]:
    """The ``events`` table row for a priced event."""
    event, cost = priced.event, priced.cost
    row: dict[str, Any] = {
        "event_id": priced.event_id,
        "ts_us": to_us(event.timestamp),
        "provider": cost.provider,
        "model": event.model,
        "department": event.department,
        "cost_center": event.cost_center,
        "project": event.project,
        "team": event.team,
        "user": event.user,
        "agent": event.agent,
        "task": event.task,
        "environment": event.environment,
        "version": event.version,
        "operation": event.operation,
        "session_id": event.session_id,
        "service_tier": event.service_tier.value,
        "category": event.category.value,
        "status": event.status.value,
        "input_tokens": event.input_tokens,
        "cache_read_tokens": event.cache_read_tokens,
        "cache_write_tokens": event.cache_write_tokens,
        "output_tokens": event.output_tokens,
        "reasoning_tokens": event.reasoning_tokens,
        "units": event.extra_units() or None,
        "tags": dict(event.tags) or None,
        "latency_ms": event.latency_ms,
        "request_id": event.request_id,
        "trace_id": event.trace_id,
        "span_id": event.span_id,
        "prompt_hash": event.prompt_hash,
        "cost_nanos": cost.total_nanos,
        "cost_components": cost.components or None,
        "priced": cost.priced,
        "price_source": cost.source,
        "price_version": cost.version,
        "catalog_model": cost.model_id,
        "unpriced_reason": cost.reason,
        "source": source,
        "ingested_us": ingested_us,
    }
    for name, value in zip(BUCKETS, cost.buckets, strict=True):
        row[f"cost_{name}_nanos"] = value
    return row


class Ledger:
    """Records, prices, stores and queries LLM usage. Thread-safe; share one per process."""

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
        self._write_lock = threading.Lock()
        self._writer: BatchWriter | None = None
        self._closed = False
        if background:
            self._recover()
            journal = Journal(self.settings.resolved_spool_dir())
            self._writer = BatchWriter(
                self._write_priced,
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

    @contextmanager
    def attribute(self, **dimensions: Any) -> Iterator[None]:
        """Default dimensions for events recorded inside the block (nests; thread/task local)."""
        unknown = set(dimensions) - _ATTRIBUTABLE
        if unknown:
            raise InvalidEvent(f"attribute(): unknown dimension(s) {', '.join(sorted(unknown))}")
        current = dict(_ATTRIBUTION.get())
        tags = {**current.get("tags", {}), **dimensions.pop("tags", {})}
        current.update(dimensions)
        if tags:
            current["tags"] = tags
        token = _ATTRIBUTION.set(current)
        try:
            yield
        finally:
            _ATTRIBUTION.reset(token)

    def record(self, *, source: str | None = "sdk", **fields: Any) -> PricedEvent:
        """Validate, price and record one event; returns it priced. Raises InvalidEvent."""
        defaults = _ATTRIBUTION.get()
        if defaults:
            merged = {k: v for k, v in defaults.items() if k != "tags"}
            merged.update(fields)
            if "tags" in defaults:
                merged["tags"] = {**defaults["tags"], **(fields.get("tags") or {})}
            fields = merged
        if fields.get("timestamp") is None:
            fields["timestamp"] = self.clock()
        event = parse_event(fields)
        return self.record_event(event, source=source)

    def record_event(self, event: UsageEvent, *, source: str | None = "sdk") -> PricedEvent:
        priced = self._price(event, event.event_id or f"ev-{uuid.uuid4().hex}")
        if self._writer is not None:
            journal_record = {"source": source, "event": {**event.canonical_dict(), "event_id": priced.event_id}}
            self._writer.submit((priced, source), journal_record)
        else:
            self._write_priced([priced], source=source)
        return priced

    def record_response(self, response: Any, *, provider: str | None = None, **dimensions: Any) -> PricedEvent:
        """Record the usage reported in a provider SDK response object or its raw JSON."""
        from .providers import extract_usage

        extracted = extract_usage(response, provider=provider)
        return self.record(**{**extracted.as_event_fields(), **dimensions})

    def _price(self, event: UsageEvent, event_id: str) -> PricedEvent:
        try:
            cost = self.pricer.price(event)
        except TokenLedgerError as exc:
            raise InvalidEvent(str(exc)) from None
        return PricedEvent(event=event, cost=cost, event_id=event_id)

    def _write_priced(self, batch: Sequence[Any], *, source: str | None = None) -> list[dict[str, Any]]:
        now = self.clock()
        ingested = to_us(now)
        rows = []
        for item in batch:
            if isinstance(item, tuple):
                priced, item_source = item
            else:
                priced, item_source = item, source
            rows.append(event_row(priced, source=item_source, ingested_us=ingested))
        with self.store.write() as conn:
            return list(self.store.insert_events(conn, rows))

    # -- bulk ingest ---------------------------------------------------------------------------

    def ingest(
        self,
        items: Iterable[tuple[str, Any]],
        *,
        source: str | None = None,
        batch_size: int = 5_000,
        on_progress: Callable[[int], None] | None = None,
    ) -> IngestResult:
        """Ingest ``(location, event mapping | UsageEvent | InvalidEvent)`` pairs.

        Bad items are rejected with their location and reason; every valid item around them is
        stored. Items without ``event_id`` get one derived from their content, so ingesting the
        same data twice changes nothing.
        """
        result = IngestResult()
        batch: list[PricedEvent] = []

        def write() -> None:
            stored = self._write_priced(batch, source=source)
            result.accepted += len(stored)
            result.duplicates += len(batch) - len(stored)
            result.cost_nanos += sum(row["cost_nanos"] for row in stored)
            if on_progress is not None:
                on_progress(len(batch))
            batch.clear()

        for location, item in items:
            try:
                if isinstance(item, InvalidEvent):
                    raise item
                event = item if isinstance(item, UsageEvent) else parse_event(item, location=location)
                batch.append(self._price(event, event.event_id or event.content_id()))
            except InvalidEvent as exc:
                result.rejected += 1
                result.rejections.append(Rejection(location, exc.message))
                if on_progress is not None:
                    on_progress(1)
                continue
            if len(batch) >= batch_size:
                write()
        if batch:
            write()
        return result

    # -- reading -------------------------------------------------------------------------------

    def costs(
        self,
        by: Sequence[str] = (),
        since: Any = "30d",
        until: Any = None,
        where: Mapping[str, Sequence[str | None]] | None = None,
    ) -> Any:
        """Grouped spend (see :func:`tokenledger.analytics.cost_report`)."""
        from .analytics import cost_report

        self.flush()
        return cost_report(self, by=by, since=since, until=until, where=where)

    def event(self, event_id: str) -> dict[str, Any] | None:
        from .analytics import event_detail

        self.flush()
        return event_detail(self.store, event_id)


def _close_at_exit(ref: weakref.ref[Ledger]) -> None:
    ledger = ref()
    if ledger is not None:
        ledger.close()
