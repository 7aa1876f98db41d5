"""Provider lines: what a provider says it served or billed, read from its exports for reconciliation.

The readers of this family (:mod:`.openai_costs`, :mod:`.anthropic_reports`, :mod:`.invoice_csv`
and :func:`read_openai_usage_lines` here) yield ``(location, line mapping | InvalidEvent)`` pairs,
like the event importers, so a bad line is rejected with where it was and why while the lines
around it are kept. A line is *not* a usage event: it goes to the ``provider_lines`` table through
:func:`fleetledger.reconciliation.compare.import_lines`, never into the metered ledger.

A line mapping has:

* ``kind``, ``provider``, ``start`` and ``end`` (UTC datetimes of the provider's bucket);
* attribution as the provider reports it: ``model``, ``project_id``, ``api_key_id``,
  ``workspace_id``, ``service_tier``;
* usage (``has_usage`` true): ``input_tokens`` (every input token, cached ones included: the
  ledger's convention), ``cache_read_tokens``, ``cache_write_tokens`` (of which
  ``cache_write_1h_tokens``), ``output_tokens``, ``web_search_requests`` and ``requests`` (None when
  the export does not count requests);
* cost (``cost_usd`` not None): the exact Decimal amount in USD, ``amount_text`` (the amount as
  exported, with its unit), and ``token_type`` (``input``, ``cache_read``, ``cache_write``,
  ``output``, or None for a charge that is not for tokens) with ``description``;
* ``identity``: what names the line in its source (never its amounts), hashed into ``line_key``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from fleetledger.core.errors import InvalidEvent, InvalidInput
from fleetledger.core.usage import MAX_COST_USD
from fleetledger.ingest.importers.fields import BadField, json_count, unix_seconds
from fleetledger.ingest.importers.openai_usage import usage_result_event

__all__ = [
    "KINDS",
    "TOKEN_TYPES",
    "make_line",
    "line_key",
    "load_json",
    "usd_amount",
    "read_openai_usage_lines",
    "read_results",
]

#: The export kinds ``fleetledger reconcile import --kind`` takes.
KINDS = ("openai-costs", "openai-usage", "anthropic-usage", "anthropic-costs", "invoice-csv")
TOKEN_TYPES = ("input", "cache_read", "cache_write", "output")
_COUNTS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "web_search_requests",
)


def line_key(identity: Sequence[Any]) -> str:
    return hashlib.sha256(json.dumps(list(identity), separators=(",", ":"), default=str).encode()).hexdigest()


def make_line(
    *,
    kind: str,
    provider: str,
    start: datetime,
    end: datetime,
    identity: Sequence[Any],
    cost_usd: Decimal | None = None,
    has_usage: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """A complete line mapping: absent counts are 0, absent attribution None."""
    if end <= start:
        raise BadField(f"bucket ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    line: dict[str, Any] = {
        "kind": kind,
        "provider": provider,
        "start": start,
        "end": end,
        "model": None,
        "project_id": None,
        "api_key_id": None,
        "workspace_id": None,
        "service_tier": None,
        "token_type": None,
        "description": None,
        "requests": None,
        "amount_text": None,
        **{name: 0 for name in _COUNTS},
        "has_usage": has_usage,
        "cost_usd": cost_usd,
    }
    for name, value in fields.items():
        if name not in line:
            raise TypeError(f"unknown provider line field {name}")
        line[name] = value
    if line["cache_read_tokens"] + line["cache_write_tokens"] > line["input_tokens"]:
        raise BadField(
            f"cache reads + writes ({line['cache_read_tokens']} + {line['cache_write_tokens']}) exceed the input "
            f"tokens ({line['input_tokens']})"
        )
    line["identity"] = [kind, *identity]
    return line


def usd_amount(value: Any, name: str, *, currency: Any = "usd", scale: int = 0) -> Decimal:
    """An exact amount: a decimal string, an int, or a Decimal (JSON read with ``parse_float=Decimal``).

    A float (a payload someone decoded before us) is read by its shortest repr, the digits of the
    JSON text. ``scale`` divides by 10**scale (Anthropic reports cents: scale 2).
    """
    unit = str(currency or "").strip().upper()
    if unit != "USD":
        raise BadField(f"{name}: currency {currency!r} is not USD; the ledger is kept in USD, convert the line first")
    if isinstance(value, bool) or value is None:
        raise BadField(f"{name}: expected an amount, got {value!r}")
    if isinstance(value, float):
        value = repr(value)
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, TypeError, ValueError):
        raise BadField(f"{name}: {value!r} is not a decimal amount") from None
    if not amount.is_finite():
        raise BadField(f"{name}: {value!r} is not a finite amount")
    amount = amount.scaleb(-scale) if scale else amount
    if abs(amount) > MAX_COST_USD:
        # beyond it the nanos overflow the 64-bit column (and Decimal's 28 digits): reject the line
        raise BadField(f"{name}: {value!r} is out of range (at most {MAX_COST_USD} USD either way on one line)")
    return amount


def load_json(payload: Any, what: str) -> tuple[str, Any]:
    """(location prefix, decoded payload): a path is read with exact decimals (``parse_float=Decimal``)."""
    if isinstance(payload, bytes):
        try:
            return "", json.loads(payload, parse_float=Decimal)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"body: not a JSON {what} ({exc})") from None
    if isinstance(payload, str | Path):
        path = Path(payload)
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file")
        try:
            return f"{path.name}:", json.loads(path.read_bytes(), parse_float=Decimal)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{path}: not a JSON {what} ({exc})") from None
    return "", payload


def pages(decoded: Any, what: str) -> list[tuple[str, Mapping[str, Any]]]:
    """[(page prefix, page)] for one page or a list of pages, each ``{"data": [buckets]}``."""
    if isinstance(decoded, Mapping):
        listed: list[tuple[str, Any]] = [("", decoded)]
    elif isinstance(decoded, Sequence) and not isinstance(decoded, str | bytes):
        listed = [(f"[{index}].", page) for index, page in enumerate(decoded)]
    else:
        raise InvalidInput(f"expected a {what} page, a list of pages or a JSON file path, got {type(decoded).__name__}")
    for prefix, page in listed:
        if not isinstance(page, Mapping) or not isinstance(page.get("data"), list):
            raise InvalidInput(f'{prefix.rstrip(".") or "payload"}: not a {what} page (expected {{"data": [...]}})')
    return listed


def unix_times(bucket: Mapping[str, Any]) -> tuple[datetime, datetime]:
    """An OpenAI bucket's ``start_time`` and ``end_time`` (Unix seconds)."""
    start, end = unix_seconds(bucket, "start_time"), unix_seconds(bucket, "end_time")
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)


def to_unix(moment: datetime) -> int:
    return int(moment.timestamp())


def buckets(
    decoded: Any,
    name: str,
    what: str,
    *,
    now: datetime | None,
    times: Callable[[Mapping[str, Any]], tuple[datetime, datetime]] = unix_times,
) -> Iterator[tuple[str, tuple[datetime, datetime, list[Any]] | InvalidEvent]]:
    """Every bucket of every page: ``(location, (start, end, results))``, or the bucket's rejection.

    With ``now``, a bucket that has not ended is rejected: its counts still grow.
    """
    if now is not None and now.utcoffset() is None:
        raise InvalidInput("now: needs a time zone, e.g. datetime.now(UTC)")
    for prefix, page in pages(decoded, what):
        for b, bucket in enumerate(page["data"]):
            where = f"{name}{prefix}data[{b}]"
            try:
                if not isinstance(bucket, Mapping):
                    raise BadField(f"expected a bucket object, got {type(bucket).__name__}")
                start, end = times(bucket)
                results = bucket.get("results", bucket.get("result"))
                if not isinstance(results, list):
                    raise BadField("bucket has no results list")
                if now is not None and end > now:
                    raise BadField(f"bucket ending {end.isoformat()} is still open; import it after it closes")
            except BadField as exc:
                yield where, InvalidEvent(str(exc), location=where)
                continue
            yield where, (start, end, results)


def read_results(
    payload: Any,
    export: str,
    page: str,
    parse: Callable[[Any, datetime, datetime], dict[str, Any]],
    *,
    now: datetime | None,
    times: Callable[[Mapping[str, Any]], tuple[datetime, datetime]] = unix_times,
) -> Iterator[tuple[str, dict[str, Any] | InvalidEvent]]:
    """``(location, line | InvalidEvent)`` for every result of every bucket: ``parse(result, start, end)``
    makes the line, a :class:`BadField` it raises rejects that result alone. ``export`` and ``page`` name
    the format in errors ("not a JSON {export}", "not a {page} page")."""
    name, decoded = load_json(payload, export)
    for where, bucket in buckets(decoded, name, page, now=now, times=times):
        if isinstance(bucket, InvalidEvent):
            yield where, bucket
            continue
        start, end, results = bucket
        for r, result in enumerate(results):
            location = f"{where}.results[{r}]"
            try:
                yield location, parse(result, start, end)
            except BadField as exc:
                yield location, InvalidEvent(str(exc), location=location)


def _usage_line(result: Any, start: datetime, end: datetime) -> dict[str, Any]:
    """An OpenAI Usage API result read by the usage importer, kept as a provider line."""
    event = usage_result_event(result, to_unix(start), to_unix(end))
    tags = event["tags"]
    return make_line(
        kind="openai-usage",
        provider="openai",
        start=start,
        end=end,
        identity=[event["event_id"]],
        has_usage=True,
        model=event["model"],
        project_id=event.get("project"),
        api_key_id=tags.get("api_key_id"),
        service_tier=event["service_tier"],
        input_tokens=event["input_tokens"],
        cache_read_tokens=event.get("cache_read_tokens", 0),
        cache_write_tokens=event.get("cache_write_tokens", 0),
        output_tokens=event["output_tokens"],
        requests=json_count(result, "num_model_requests"),
    )


def read_openai_usage_lines(
    payload: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | Path | bytes,
    *,
    now: datetime | None = None,
) -> Iterator[tuple[str, dict[str, Any] | InvalidEvent]]:
    """Provider usage lines from OpenAI organization Usage API pages (completions, embeddings).

    Each result is read by the usage importer (:mod:`.openai_usage`, the same mapping and the same
    rejections: a result without a model, an unsupported endpoint, a bad count), then kept as a
    provider line with its bucket, project, API key and request count instead of a metered event.
    """
    return read_results(payload, "Usage API export", "Usage API", _usage_line, now=now)
