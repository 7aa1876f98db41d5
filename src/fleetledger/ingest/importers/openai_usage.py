"""Import OpenAI organization Usage API exports as aggregated usage events.

:func:`read_openai_usage` reads pages of ``GET /v1/organization/usage/completions`` and
``GET /v1/organization/usage/embeddings`` (``{"object": "page", "data": [buckets], "has_more",
"next_page"}``; each bucket ``{"object": "bucket", "start_time", "end_time", "results": [...]}``)
and yields one event per result: the usage of one model (project, user, key...) in one time
bucket, priced like any other event.

How a result maps
    * ``timestamp`` is the bucket's ``start_time`` (Unix seconds, UTC); provider is ``openai``.
    * ``model`` is required: export with ``group_by=model`` (plus ``project_id``, ``user_id``,
      ``api_key_id``, ``batch``, ``service_tier`` as wanted). A result without a model cannot be
      priced and is rejected with that advice.
    * ``input_tokens`` stays the input total: OpenAI counts cached tokens in it, as we do.
      ``input_cached_tokens`` -> ``cache_read_tokens``; ``input_cache_write_tokens``, when a newer
      export has it, -> ``cache_write_tokens``.
    * Audio and image parts. Newer exports (those with ``input_text_tokens``) count every modality
      in ``input_tokens``/``output_tokens`` and list the parts (``input_audio_tokens``,
      ``input_image_tokens``, ``input_cached_audio_tokens``...). Older exports documented
      ``input_tokens``/``output_tokens`` as *text* tokens with ``input_audio_tokens`` and
      ``output_audio_tokens`` beside them, so there the audio counts are added to the totals.
    * ``batch: true`` -> ``service_tier`` batch; otherwise ``service_tier`` ``flex`` / ``priority``
      is kept and anything else (``default``, ``scale``, absent) is standard.
    * ``project_id`` -> ``project``, ``user_id`` -> ``user``; tags ``api_key_id``,
      ``num_model_requests`` and ``source=openai_usage_export``.
    * Results of the embeddings endpoint (``organization.usage.embeddings.result``) get category
      ``embedding``. Other endpoints (images, audio, moderations, vector stores...) are not
      priced from tokens and are rejected, each with its location.

Idempotency and open buckets
    ``event_id`` is a hash of (bucket start and end, endpoint, model, project, user, API key,
    batch, service tier): re-importing the same export, or overlapping exports, adds nothing.
    Two consequences. Import one bucket width consistently (``1d`` and ``1h`` buckets of the
    same day are different events and would both be charged). And a bucket that has not ended
    yet keeps growing, but its id does not change, so importing it early freezes a partial
    count: pass ``now=`` and such buckets are rejected until they close.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleetledger.core.errors import InvalidEvent, InvalidInput
from fleetledger.ingest.importers.fields import BadField, json_count, json_text, unix_seconds

__all__ = ["read_openai_usage", "usage_result_event"]

_COMPLETIONS = "organization.usage.completions.result"
_EMBEDDINGS = "organization.usage.embeddings.result"
_ENDPOINTS = {_COMPLETIONS: "completions", _EMBEDDINGS: "embeddings"}
_TIERS = {"flex": "flex", "priority": "priority", "batch": "batch"}


def _endpoint(result: Mapping[str, Any]) -> str:
    kind = result.get("object")
    if kind is None:
        # Hand-trimmed exports drop "object"; completions results always have output_tokens.
        return "completions" if "output_tokens" in result else "embeddings"
    if kind not in _ENDPOINTS:
        raise BadField(
            f"unsupported usage result {kind!r}: only completions and embeddings usage is priced from tokens"
        )
    return _ENDPOINTS[kind]


def usage_result_event(result: Any, start: int, end: int) -> dict[str, Any]:
    if not isinstance(result, Mapping):
        raise BadField(f"expected a usage result object, got {type(result).__name__}")
    endpoint = _endpoint(result)
    model = json_text(result.get("model"))
    if model is None:
        raise BadField("model: null; export with group_by=model so each result names the model to price it by")

    input_tokens = json_count(result, "input_tokens")
    output_tokens = json_count(result, "output_tokens")
    units: dict[str, int] = {}
    if endpoint == "completions":
        audio_in, audio_out = json_count(result, "input_audio_tokens"), json_count(result, "output_audio_tokens")
        if "input_text_tokens" not in result:
            # Older exports: input/output_tokens were text only, audio reported beside them.
            input_tokens += audio_in
            output_tokens += audio_out
        units = {
            "cache_read_tokens": json_count(result, "input_cached_tokens"),
            "cache_write_tokens": json_count(result, "input_cache_write_tokens"),
            "input_audio_tokens": audio_in,
            "output_audio_tokens": audio_out,
            "cache_audio_read_tokens": json_count(result, "input_cached_audio_tokens"),
            "input_image_tokens": json_count(result, "input_image_tokens"),
            "output_image_tokens": json_count(result, "output_image_tokens"),
        }

    batch = result.get("batch") is True
    raw_tier = (json_text(result.get("service_tier")) or "").lower()
    tier = "batch" if batch else _TIERS.get(raw_tier, "standard")
    project, user, api_key = (
        json_text(result.get("project_id")),
        json_text(result.get("user_id")),
        json_text(result.get("api_key_id")),
    )
    identity = [start, end, endpoint, model, project, user, api_key, batch, tier]
    digest = hashlib.sha256(json.dumps(identity, separators=(",", ":")).encode()).hexdigest()

    tags = {"source": "openai_usage_export", "num_model_requests": str(json_count(result, "num_model_requests"))}
    if api_key is not None:
        tags["api_key_id"] = api_key
    event: dict[str, Any] = {
        "event_id": "openai-usage-" + digest[:40],
        "timestamp": datetime.fromtimestamp(start, UTC),
        "provider": "openai",
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        **{unit: value for unit, value in units.items() if value},
        "service_tier": tier,
        "category": "embedding" if endpoint == "embeddings" else "llm_inference",
        "tags": tags,
    }
    if project is not None:
        event["project"] = project
    if user is not None:
        event["user"] = user
    return event


def _pages(payload: Any) -> tuple[str, list[tuple[str, Any]]]:
    """(source name for locations, [(page prefix, page)])."""
    name = ""
    if isinstance(payload, str | Path):
        path = Path(payload)
        if not path.is_file():
            raise InvalidInput(f"{path}: no such file")
        try:
            payload = json.loads(path.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{path}: not a JSON Usage API export ({exc})") from None
        name = f"{path.name}:"
    if isinstance(payload, Mapping):
        return name, [("", payload)]
    if isinstance(payload, Sequence) and not isinstance(payload, str | bytes):
        return name, [(f"[{index}].", page) for index, page in enumerate(payload)]
    raise InvalidInput(f"expected a Usage API page, a list of pages or a JSON file path, got {type(payload).__name__}")


def read_openai_usage(
    payload: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | Path,
    *,
    now: datetime | None = None,
) -> Iterator[tuple[str, dict[str, Any] | InvalidEvent]]:
    """Aggregated usage events from OpenAI Usage API pages, as ``(location, item)`` pairs.

    ``payload`` is one page (dict), a list of pages, or the path of a JSON file holding either.
    Locations read like ``usage.json:[1].data[0].results[2]``. With ``now``, buckets that end
    after it are rejected (still open, see the module docstring).
    Raises :class:`~fleetledger.core.errors.InvalidInput` when the payload is not a Usage API export.
    """
    if now is not None and now.utcoffset() is None:
        raise InvalidInput("now: needs a time zone, e.g. datetime.now(UTC)")
    name, pages = _pages(payload)
    for prefix, page in pages:
        if not isinstance(page, Mapping) or not isinstance(page.get("data"), list):
            where = (name + prefix).rstrip(".:") or "payload"
            raise InvalidInput(f'{where}: not a Usage API page (expected {{"object": "page", "data": [...]}})')
        for b, bucket in enumerate(page["data"]):
            where = f"{name}{prefix}data[{b}]"
            try:
                if not isinstance(bucket, Mapping):
                    raise BadField(f"expected a bucket object, got {type(bucket).__name__}")
                start, end = unix_seconds(bucket, "start_time"), unix_seconds(bucket, "end_time")
                results = bucket.get("results", bucket.get("result"))
                if not isinstance(results, list):
                    raise BadField("bucket has no results list")
                if now is not None and datetime.fromtimestamp(end, UTC) > now:
                    raise BadField(
                        f"bucket ending {datetime.fromtimestamp(end, UTC).isoformat()} is still open; "
                        "import it after it closes"
                    )
            except BadField as exc:
                yield where, InvalidEvent(str(exc), location=where)
                continue
            for r, result in enumerate(results):
                location = f"{where}.results[{r}]"
                try:
                    yield location, usage_result_event(result, start, end)
                except BadField as exc:
                    yield location, InvalidEvent(str(exc), location=location)
