"""Import OpenAI organization Costs API pages as provider cost lines (for reconciliation).

:func:`read_openai_costs` reads pages of ``GET /v1/organization/costs`` (``{"object": "page",
"data": [buckets], "has_more", "next_page"}``; each bucket ``{"object": "bucket", "start_time",
"end_time", "results": [...]}``; each result ``{"object": "organization.costs.result", "amount":
{"value", "currency"}, "line_item", "project_id"}``) and yields one provider line per result.

How a result maps
    * ``amount.value`` is read exactly: files are decoded with ``parse_float=Decimal``, so the
      digits in the export are the digits stored (to the nano-dollar). ``amount.currency`` must be
      ``usd``.
    * ``line_item`` is required: export with ``group_by=line_item`` (and ``project_id``). A line item
      reads ``"<model>, <token type>"`` (``gpt-4o-2024-08-06, input``, ``..., cached input``,
      ``..., output``, ``..., batch input``): the model and the token type (``input``,
      ``cache_read``, ``cache_write``, ``output``; ``batch``/``flex``/``priority`` in it set the
      service tier). A line item that is one word (``gpt-4o``) names a model, token type unknown.
      Anything else (``web search tool calls``, ``Image models``) is a charge not for a model's
      tokens: no model, the line item kept as the description.
    * ``project_id`` -> ``project_id`` (null: the default project).

Idempotency: a line's identity is (bucket start and end, project, line item), not its amount, so
re-importing an export changes nothing and a restated one replaces the amounts. With ``now``,
buckets that have not ended are rejected (their amount still grows).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetledger.core.errors import InvalidEvent
from fleetledger.ingest.importers.fields import BadField, json_text
from fleetledger.reconciliation.importers.provider_lines import make_line, read_results, to_unix, usd_amount

__all__ = ["read_openai_costs", "parse_line_item"]

_COSTS = "organization.costs.result"
_TIERS = ("batch", "flex", "priority")


def parse_line_item(line_item: str) -> tuple[str | None, str | None, str | None]:
    """(model, token type, service tier) named by a Costs API line item."""
    model, sep, suffix = line_item.rpartition(", ")
    if not sep:
        return (line_item, None, None) if not any(ch.isspace() for ch in line_item) else (None, None, None)
    words = suffix.lower()
    tier = next((t for t in _TIERS if t in words), None)
    if "cached" in words or "cache read" in words:
        token_type: str | None = "cache_read"
    elif "cache write" in words or "cache creation" in words:
        token_type = "cache_write"
    elif "input" in words:
        token_type = "input"
    elif "output" in words:
        token_type = "output"
    else:
        token_type = None
    return model.strip() or None, token_type, tier


def _cost_line(result: Any, start: datetime, end: datetime) -> dict[str, Any]:
    if not isinstance(result, Mapping):
        raise BadField(f"expected a costs result object, got {type(result).__name__}")
    kind = result.get("object")
    if kind is not None and kind != _COSTS:
        raise BadField(f"unsupported result {kind!r}: expected {_COSTS}")
    amount = result.get("amount")
    if not isinstance(amount, Mapping):
        raise BadField("amount: missing; expected {'value': ..., 'currency': 'usd'}")
    value = usd_amount(amount.get("value"), "amount.value", currency=amount.get("currency"))
    line_item = json_text(result.get("line_item"))
    if line_item is None:
        raise BadField("line_item: null; export with group_by=line_item so each amount names its model and token type")
    project = json_text(result.get("project_id"))
    model, token_type, tier = parse_line_item(line_item)
    return make_line(
        kind="openai-costs",
        provider="openai",
        start=start,
        end=end,
        identity=[to_unix(start), to_unix(end), project, line_item],
        cost_usd=value,
        amount_text=f"{amount.get('value')} {str(amount.get('currency')).lower()}",
        model=model,
        token_type=token_type,
        service_tier=tier,
        description=line_item,
        project_id=project,
    )


def read_openai_costs(
    payload: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | Path | bytes,
    *,
    now: datetime | None = None,
) -> Iterator[tuple[str, dict[str, Any] | InvalidEvent]]:
    """Provider cost lines from OpenAI Costs API pages, as ``(location, item)`` pairs.

    ``payload`` is one page, a list of pages, a JSON file path, or the raw JSON bytes. Locations
    read like ``costs.json:data[0].results[2]``. Raises :class:`~fleetledger.core.errors.InvalidInput`
    when the payload is not a Costs API export.
    """
    return read_results(payload, "Costs API export", "Costs API", _cost_line, now=now)
