"""What every part of the gateway cache shares: the stored answer, its byte encoding, and the exact key.

:class:`CachedResponse` is one upstream answer as stored; :func:`encode_entry` / :func:`decode_entry`
(also ``CachedResponse.to_bytes()`` / ``from_bytes()``) turn it into the bytes every backend keeps,
with the expiry, and detect damage (:class:`CorruptEntry`). :func:`check_ttl` and :func:`now_us` are
the TTL rules and the clock the exact and semantic caches share.

Exact key (:func:`request_key`): SHA-256 of ``namespace``, ``endpoint`` and the request body as
canonical JSON (sorted keys, compact separators, UTF-8). What is left out, and why:

* ``stream``, ``stream_options``: how the answer is delivered, not what it is. A cached answer is the
  upstream's complete JSON body; the gateway replays it as a stream when the client asked for one.
* ``user``, ``safety_identifier``, ``metadata``, ``prompt_cache_key``: end-user ids for abuse
  monitoring, tags stored with the completion, and a provider-side prompt-cache routing hint. None of
  them changes the answer. (Tenancy is the ``namespace``, never these fields.)
* ``n`` equal to 1, ``presence_penalty`` / ``frequency_penalty`` equal to 0, ``logprobs`` equal to false,
  and (embeddings) ``encoding_format`` equal to ``"float"``: the documented defaults, so sending them
  or not is the same request. Only these, only at the top level, only at exactly the default value.
* Top-level ``null`` values: the OpenAI and Anthropic APIs read an explicit null as "not given".
* Integral floats at the top level are written as integers (``temperature: 0.0`` == ``0``).

Everything else counts, always: ``model``, every message and content block, the system prompt,
``temperature`` (absent and ``1`` stay different: defaults differ between models), ``top_p``,
``max_tokens``, ``tools``, ``tool_choice``, ``response_format``, ``seed``, ``stop``, ``store``, ...
String contents are never normalized (whitespace and case can change an answer).
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fleetledger.core.errors import InvalidInput
from fleetledger.core.time import to_us

__all__ = [
    "Clock",
    "CachedResponse",
    "CorruptEntry",
    "encode_entry",
    "decode_entry",
    "canonical_endpoint",
    "canonical_params",
    "canonical_json",
    "request_key",
    "check_ttl",
    "now_us",
    "IGNORED_FIELDS",
    "DEFAULT_VALUES",
]

Clock = Callable[[], datetime]

#: Top-level request fields that never change the answer (see the module docstring).
IGNORED_FIELDS = frozenset({"stream", "stream_options", "user", "safety_identifier", "metadata", "prompt_cache_key"})
#: Top-level fields whose documented default is dropped when sent explicitly: (endpoint suffix or "*", field) -> value.
DEFAULT_VALUES: dict[tuple[str, str], Any] = {
    ("*", "n"): 1,
    ("/chat/completions", "presence_penalty"): 0,
    ("/chat/completions", "frequency_penalty"): 0,
    ("/chat/completions", "logprobs"): False,
    ("/embeddings", "encoding_format"): "float",
}
_KEY_VERSION = b"fleetledger-cache-key-v1"


@dataclass(frozen=True)
class CachedResponse:
    """One upstream answer, as stored: enough to replay it and to record what the hit saved."""

    status: int
    headers: dict[str, str]  # content-type etc. (no hop-by-hop headers)
    body: bytes  # the upstream's JSON body, as received
    provider: str
    model: str
    cost_nanos: int  # what the original call cost (the saving of each hit)
    usage: dict[str, int] = field(default_factory=dict)  # normalized token counts of the original call
    created_us: int = 0

    def to_bytes(self, *, expires_us: int = 0) -> bytes:
        return encode_entry(self, expires_us)

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedResponse:
        return decode_entry(data)[0]


class CorruptEntry(ValueError):
    """A stored entry that cannot be decoded (truncated, overwritten, another format)."""


# Entry layout: magic, header length, header JSON, body. The header carries the body's length and
# CRC-32, so a truncated or damaged body is detected rather than served.
_MAGIC = b"TLC1"
_HEAD = struct.Struct(">4sI")


def encode_entry(response: CachedResponse, expires_us: int) -> bytes:
    header = {
        "status": response.status,
        "headers": response.headers,
        "provider": response.provider,
        "model": response.model,
        "cost_nanos": response.cost_nanos,
        "usage": response.usage,
        "created_us": response.created_us,
        "expires_us": expires_us,
        "body_len": len(response.body),
        "body_crc": zlib.crc32(response.body),
    }
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    return _HEAD.pack(_MAGIC, len(head)) + head + response.body


def decode_entry(data: bytes) -> tuple[CachedResponse, int]:
    """The response and its expiry (µs since the epoch, 0 = none); :class:`CorruptEntry` if damaged."""
    try:
        data = bytes(data)
        magic, head_len = _HEAD.unpack_from(data, 0)
        if magic != _MAGIC:
            raise CorruptEntry(f"unknown entry format {magic!r}")
        start = _HEAD.size + head_len
        header = json.loads(data[_HEAD.size : start])
        body = data[start:]
        if len(body) != header["body_len"] or zlib.crc32(body) != header["body_crc"]:
            raise CorruptEntry("body length or checksum does not match")
        headers, usage = header["headers"], header["usage"]
        if not (
            isinstance(headers, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
            and isinstance(usage, dict)
            and all(isinstance(k, str) and type(v) is int for k, v in usage.items())
            and all(type(header[name]) is int for name in ("status", "cost_nanos", "created_us", "expires_us"))
            and isinstance(header["provider"], str)
            and isinstance(header["model"], str)
        ):
            raise CorruptEntry("header fields have the wrong types")
        response = CachedResponse(
            status=header["status"],
            headers=headers,
            body=body,
            provider=header["provider"],
            model=header["model"],
            cost_nanos=header["cost_nanos"],
            usage=usage,
            created_us=header["created_us"],
        )
        return response, header["expires_us"]
    except CorruptEntry:
        raise
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CorruptEntry(f"cannot decode entry: {exc}") from None


# --------------------------------------------------------------------------------------------------
# Keys


def canonical_endpoint(endpoint: str) -> str:
    return endpoint.strip().split("?", 1)[0].rstrip("/")


def canonical_params(endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidInput(
            f"cache key for {endpoint}: the request body must be a JSON object, got {type(body).__name__}"
        )
    params: dict[str, Any] = {}
    for name, value in body.items():
        if name in IGNORED_FIELDS or value is None:
            continue
        if _is_default(endpoint, name, value):
            continue
        if type(value) is float and value.is_integer() and abs(value) < 2**53:
            value = int(value)
        params[name] = value
    return params


def _is_default(endpoint: str, name: str, value: Any) -> bool:
    for (suffix, field_name), default in DEFAULT_VALUES.items():
        if field_name == name and (suffix == "*" or endpoint.endswith(suffix)):
            if isinstance(default, bool):
                return value is default
            if isinstance(default, int):  # n=1 and n=1.0 alike, but n=true is not n=1
                return type(value) in (int, float) and value == default
            return bool(value == default)
    return False


def canonical_json(value: Any, *, where: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{where}: the request body is not plain JSON ({exc})") from None


def request_key(endpoint: str, body: Mapping[str, Any], *, namespace: str = "") -> str:
    """The exact-cache key of a request: hex SHA-256 of namespace, endpoint and the canonical body.

    ``namespace`` partitions the cache (e.g. per virtual key or tenant): two namespaces never share
    an entry. See the module docstring for exactly which fields are ignored.
    """
    path = canonical_endpoint(endpoint)
    text = canonical_json(canonical_params(path, body), where=f"cache key for {path}")
    digest = hashlib.sha256(_KEY_VERSION)
    for part in (namespace.encode(), path.encode()):
        # Length-prefixed, so ("a/b", "c") and ("a", "b/c") cannot collide.
        digest.update(b"%d:" % len(part) + part)
    digest.update(text.encode())
    return digest.hexdigest()


def check_ttl(ttl_s: int) -> None:
    if type(ttl_s) is not int or ttl_s <= 0:
        raise InvalidInput(f"cache put: ttl_s must be a positive whole number of seconds, got {ttl_s!r}")


def now_us(clock: Clock | None) -> int:
    return to_us(clock()) if clock is not None else time.time_ns() // 1000
