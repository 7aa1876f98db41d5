"""Import Anthropic Admin API usage and cost reports as provider lines (for reconciliation).

Both reports are pages ``{"data": [buckets], "has_more", "next_page"}``, each bucket
``{"starting_at", "ending_at", "results": [...]}`` with RFC 3339 times.

Usage report (``GET /v1/organizations/usage_report/messages``), :func:`read_anthropic_usage`
    * ``model`` is required: export with ``group_by[]=model`` (plus ``api_key_id``,
      ``workspace_id``, ``service_tier`` as wanted); a result without a model is rejected.
    * ``input_tokens`` = ``uncached_input_tokens`` + ``cache_read_input_tokens`` + both cache
      writes: Anthropic reports the parts, the ledger counts every input token in
      ``input_tokens``. ``cache_creation.ephemeral_5m_input_tokens`` +
      ``cache_creation.ephemeral_1h_input_tokens`` -> ``cache_write_tokens`` (the 1-hour part also
      in ``cache_write_1h_tokens``); ``cache_read_input_tokens`` -> ``cache_read_tokens``;
      ``output_tokens``; ``server_tool_use.web_search_requests``.
    * ``api_key_id``, ``workspace_id`` (null: the default workspace) and ``service_tier`` are kept.
      The report does not count requests (``requests`` is None).

Cost report (``GET /v1/organizations/cost_report``), :func:`read_anthropic_costs`
    * ``amount`` is a decimal string in the *lowest currency unit*: ``"123.45"`` USD is $1.2345.
      It is read as a Decimal and divided by 100, exactly; ``currency`` must be USD.
    * Export with ``group_by[]=description`` (and ``workspace_id``): a token cost then names its
      ``model``, ``token_type`` (``uncached_input_tokens`` -> input, ``cache_read_input_tokens``
      -> cache_read, ``cache_creation.ephemeral_5m_input_tokens`` / ``..._1h_...`` ->
      cache_write, ``output_tokens`` -> output) and ``service_tier``. A token cost without a
      model is rejected with that advice; other costs (``web_search``, ``code_execution``) have no
      model and are kept as such.

Idempotency: identity is (bucket, every grouping field), never the counts or the amount.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetledger.core.errors import InvalidEvent
from fleetledger.ingest.importers.fields import BadField, cell_time, json_count, json_text
from fleetledger.reconciliation.importers.provider_lines import make_line, read_results, usd_amount

__all__ = ["read_anthropic_usage", "read_anthropic_costs"]

_TOKEN_TYPES = {
    "uncached_input_tokens": "input",
    "input_tokens": "input",
    "cache_read_input_tokens": "cache_read",
    "cache_creation.ephemeral_5m_input_tokens": "cache_write",
    "cache_creation.ephemeral_1h_input_tokens": "cache_write",
    "cache_creation_input_tokens": "cache_write",
    "output_tokens": "output",
}
#: Grouping fields that distinguish results within a bucket (the identity of a line).
_USAGE_GROUPS = (
    "model",
    "api_key_id",
    "workspace_id",
    "service_tier",
    "context_window",
    "inference_geo",
    "speed",
    "account_id",
    "service_account_id",
)
_COST_GROUPS = (
    "workspace_id",
    "description",
    "cost_type",
    "model",
    "token_type",
    "service_tier",
    "context_window",
    "inference_geo",
    "speed",
)


def _rfc3339(bucket: Mapping[str, Any]) -> tuple[datetime, datetime]:
    start = cell_time(bucket.get("starting_at"), "bucket starting_at")
    end = cell_time(bucket.get("ending_at"), "bucket ending_at")
    if start is None or end is None:
        raise BadField("bucket needs starting_at and ending_at (RFC 3339)")
    return start, end


def _object(result: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = result.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadField(f"{name}: expected an object, got {type(value).__name__}")
    return value


def _usage_line(result: Any, start: datetime, end: datetime) -> dict[str, Any]:
    if not isinstance(result, Mapping):
        raise BadField(f"expected a usage result object, got {type(result).__name__}")
    model = json_text(result.get("model"))
    if model is None:
        raise BadField("model: null; export with group_by[]=model so each result names its model")
    uncached = json_count(result, "uncached_input_tokens")
    cache_read = json_count(result, "cache_read_input_tokens")
    creation = _object(result, "cache_creation")
    five_minutes = json_count(creation, "ephemeral_5m_input_tokens")
    one_hour = json_count(creation, "ephemeral_1h_input_tokens")
    if not creation:  # older reports had one flat count of cache writes (five-minute)
        five_minutes = json_count(result, "cache_creation_input_tokens")
    tools = _object(result, "server_tool_use")
    return make_line(
        kind="anthropic-usage",
        provider="anthropic",
        start=start,
        end=end,
        identity=[start.isoformat(), end.isoformat(), *(json_text(result.get(g)) for g in _USAGE_GROUPS)],
        has_usage=True,
        model=model,
        api_key_id=json_text(result.get("api_key_id")),
        workspace_id=json_text(result.get("workspace_id")),
        service_tier=json_text(result.get("service_tier")),
        input_tokens=uncached + cache_read + five_minutes + one_hour,
        cache_read_tokens=cache_read,
        cache_write_tokens=five_minutes + one_hour,
        cache_write_1h_tokens=one_hour,
        output_tokens=json_count(result, "output_tokens"),
        web_search_requests=json_count(tools, "web_search_requests"),
    )


def _cost_line(result: Any, start: datetime, end: datetime) -> dict[str, Any]:
    if not isinstance(result, Mapping):
        raise BadField(f"expected a cost result object, got {type(result).__name__}")
    raw_amount = result.get("amount")
    if not isinstance(raw_amount, str | int):
        raise BadField(f"amount: expected a decimal string in cents, got {raw_amount}")
    amount = usd_amount(raw_amount, "amount", currency=result.get("currency"), scale=2)
    description, cost_type = json_text(result.get("description")), json_text(result.get("cost_type"))
    model, raw_type = json_text(result.get("model")), json_text(result.get("token_type"))
    if description is None and cost_type is None:
        raise BadField(
            "description: null; export with group_by[]=description so each amount names its model and tokens"
        )
    if cost_type == "tokens" and model is None:
        raise BadField("model: null on a token cost; export with group_by[]=description")
    token_type = None
    if raw_type is not None:
        if raw_type not in _TOKEN_TYPES:
            raise BadField(f"token_type: {raw_type!r} is not a token type this importer knows")
        token_type = _TOKEN_TYPES[raw_type]
    return make_line(
        kind="anthropic-costs",
        provider="anthropic",
        start=start,
        end=end,
        identity=[start.isoformat(), end.isoformat(), *(json_text(result.get(g)) for g in _COST_GROUPS)],
        cost_usd=amount,
        amount_text=f"{raw_amount} {str(result.get('currency')).upper()} cents",
        model=model,
        workspace_id=json_text(result.get("workspace_id")),
        service_tier=json_text(result.get("service_tier")),
        token_type=token_type,
        description=description or cost_type,
    )


def read_anthropic_usage(
    payload: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | Path | bytes,
    *,
    now: datetime | None = None,
) -> Iterator[tuple[str, dict[str, Any] | InvalidEvent]]:
    """Provider usage lines from Anthropic messages usage report pages, as ``(location, item)``."""
    return read_results(payload, "usage report", "usage report", _usage_line, now=now, times=_rfc3339)


def read_anthropic_costs(
    payload: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | Path | bytes,
    *,
    now: datetime | None = None,
) -> Iterator[tuple[str, dict[str, Any] | InvalidEvent]]:
    """Provider cost lines from Anthropic cost report pages, as ``(location, item)``."""
    return read_results(payload, "cost report", "cost report", _cost_line, now=now, times=_rfc3339)
