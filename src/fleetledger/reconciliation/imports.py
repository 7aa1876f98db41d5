"""Reconciliation, step 1: store provider usage and cost lines from their exports, apart from metered events.

Split from :mod:`.reconciliation` (which re-exports these names) along the import/report seam.
Readers live in :mod:`fleetledger.ingest.importers` (see :mod:`fleetledger.reconciliation.importers.provider_lines`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from fleetledger.core.errors import InvalidEvent, InvalidInput
from fleetledger.core.money import format_usd, usd_to_nanos
from fleetledger.core.time import to_us
from fleetledger.reconciliation.importers.anthropic_reports import read_anthropic_costs, read_anthropic_usage
from fleetledger.reconciliation.importers.invoice_csv import read_invoice_csv
from fleetledger.reconciliation.importers.openai_costs import read_openai_costs
from fleetledger.reconciliation.importers.provider_lines import KINDS, line_key, read_openai_usage_lines
from fleetledger.reconciliation.tables import provider_lines
from fleetledger.storage.store import DAY_US, Store

__all__ = ["ImportResult", "import_lines", "import_for_ledger", "read_lines"]

Reader = Callable[..., Iterable[tuple[str, Any]]]
_READERS: dict[str, Reader] = {
    "openai-costs": read_openai_costs,
    "openai-usage": read_openai_usage_lines,
    "anthropic-usage": read_anthropic_usage,
    "anthropic-costs": read_anthropic_costs,
    "invoice-csv": lambda source, now=None: read_invoice_csv(source),
}


# -- import ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class ImportResult:
    kind: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    cost_nanos: int = 0  # billed amount on the accepted lines
    rejections: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "cost_usd": format_usd(self.cost_nanos),
            "rejections": self.rejections,
        }


_STORED = (
    "kind",
    "provider",
    "start_us",
    "end_us",
    "day_us",
    "model",
    "project_id",
    "api_key_id",
    "workspace_id",
    "service_tier",
    "token_type",
    "description",
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "web_search_requests",
    "requests",
    "has_usage",
    "cost_nanos",
    "amount_text",
)


def _row(line: Mapping[str, Any], source: str | None, location: str, now_us: int) -> dict[str, Any]:
    start_us = to_us(line["start"])
    row = {name: line.get(name) for name in _STORED if name in line}
    row.update(
        line_key=line_key(line["identity"]),
        start_us=start_us,
        end_us=to_us(line["end"]),
        day_us=start_us - start_us % DAY_US,
        has_usage=1 if line["has_usage"] else 0,
        cost_nanos=None if line["cost_usd"] is None else usd_to_nanos(line["cost_usd"]),
        source=(source or "")[:256] or None,
        location=location[:512],
        imported_us=now_us,
    )
    return row


def read_lines(kind: str, source: Any, *, now: datetime | None = None) -> list[tuple[str, Any]]:
    """``(location, line | InvalidEvent)`` pairs from an export of ``kind`` (see :data:`KINDS`)."""
    if kind not in _READERS:
        raise InvalidInput(f"kind: {kind!r} is not an export kind; use one of {', '.join(KINDS)}")
    return list(_READERS[kind](source, now=now))


def import_lines(
    store: Store,
    kind: str,
    source: Any,
    *,
    now: datetime,
    source_name: str | None = None,
) -> ImportResult:
    """Read an export and store its lines in ``provider_lines``, in one transaction.

    ``source`` is a file path, the raw bytes, or (JSON kinds) the decoded payload. A line already
    stored with the same identity and values is ``unchanged``; with other values (a restated
    export) it is ``updated``. Rejected lines are listed with their location and reason.
    """
    items = read_lines(kind, source, now=now)
    result = ImportResult(kind)
    now_us = to_us(now)
    rows: dict[str, dict[str, Any]] = {}
    for location, item in items:
        if isinstance(item, InvalidEvent):
            result.rejected += 1
            result.rejections.append({"location": location, "reason": item.message})
            continue
        row = _row(item, source_name, location, now_us)
        if row["line_key"] in rows:  # the same line twice in one export: the later one stands
            result.unchanged += 1
        rows[row["line_key"]] = row
    keys = list(rows)
    with store.write() as conn:
        stored: dict[str, Any] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            for found in conn.execute(select(provider_lines).where(provider_lines.c.line_key.in_(chunk))):
                stored[found.line_key] = found
        fresh = []
        for key, row in rows.items():
            before = stored.get(key)
            result.cost_nanos += row["cost_nanos"] or 0
            if before is None:
                fresh.append(row)
                result.inserted += 1
            elif any(getattr(before, name) != row[name] for name in _STORED):
                conn.execute(provider_lines.update().where(provider_lines.c.line_key == key).values(**row))
                result.updated += 1
            else:
                result.unchanged += 1
        if fresh:
            conn.execute(provider_lines.insert(), fresh)
    return result


def import_for_ledger(ledger: Any, kind: str, source: Any, *, source_name: str | None = None) -> ImportResult:
    """:func:`import_lines` into the ledger's database, open buckets judged by the ledger's clock."""
    return import_lines(ledger.store, kind, source, now=ledger.clock(), source_name=source_name)
