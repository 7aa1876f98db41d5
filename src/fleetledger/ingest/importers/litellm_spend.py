"""Import LiteLLM proxy spend logs (the ``LiteLLM_SpendLogs`` table) as usage events.

:func:`read_litellm_spend_logs` reads an export of the table (a JSON array, JSON lines, the
``/spend/logs`` API answer ``{"data": [...]}``, or a CSV dump) or rows already in memory, and
yields ``(location, event mapping | InvalidEvent)`` pairs for :meth:`fleetledger.Ledger.ingest`.
A bad row is rejected with its location (``spend.csv:14``, ``spend.json[3]``) and the reason; the
rows around it are kept.

Column by column
    * ``request_id`` -> ``request_id``, and ``event_id = "litellm-<request_id>"`` (the table's
      primary key), so importing overlapping exports never charges a request twice.
    * ``custom_llm_provider`` -> ``provider`` (normalised: ``vertex_ai`` -> google, ``bedrock`` ->
      aws...); ``model`` -> ``model`` with LiteLLM's ``provider/`` routing prefix removed
      (``anthropic/claude-sonnet-4-5`` -> ``claude-sonnet-4-5``). With no
      ``custom_llm_provider``, a well-known prefix names the provider.
    * ``prompt_tokens`` -> ``input_tokens``: LiteLLM reports OpenAI-style usage, where
      ``prompt_tokens`` already counts every input token, cached ones included (LiteLLM adds
      Anthropic's ``cache_read_input_tokens`` and ``cache_creation_input_tokens`` to it), which is
      our convention. ``completion_tokens`` -> ``output_tokens`` (reasoning included).
    * The cache and reasoning parts come from ``metadata.additional_usage_values`` (then
      ``metadata.usage_object``): ``cache_read_input_tokens`` or
      ``prompt_tokens_details.cached_tokens`` -> ``cache_read_tokens``;
      ``cache_creation_input_tokens`` or ``prompt_tokens_details.cache_creation_tokens`` ->
      ``cache_write_tokens``; ``completion_tokens_details.reasoning_tokens`` ->
      ``reasoning_tokens``; audio parts and ``server_tool_use.web_search_requests`` likewise.
      Some LiteLLM releases added only the cache *reads* to ``prompt_tokens`` for Anthropic; when
      reads plus writes exceed ``prompt_tokens`` that must have happened, so the writes are added
      and the event is tagged ``input_tokens_adjusted=added_cache_writes``.
    * ``startTime`` -> ``timestamp``. LiteLLM stores UTC; exports often drop the offset
      (``2025-11-14 09:15:02.5``), so a naive time is read as UTC. ``request_duration_ms`` (or
      ``endTime - startTime``) -> ``latency_ms``.
    * ``status`` (``success``/``failure``, else ``metadata.status``) -> ``status``.
    * Attribution: ``metadata.user_api_key_team_alias`` (else ``team_id``) -> ``team``;
      ``end_user`` (the customer named in the request), else ``user`` (the key's owner), else
      ``metadata.user_api_key_user_id`` -> ``user``; ``session_id`` -> ``session_id``;
      ``agent_id`` -> ``agent``; ``call_type`` containing ``embedding`` -> category ``embedding``.
    * Tags: ``litellm_spend`` (LiteLLM's own cost, verbatim, for reconciliation: fleetledger
      prices usage itself and never uses it as the cost), ``litellm_call_type``,
      ``litellm_model_group``, ``litellm_api_key`` (the hashed key), ``litellm_key_alias``,
      ``litellm_key_user`` (the key owner when ``user`` holds the end user), and
      ``litellm_tags``: the ``request_tags`` list joined with commas in request order, one tag
      rather than one per request tag, so spend can be grouped by the combination
      (``--by tag.litellm_tags``) without colliding with other tag names. Scalar values of
      ``metadata.spend_logs_metadata`` (set per request by the caller) become tags too.

LiteLLM cache hits
    ``cache_hit`` true means LiteLLM answered from its *own* response cache: no provider was
    called and nothing was billed (LiteLLM logs ``spend`` 0). The event is kept, so request counts
    stay right, with zero token counts; the cached response's counts are kept as tags
    (``litellm_cached_prompt_tokens``, ``litellm_cached_completion_tokens``) with
    ``cache_hit=true``. Charging the tokens again would bill a call that never happened.

Skipped rows
    MCP tool calls (``call_type`` ``call_mcp_tool`` or a ``mcp_namespaced_tool_name``) carry no
    model usage and are skipped, not rejected.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetledger.core.errors import InvalidEvent, InvalidInput
from fleetledger.core.usage import normalize_provider
from fleetledger.ingest.importers.fields import BadField, blank, cell_count, cell_text, cell_time

__all__ = ["read_litellm_spend_logs"]

#: LiteLLM routing prefixes that name a provider when ``custom_llm_provider`` is empty.
_KNOWN_PREFIXES = frozenset(
    {
        "openai",
        "azure",
        "azure_ai",
        "anthropic",
        "bedrock",
        "vertex_ai",
        "gemini",
        "mistral",
        "groq",
        "deepseek",
        "xai",
        "cohere",
        "together_ai",
        "fireworks_ai",
        "openrouter",
        "ollama",
        "hosted_vllm",
        "perplexity",
    }
)
_MCP_CALL_TYPES = frozenset({"call_mcp_tool", "acall_mcp_tool"})
_TRUE = frozenset({"true", "1", "yes", "hit"})
_MAX_LATENCY_MS = 86_400_000  # UsageEvent's bound


# -- reading values ---------------------------------------------------------------------------------


def _json_cell(value: Any, name: str, kind: type) -> Any:
    """A JSON column: already decoded (JSON export) or a JSON string (CSV export)."""
    if blank(value):
        return kind()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise BadField(f"{name}: not valid JSON") from None
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise BadField(f"{name}: expected a JSON {'object' if kind is dict else 'list'}, got {type(value).__name__}")
    return value


def _path(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _usage_count(sources: list[dict[str, Any]], *paths: str) -> int:
    """The first reported value of ``paths`` across the usage blocks (nulls are not reports)."""
    for source in sources:
        for dotted in paths:
            value = _path(source, dotted)
            if not blank(value):
                return cell_count(value, f"metadata.{dotted}")
    return 0


# -- one row ----------------------------------------------------------------------------------------


def _provider_and_model(row: Mapping[str, Any]) -> tuple[str | None, str | None]:
    raw_provider = cell_text(row.get("custom_llm_provider"))
    model = cell_text(row.get("model"))
    if model and "/" in model:
        prefix, rest = model.split("/", 1)
        if raw_provider and prefix.lower() == raw_provider.lower():
            model = rest
        elif not raw_provider and prefix.lower() in _KNOWN_PREFIXES:
            raw_provider, model = prefix, rest
    return (normalize_provider(raw_provider) if raw_provider else None), (model or None)


def _latency_ms(duration: Any, start: datetime, end: datetime | None) -> float | None:
    """``request_duration_ms``, else end - start; None when implausible (the cost still counts)."""
    latency: float | None = None
    if not blank(duration):
        try:
            latency = float(duration)
        except (TypeError, ValueError):
            latency = None
    if latency is None and end is not None:
        latency = (end - start).total_seconds() * 1000
    if latency is None or not 0 <= latency <= _MAX_LATENCY_MS:
        return None
    return latency


def _event_id(request_id: str) -> str:
    event_id = f"litellm-{request_id}"
    if len(event_id) <= 128:
        return event_id
    return "litellm-h-" + hashlib.sha256(request_id.encode()).hexdigest()[:40]


def _spend_log_event(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """One spend-log row as an event mapping; None for rows that carry no model usage."""
    if not isinstance(row, Mapping):
        raise BadField(f"expected a spend-log row (JSON object), got {type(row).__name__}")
    call_type = cell_text(row.get("call_type")) or ""
    if call_type in _MCP_CALL_TYPES or cell_text(row.get("mcp_namespaced_tool_name")):
        return None
    request_id = cell_text(row.get("request_id"))
    if request_id is None:
        raise BadField("request_id: missing (it is the spend log's primary key)")
    metadata = _json_cell(row.get("metadata"), "metadata", dict)
    request_tags = _json_cell(row.get("request_tags"), "request_tags", list)
    start = cell_time(row.get("startTime", row.get("start_time")), "startTime")
    if start is None:
        raise BadField("startTime: missing")
    end = cell_time(row.get("endTime", row.get("end_time")), "endTime")
    provider, model = _provider_and_model(row)

    usage_blocks = [
        block for key in ("additional_usage_values", "usage_object") if isinstance(block := metadata.get(key), dict)
    ]
    prompt = cell_count(row.get("prompt_tokens"), "prompt_tokens")
    completion = cell_count(row.get("completion_tokens"), "completion_tokens")
    cache_read = _usage_count(usage_blocks, "cache_read_input_tokens", "prompt_tokens_details.cached_tokens")
    cache_write = _usage_count(
        usage_blocks, "cache_creation_input_tokens", "prompt_tokens_details.cache_creation_tokens"
    )
    units = {
        "reasoning_tokens": _usage_count(usage_blocks, "completion_tokens_details.reasoning_tokens"),
        "input_audio_tokens": _usage_count(usage_blocks, "prompt_tokens_details.audio_tokens"),
        "output_audio_tokens": _usage_count(usage_blocks, "completion_tokens_details.audio_tokens"),
        "web_searches": _usage_count(usage_blocks, "server_tool_use.web_search_requests"),
    }

    tags: dict[str, str] = {}
    spend_metadata = metadata.get("spend_logs_metadata")
    if isinstance(spend_metadata, dict):
        tags.update({str(k): str(v) for k, v in spend_metadata.items() if isinstance(v, str | int | float | bool)})
    for tag, value in (
        ("litellm_spend", cell_text(row.get("spend"))),
        ("litellm_call_type", call_type or None),
        ("litellm_model_group", cell_text(row.get("model_group"))),
        ("litellm_api_key", cell_text(row.get("api_key"))),
        ("litellm_key_alias", cell_text(metadata.get("user_api_key_alias"))),
        ("litellm_tags", ",".join(str(t) for t in request_tags if not blank(t)) or None),
    ):
        if value is not None:
            tags[tag] = value

    cache_hit = str(row.get("cache_hit", "")).strip().lower() in _TRUE
    if cache_hit:
        # Served from LiteLLM's own cache: no provider call, nothing billed.
        tags.update(
            cache_hit="true",
            litellm_cached_prompt_tokens=str(prompt),
            litellm_cached_completion_tokens=str(completion),
        )
        prompt = completion = cache_read = cache_write = 0
        units = {}
    elif cache_read + cache_write > prompt:
        prompt += cache_write  # a LiteLLM release that added only the cache reads to prompt_tokens
        tags["input_tokens_adjusted"] = "added_cache_writes"

    key_user = cell_text(row.get("user"))
    user = cell_text(row.get("end_user")) or key_user or cell_text(metadata.get("user_api_key_user_id"))
    if key_user and key_user != user:
        tags["litellm_key_user"] = key_user
    status = (cell_text(row.get("status")) or cell_text(metadata.get("status")) or "success").lower()

    event: dict[str, Any] = {
        "event_id": _event_id(request_id),
        "request_id": request_id,
        "timestamp": start,
        "provider": provider,
        "model": model,
        "input_tokens": prompt,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "output_tokens": completion,
        **{unit: value for unit, value in units.items() if value},
        "team": cell_text(metadata.get("user_api_key_team_alias"))
        or cell_text(row.get("team_id"))
        or cell_text(metadata.get("user_api_key_team_id")),
        "user": user,
        "session_id": cell_text(row.get("session_id")),
        "agent": cell_text(row.get("agent_id")),
        "status": "success" if status == "success" else "error",
        "category": "embedding" if "embedding" in call_type else "llm_inference",
    }
    latency_ms = _latency_ms(row.get("request_duration_ms"), start, end)
    if latency_ms is not None:
        event["latency_ms"] = latency_ms
    if tags:
        event["tags"] = tags
    return {key: value for key, value in event.items() if value is not None}


# -- sources ----------------------------------------------------------------------------------------


def _rows_from_json(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        document = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: not a JSON export of LiteLLM spend logs ({exc})") from None
    if isinstance(document, dict) and isinstance(document.get("data"), list):
        document = document["data"]  # the /spend/logs API answer
    if not isinstance(document, list):
        raise InvalidInput(f'{path}: expected a JSON array of spend-log rows (or {{"data": [...]}})')
    for index, row in enumerate(document):
        yield f"{path.name}[{index}]", row


def _rows_from_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                yield f"{path.name}:{number}", json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                yield f"{path.name}:{number}", BadField(f"broken JSON: {exc}")


def _rows_from_csv(path: Path) -> Iterator[tuple[str, Any]]:
    # JSON cells (metadata, request_tags) may hold quoted newlines: a row can span several lines,
    # so the location is the line the row starts on.
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = [cell.strip() for cell in next(reader)]
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{path.name}:1: unreadable CSV header ({exc})") from None
        if "request_id" not in header:
            raise InvalidInput(f"{path.name}:1: not a LiteLLM_SpendLogs export (no request_id column)")
        line = reader.line_num + 1
        while True:
            location = f"{path.name}:{line}"
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                yield location, BadField(f"broken CSV: {exc}")
                return  # the reader cannot resynchronise after a decoding error
            line = reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                yield location, BadField(f"{len(cells)} cells but the header has {len(header)}")
                continue
            yield location, dict(zip(header, cells, strict=True))


def _rows(source: str | Path | Iterable[Mapping[str, Any]] | Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file")
        suffixes = [s.lower() for s in path.suffixes]
        if ".csv" in suffixes:
            yield from _rows_from_csv(path)
        elif ".jsonl" in suffixes or ".ndjson" in suffixes:
            yield from _rows_from_jsonl(path)
        elif ".json" in suffixes:
            yield from _rows_from_json(path)
        else:
            raise InvalidInput(f"{path}: cannot tell the format from the name; use .json, .jsonl or .csv")
        return
    if isinstance(source, Mapping):
        data = source.get("data")
        if not isinstance(data, list):
            raise InvalidInput('expected spend-log rows, a file path, or the API answer {"data": [...]}')
        source = data
    for index, row in enumerate(source):
        yield f"rows[{index}]", row


def read_litellm_spend_logs(
    path_or_rows: str | Path | Iterable[Mapping[str, Any]] | Mapping[str, Any],
) -> Iterator[tuple[str, dict[str, Any] | InvalidEvent]]:
    """Usage events from a LiteLLM ``LiteLLM_SpendLogs`` export, as ``(location, item)`` pairs.

    ``path_or_rows`` is a ``.json`` / ``.jsonl`` / ``.csv`` file, the ``/spend/logs`` API answer,
    or an iterable of row mappings. See the module docstring for how each column maps.
    Raises :class:`~fleetledger.core.errors.InvalidInput` when the source as a whole is unreadable.
    """
    for location, row in _rows(path_or_rows):
        try:
            if isinstance(row, BadField):
                raise row
            event = _spend_log_event(row)
        except BadField as exc:
            yield location, InvalidEvent(str(exc), location=location)
            continue
        if event is not None:
            yield location, event
