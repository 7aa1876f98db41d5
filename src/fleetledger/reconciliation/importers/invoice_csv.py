"""Import a generic CSV of invoice lines as provider lines (for reconciliation).

For providers without a usage or cost API, or for the invoice itself. One line per row; the
header names the columns (case and spaces do not matter):

| column | required | meaning |
| --- | --- | --- |
| ``date`` | yes | the day the line is for (``2026-10-14``, or an ISO date-time: its UTC day) |
| ``provider`` | yes | ``openai``, ``anthropic``, ``mistral``... (aliases normalised as for events) |
| ``amount`` | yes | the amount billed, a decimal string (negative for a credit) |
| ``currency`` | no | must be USD when given (blank: USD) |
| ``model`` | no | the model the line bills; blank for charges not for a model |
| ``project`` / ``api_key`` (or ``key``) / ``workspace`` | no | the attribution the provider bills by |
| ``token_type`` | no | ``input``, ``cached_input`` / ``cache_read``, ``cache_write`` (``cache_write_1h``), ``output`` |
| ``description`` | no | free text (kept; the token type is guessed from it when there is no token_type column) |
| ``quantity`` | no | tokens billed on the line; with a token type the line also reports usage |

A bad row (unreadable date, amount or quantity, a foreign currency, a wrong number of cells) is
rejected with its line number (``invoice.csv:7``) and the reason; the other rows are kept.

Idempotency: a row's identity is (date, provider, model, attribution, token type, description)
plus its rank among identical rows of the file, never its amount: re-importing the invoice changes
nothing, a corrected invoice replaces the amounts.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from fleetledger.core.errors import InvalidEvent, InvalidInput
from fleetledger.core.usage import normalize_provider
from fleetledger.ingest.importers.fields import BadField, blank, cell_count, cell_text, cell_time
from fleetledger.reconciliation.importers.provider_lines import make_line, usd_amount

__all__ = ["read_invoice_csv"]

_ALIASES = {
    "day": "date",
    "usage_date": "date",
    "vendor": "provider",
    "cost": "amount",
    "amount_usd": "amount",
    "key": "api_key",
    "api_key_id": "api_key",
    "project_id": "project",
    "workspace_id": "workspace",
    "tokens": "quantity",
    "units": "quantity",
    "type": "token_type",
    "line_item": "description",
}
_REQUIRED = ("date", "provider", "amount")
_TOKEN_TYPES = {
    "input": "input",
    "uncached_input": "input",
    "input_tokens": "input",
    "uncached_input_tokens": "input",
    "prompt": "input",
    "cached_input": "cache_read",
    "cache_read": "cache_read",
    "cache_read_input_tokens": "cache_read",
    "cache_write": "cache_write",
    "cache_write_5m": "cache_write",
    "cache_write_1h": "cache_write",
    "cache_creation": "cache_write",
    "output": "output",
    "output_tokens": "output",
    "completion": "output",
}


def _column(name: str) -> str:
    key = "_".join(name.strip().lower().replace("-", " ").split())
    return _ALIASES.get(key, key)


def _token_type(row: Mapping[str, str]) -> tuple[str | None, bool]:
    """(token type, one-hour cache write) from ``token_type``, else guessed from ``description``."""
    raw = cell_text(row.get("token_type"))
    if raw is not None:
        key = "_".join(raw.lower().replace("-", " ").split())
        if key not in _TOKEN_TYPES:
            raise BadField(
                f"token_type: {raw!r} is not one of input, cached_input, cache_write, cache_write_1h, output"
            )
        return _TOKEN_TYPES[key], key == "cache_write_1h"
    words = (cell_text(row.get("description")) or "").lower()
    if "cache" in words and ("read" in words or "cached input" in words or "hit" in words):
        return "cache_read", False
    if "cache" in words and ("write" in words or "creation" in words):
        return "cache_write", "1h" in words or "1 hour" in words
    if "output" in words or "completion" in words:
        return "output", False
    if "input" in words or "prompt" in words:
        return "input", False
    return None, False


def _row_line(row: Mapping[str, str], rank: Counter[tuple[Any, ...]]) -> dict[str, Any]:
    moment = cell_time(row.get("date"), "date")
    if moment is None:
        raise BadField("date: missing")
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    provider = cell_text(row.get("provider"))
    if provider is None:
        raise BadField("provider: missing")
    provider = normalize_provider(provider)
    amount = usd_amount(row.get("amount"), "amount", currency=cell_text(row.get("currency")) or "USD")
    model = cell_text(row.get("model"))
    token_type, one_hour = _token_type(row)
    quantity = cell_count(row.get("quantity"), "quantity")
    if token_type is not None and model is None:
        raise BadField(f"model: missing on a {token_type} token line")
    has_usage = token_type is not None and not blank(row.get("quantity"))
    counts: dict[str, int] = {}
    if has_usage:
        counts["input_tokens" if token_type != "output" else "output_tokens"] = quantity
        if token_type == "cache_read":
            counts["cache_read_tokens"] = quantity
        elif token_type == "cache_write":
            counts["cache_write_tokens"] = quantity
            counts["cache_write_1h_tokens"] = quantity if one_hour else 0
    project, api_key, workspace = (cell_text(row.get(name)) for name in ("project", "api_key", "workspace"))
    description = cell_text(row.get("description"))
    identity = (day.date().isoformat(), provider, model, project, api_key, workspace, token_type, one_hour, description)
    rank[identity] += 1
    return make_line(
        kind="invoice-csv",
        provider=provider,
        start=day,
        end=day + timedelta(days=1),
        identity=[*identity, rank[identity]],
        cost_usd=amount,
        amount_text=f"{cell_text(row.get('amount'))} {(cell_text(row.get('currency')) or 'USD').upper()}",
        has_usage=has_usage,
        model=model,
        project_id=project,
        api_key_id=api_key,
        workspace_id=workspace,
        token_type=token_type,
        description=description,
        **counts,
    )


def read_invoice_csv(source: str | Path | bytes) -> Iterator[tuple[str, dict[str, Any] | InvalidEvent]]:
    """Provider lines from an invoice-lines CSV file (or its bytes), as ``(location, item)`` pairs.

    Raises :class:`~fleetledger.core.errors.InvalidInput` when the file is missing, unreadable or lacks
    a required column.
    """
    if isinstance(source, bytes):
        name = "body"
        try:
            text = source.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"body: not UTF-8 text ({exc})") from None
    else:
        path = Path(source)
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file")
        name = path.name
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{path}: not UTF-8 text ({exc})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [_column(cell) for cell in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        raise InvalidInput(f"{name}:1: unreadable CSV header ({exc})") from None
    missing = [column for column in _REQUIRED if column not in header]
    if missing:
        raise InvalidInput(f"{name}:1: not an invoice-lines CSV: no {', '.join(missing)} column")
    rank: Counter[tuple[Any, ...]] = Counter()
    line = reader.line_num + 1
    while True:
        location = f"{name}:{line}"
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield location, InvalidEvent(f"broken CSV: {exc}", location=location)
            return
        line = reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            yield location, InvalidEvent(f"{len(cells)} cells but the header has {len(header)}", location=location)
            continue
        try:
            yield location, _row_line(dict(zip(header, cells, strict=True)), rank)
        except BadField as exc:
            yield location, InvalidEvent(str(exc), location=location)
