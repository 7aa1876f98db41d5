"""A local LLM provider upstream for tests and benchmarks: OpenAI and Anthropic wire formats.

The simulator is the one fake the project allows (the LLM provider upstream). It speaks the real
wire formats, checked against the real ``openai`` and ``anthropic`` SDKs in
``tests/gateway/test_simulator.py``:

* OpenAI ``POST /v1/chat/completions`` (stream and not; ``stream_options.include_usage`` adds the
  final chunk with empty ``choices`` and the usage), ``POST /v1/responses`` (stream and not),
  ``POST /v1/embeddings`` (float and base64), ``GET /v1/models`` and ``GET /v1/models/{id}``;
* Anthropic ``POST /v1/messages`` (stream and not), ``POST /v1/messages/count_tokens`` and
  ``GET /v1/models`` (Anthropic's shape when the request carries ``anthropic-version``).

Usage is deterministic and pure: :func:`simulated_usage` gives exactly the usage object the
simulator puts on the wire for a request body, and :func:`normalized_usage` the same in fleetledger
units (what a meter should record). The rules:

* a text of ``n`` characters is ``ceil(n / 4)`` tokens; each message adds 4 tokens, each request 3
  (non-text parts such as images count 0);
* OpenAI cache reads: when the body has ``prompt_cache_key`` or any input text contains ``[cache]``,
  half the input tokens (rounded down) are ``cached_tokens``;
* Anthropic cache: the prompt prefix up to and including the last block (tool, system block or
  message block) carrying ``cache_control`` is read from the cache, or written to it when any text
  contains ``[cache-miss]`` (1-hour writes when that ``cache_control`` has ``"ttl": "1h"``);
* output tokens: ``16 + (input_tokens * 37) % 97``, capped by ``max_tokens`` /
  ``max_completion_tokens`` / ``max_output_tokens``; when ``reasoning_effort`` (chat) or
  ``reasoning.effort`` (responses) is set and not ``"none"``, half of them (rounded down) are
  reasoning tokens.

Failure injection: header ``x-simulator-fail: 500|429|timeout|disconnect`` (or any 4xx/5xx status),
or a model name starting with ``sim-fail-500`` (``sim-fail-429``, ``sim-fail-timeout``,
``sim-fail-disconnect`` likewise); a model starting with ``sim-unknown`` is a 404 "model not
found". ``disconnect`` drops the connection mid-way: after two events of a stream, or half the body
of a JSON response. ``timeout`` holds the request without answering until the client goes away
(or ``hang_s`` passes, then 504). Per-request headers ``x-simulator-latency-ms`` and
``x-simulator-chunk-delay-ms`` override the app's latency settings. Errors use each provider's
error JSON: OpenAI ``{"error": {"message", "type", "param", "code"}}``, Anthropic
``{"type": "error", "error": {"type", "message"}, "request_id"}``.

Received requests are kept (most recent ``max_recorded``) in ``app.requests`` for assertions.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import logging
import math
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "RunningSimulator",
    "SimulatorApp",
    "SimulatorInputError",
    "create_simulator_app",
    "normalized_usage",
    "run_simulator_in_thread",
    "simulated_usage",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Output tokens when the request sets no cap (the natural length never reaches it).
DEFAULT_MAX_OUTPUT = 4096
#: Embedding size when the request does not ask for ``dimensions``.
DEFAULT_DIMENSIONS = 16
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Idle keep-alive connections are kept this long (providers keep them for about a minute; uvicorn's
#: default of 5 s would make clients' pooled connections go stale under bursty load).
KEEP_ALIVE_S = 75

MODELS_OPENAI = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "o4-mini", "text-embedding-3-small")
MODELS_ANTHROPIC = ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7")

_ENDPOINTS = {
    "chat": "chat",
    "chat.completions": "chat",
    "chat/completions": "chat",
    "responses": "responses",
    "embeddings": "embeddings",
    "messages": "messages",
}

_WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip"
).split()


class SimulatorInputError(ValueError):
    """A request body the simulated provider would reject with HTTP 400 (``param`` names the field)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


# -- deterministic usage (pure) --------------------------------------------------------------------


def _endpoint(endpoint: str) -> str:
    key = endpoint.strip().strip("/")
    if key.startswith("v1/"):
        key = key[3:]
    try:
        return _ENDPOINTS[key]
    except KeyError:
        raise ValueError(f"unknown endpoint {endpoint!r}: one of chat, responses, embeddings, messages") from None


def _tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _part_text(part: Any) -> str:
    """The text of one content part (OpenAI text/input_text/output_text, Anthropic text/tool_result)."""
    if isinstance(part, str):
        return part
    if not isinstance(part, Mapping):
        return ""
    text = part.get("text")
    if isinstance(text, str):
        return text
    content = part.get("content")  # Anthropic tool_result
    if isinstance(content, str | list):
        return _content_text(content)
    return ""


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_part_text(p) for p in content)
    return ""


def _require_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise SimulatorInputError("you must provide a model parameter", "model")
    return model


def _cap(body: Mapping[str, Any], *names: str) -> int:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SimulatorInputError(f"{name} must be an integer >= 1, got {value!r}", name)
        return value
    return DEFAULT_MAX_OUTPUT


def _natural_output(input_tokens: int) -> int:
    return 16 + (input_tokens * 37) % 97


def _chat_input(body: Mapping[str, Any]) -> tuple[int, str]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SimulatorInputError("messages must be a non-empty array", "messages")
    total = 3
    texts = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise SimulatorInputError(f"messages[{i}] must be an object with a role", f"messages[{i}]")
        text = _content_text(message.get("content"))
        name = message.get("name")
        total += 4 + _tokens(text) + (_tokens(name) if isinstance(name, str) else 0)
        texts.append(text)
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        total += _tokens(json.dumps(tools, sort_keys=True, separators=(",", ":")))
    return total, "".join(texts)


def _responses_input(body: Mapping[str, Any]) -> tuple[int, str]:
    items = body.get("input")
    instructions = body.get("instructions")
    total = 3
    texts = []
    if isinstance(instructions, str):
        total += 4 + _tokens(instructions)
        texts.append(instructions)
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise SimulatorInputError("input must be a string or a non-empty array of items", "input")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise SimulatorInputError(f"input[{i}] must be an object", f"input[{i}]")
        if "content" in item:
            text = _content_text(item.get("content"))
        else:
            output = item.get("output")  # function_call_output
            text = output if isinstance(output, str) else _content_text(item.get("arguments"))
        total += 4 + _tokens(text)
        texts.append(text)
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        total += _tokens(json.dumps(tools, sort_keys=True, separators=(",", ":")))
    return total, "".join(texts)


def _openai_cached(body: Mapping[str, Any], text: str, input_tokens: int) -> int:
    if body.get("prompt_cache_key") is not None or "[cache]" in text:
        return input_tokens // 2
    return 0


def _reasoning(effort: Any, output_tokens: int) -> int:
    return output_tokens // 2 if isinstance(effort, str) and effort != "none" else 0


def _embedding_inputs(body: Mapping[str, Any]) -> list[str | list[int]]:
    value = body.get("input")
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        items = [value]
    elif isinstance(value, list) and value:
        items = value
    else:
        raise SimulatorInputError("input must be a non-empty string or array", "input")
    for i, item in enumerate(items):
        if isinstance(item, str):
            if not item:
                raise SimulatorInputError(f"input[{i}] is empty: every input must be a non-empty string", "input")
        elif not (isinstance(item, list) and item and all(isinstance(t, int) for t in item)):
            raise SimulatorInputError(f"input[{i}] must be a non-empty string or array of token ids", "input")
    return items


@dataclass(frozen=True)
class _AnthropicCount:
    total: int
    prefix: int
    ttl_1h: bool
    miss: bool


def _anthropic_count(body: Mapping[str, Any]) -> _AnthropicCount:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SimulatorInputError("messages: at least one message is required", "messages")
    total = 3
    prefix = 0
    ttl_1h = False
    texts: list[str] = []

    def mark(block: Any) -> None:
        nonlocal prefix, ttl_1h
        control = block.get("cache_control") if isinstance(block, Mapping) else None
        if isinstance(control, Mapping):
            prefix = total
            ttl_1h = control.get("ttl") == "1h"

    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, Mapping):
            plain = {k: v for k, v in tool.items() if k != "cache_control"}
            total += _tokens(json.dumps(plain, sort_keys=True, separators=(",", ":")))
            mark(tool)
    system = body.get("system")
    if isinstance(system, str):
        total += _tokens(system)
        texts.append(system)
    elif isinstance(system, list):
        for block in system:
            text = _part_text(block)
            total += _tokens(text)
            texts.append(text)
            mark(block)
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant"):
            raise SimulatorInputError(f"messages.{i}.role: must be 'user' or 'assistant'", f"messages.{i}")
        total += 4
        content = message.get("content")
        if isinstance(content, str):
            total += _tokens(content)
            texts.append(content)
        elif isinstance(content, list):
            for block in content:
                text = _part_text(block)
                total += _tokens(text)
                texts.append(text)
                mark(block)
        else:
            raise SimulatorInputError(f"messages.{i}.content: must be a string or an array of blocks", f"messages.{i}")
    return _AnthropicCount(total, prefix, ttl_1h, "[cache-miss]" in "".join(texts))


def simulated_usage(endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The usage object the simulator reports for ``body`` at ``endpoint``, exactly as on the wire.

    ``endpoint`` is ``chat``, ``responses``, ``embeddings`` or ``messages`` (or the path, e.g.
    ``/v1/chat/completions``). Streaming and non-streaming report the same usage. Raises
    :class:`SimulatorInputError` for a body the provider would reject.
    """
    kind = _endpoint(endpoint)
    if not isinstance(body, Mapping):
        raise SimulatorInputError("the request body must be a JSON object")
    _require_model(body)
    if kind == "embeddings":
        tokens = sum(_tokens(item) if isinstance(item, str) else len(item) for item in _embedding_inputs(body))
        return {"prompt_tokens": tokens, "total_tokens": tokens}
    if kind == "messages":
        count = _anthropic_count(body)
        if "max_tokens" not in body:
            raise SimulatorInputError("max_tokens: Field required", "max_tokens")
        output = min(_cap(body, "max_tokens"), _natural_output(count.total))
        write = count.prefix if count.miss else 0
        write_1h = write if count.ttl_1h else 0
        return {
            "input_tokens": count.total - count.prefix,
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": 0 if count.miss else count.prefix,
            "cache_creation": {"ephemeral_5m_input_tokens": write - write_1h, "ephemeral_1h_input_tokens": write_1h},
            "output_tokens": output,
            "service_tier": "standard",
        }
    if kind == "chat":
        if body.get("n") not in (None, 1):
            raise SimulatorInputError("the simulator answers n=1 only", "n")
        input_tokens, text = _chat_input(body)
        output = min(_cap(body, "max_completion_tokens", "max_tokens"), _natural_output(input_tokens))
        reasoning = _reasoning(body.get("reasoning_effort"), output)
        return {
            "prompt_tokens": input_tokens,
            "completion_tokens": output,
            "total_tokens": input_tokens + output,
            "prompt_tokens_details": {"cached_tokens": _openai_cached(body, text, input_tokens), "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
    input_tokens, text = _responses_input(body)
    output = min(_cap(body, "max_output_tokens"), _natural_output(input_tokens))
    reasoning_param = body.get("reasoning")
    effort = reasoning_param.get("effort") if isinstance(reasoning_param, Mapping) else None
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": _openai_cached(body, text, input_tokens)},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": _reasoning(effort, output)},
        "total_tokens": input_tokens + output,
    }


def normalized_usage(endpoint: str, body: Mapping[str, Any]) -> dict[str, int]:
    """:func:`simulated_usage` in fleetledger units (see :mod:`fleetledger.core.usage`): what a meter records.

    ``input_tokens`` includes cache reads and writes, ``output_tokens`` includes reasoning.
    """
    kind = _endpoint(endpoint)
    usage = simulated_usage(kind, body)
    if kind == "embeddings":
        return {"input_tokens": usage["prompt_tokens"], "output_tokens": 0}
    if kind == "messages":
        read, write = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
        return {
            "input_tokens": usage["input_tokens"] + read + write,
            "cache_read_tokens": read,
            "cache_write_tokens": write,
            "cache_write_1h_tokens": usage["cache_creation"]["ephemeral_1h_input_tokens"],
            "output_tokens": usage["output_tokens"],
            "reasoning_tokens": 0,
        }
    if kind == "chat":
        return {
            "input_tokens": usage["prompt_tokens"],
            "cache_read_tokens": usage["prompt_tokens_details"]["cached_tokens"],
            "cache_write_tokens": 0,
            "output_tokens": usage["completion_tokens"],
            "reasoning_tokens": usage["completion_tokens_details"]["reasoning_tokens"],
        }
    return {
        "input_tokens": usage["input_tokens"],
        "cache_read_tokens": usage["input_tokens_details"]["cached_tokens"],
        "cache_write_tokens": 0,
        "output_tokens": usage["output_tokens"],
        "reasoning_tokens": usage["output_tokens_details"]["reasoning_tokens"],
    }


def _output_tokens_of(kind: str, usage: Mapping[str, Any]) -> tuple[int, int]:
    """(visible text tokens, total output tokens) of a usage object."""
    if kind == "chat":
        total = usage["completion_tokens"]
        return total - usage["completion_tokens_details"]["reasoning_tokens"], total
    if kind == "responses":
        total = usage["output_tokens"]
        return total - usage["output_tokens_details"]["reasoning_tokens"], total
    return usage["output_tokens"], usage["output_tokens"]


# -- errors ------------------------------------------------------------------------------------------

_OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_DEFAULT_MESSAGES = {
    429: "Rate limit reached (simulated). Please try again later.",
    500: "The server had an error while processing your request (simulated).",
    503: "The service is temporarily unavailable (simulated).",
    504: "The upstream timed out (simulated).",
    529: "Overloaded (simulated).",
}


def error_body(provider: str, status: int, message: str, *, param: str | None = None, request_id: str = "") -> bytes:
    """The provider's error JSON for ``status``."""
    if provider == "anthropic":
        kind = _ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        payload: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
        if request_id:
            payload["request_id"] = request_id
        return _dumps(payload)
    kind, code = _OPENAI_ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return _dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


# -- the ASGI app ----------------------------------------------------------------------------------


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class _Drop(Exception):
    """Raised to drop the connection (uvicorn closes the transport once the response has started)."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _Drop)


_quiet = _QuietDrops()


def _silence_simulated_drops() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _quiet not in logger.filters:
        logger.addFilter(_quiet)


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    provider: str
    request_id: str


@dataclass
class _Options:
    latency_s: float
    chunk_delay_s: float


class SimulatorApp:
    """The simulator as a raw ASGI application (no framework: it must not be a benchmark's bottleneck)."""

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        seed: int = 0,
        chunk_tokens: int = 4,
        chunk_delay_ms: float = 0.0,
        api_key: str | None = None,
        hang_s: float = 30.0,
        disconnect_after: int = 2,
        max_recorded: int = 1000,
    ) -> None:
        if latency_ms < 0 or chunk_delay_ms < 0 or hang_s < 0:
            raise ValueError("latency_ms, chunk_delay_ms and hang_s must be >= 0")
        if chunk_tokens < 1 or disconnect_after < 0 or max_recorded < 0:
            raise ValueError("chunk_tokens must be >= 1, disconnect_after and max_recorded >= 0")
        self.latency_ms = latency_ms
        self.seed = seed
        self.chunk_tokens = chunk_tokens
        self.chunk_delay_ms = chunk_delay_ms
        self.api_key = api_key
        self.hang_s = hang_s
        self.disconnect_after = disconnect_after
        self.max_recorded = max_recorded
        #: What the simulator received (most recent ``max_recorded``): method, path, headers, body,
        #: and the ``failure`` injected (or None).
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        _silence_simulated_drops()

    # -- plumbing ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        anthropic = path.startswith("/v1/messages") or (
            path.startswith("/v1/models") and "anthropic-version" in headers
        )
        provider = "anthropic" if anthropic else "openai"
        request_id = f"req_sim{self.seed}_{next(self._ids)}"
        raw = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            if len(raw) > MAX_BODY_BYTES:
                await self._error(send, provider, 413, f"request body larger than {MAX_BODY_BYTES} bytes", request_id)
                return
            if not message.get("more_body", False):
                break
        request = _Request(scope["method"], path, headers, None, provider, request_id)
        await self._handle(request, bytes(raw), receive, send)

    def _record(self, request: _Request, failure: str | None) -> None:
        if self.max_recorded == 0:
            return
        entry = {
            "method": request.method,
            "path": request.path,
            "headers": request.headers,
            "body": request.body,
            "failure": failure,
            "request_id": request.request_id,
        }
        with self._lock:
            self.requests.append(entry)
            if len(self.requests) > self.max_recorded:
                del self.requests[: len(self.requests) - self.max_recorded]

    def _headers(self, request: _Request, content_type: bytes) -> list[tuple[bytes, bytes]]:
        rid = request.request_id.encode()
        name = b"request-id" if request.provider == "anthropic" else b"x-request-id"
        return [(b"content-type", content_type), (name, rid)]

    async def _error(
        self, send: Send, provider: str, status: int, message: str, request_id: str, param: str | None = None
    ) -> None:
        body = error_body(provider, status, message, param=param, request_id=request_id)
        name = b"request-id" if provider == "anthropic" else b"x-request-id"
        headers = [(b"content-type", b"application/json"), (name, request_id.encode())]
        if provider == "anthropic" and status in (429, 529):
            headers.append((b"x-should-retry", b"true"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _json(self, send: Send, request: _Request, payload: Any, failure: str | None) -> None:
        body = _dumps(payload)
        await send(
            {"type": "http.response.start", "status": 200, "headers": self._headers(request, b"application/json")}
        )
        if failure == "disconnect":
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            raise _Drop("simulated disconnect")
        await send({"type": "http.response.body", "body": body})

    async def _stream(
        self, send: Send, request: _Request, events: Iterator[bytes], failure: str | None, options: _Options
    ) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": self._headers(request, b"text/event-stream")}
        )
        for sent, event in enumerate(events):
            if failure == "disconnect" and sent == self.disconnect_after:
                raise _Drop("simulated disconnect")
            if sent and options.chunk_delay_s:
                await asyncio.sleep(options.chunk_delay_s)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _hang(self, receive: Receive) -> bool:
        """Hold the request until the client disconnects (True) or ``hang_s`` passes (False)."""
        try:
            async with asyncio.timeout(self.hang_s):
                while (await receive())["type"] != "http.disconnect":
                    pass
            return True
        except TimeoutError:
            return False

    # -- dispatch ----------------------------------------------------------------------------------

    def _options(self, headers: Mapping[str, str]) -> _Options:
        def number(name: str, default: float) -> float:
            try:
                value = float(headers[name])
            except (KeyError, ValueError):
                return default
            return max(0.0, value)

        return _Options(
            number("x-simulator-latency-ms", self.latency_ms) / 1000,
            number("x-simulator-chunk-delay-ms", self.chunk_delay_ms) / 1000,
        )

    def _authorized(self, request: _Request) -> bool:
        if self.api_key is None:
            return True
        bearer = request.headers.get("authorization", "")
        if bearer == f"Bearer {self.api_key}":
            return True
        return request.provider == "anthropic" and request.headers.get("x-api-key") == self.api_key

    async def _handle(self, request: _Request, raw: bytes, receive: Receive, send: Send) -> None:
        provider, rid = request.provider, request.request_id
        if raw:
            try:
                request.body = json.loads(raw)
            except (UnicodeDecodeError, ValueError) as exc:
                self._record(request, None)
                await self._error(send, provider, 400, f"We could not parse the JSON body of your request ({exc})", rid)
                return
        body = request.body if isinstance(request.body, dict) else {}
        model: str = body["model"] if isinstance(body.get("model"), str) else ""
        failure = request.headers.get("x-simulator-fail") or None
        if failure is None and model.startswith("sim-fail-"):
            failure = model[len("sim-fail-") :].split("-", 1)[0]
        self._record(request, failure)
        if not self._authorized(request):
            await self._error(send, provider, 401, "Incorrect API key provided (simulator).", rid)
            return
        options = self._options(request.headers)
        if options.latency_s:
            await asyncio.sleep(options.latency_s)
        if failure is not None and failure.isdigit() and 400 <= int(failure) <= 599:
            status = int(failure)
            await self._error(send, provider, status, _DEFAULT_MESSAGES.get(status, f"simulated {status}"), rid)
            return
        if failure == "timeout":
            if not await self._hang(receive):
                await self._error(send, provider, 504, _DEFAULT_MESSAGES[504], rid)
            return
        if failure not in (None, "disconnect"):
            await self._error(send, provider, 400, f"x-simulator-fail: unknown failure {failure!r}", rid)
            return

        method, path = request.method, request.path
        if path == "/v1/models" or path.startswith("/v1/models/"):
            if method != "GET":
                await self._error(send, provider, 405, f"{method} {path}: use GET", rid)
                return
            await self._models(send, request, path[len("/v1/models/") :] if path != "/v1/models" else None, failure)
            return
        kind = {
            "/v1/chat/completions": "chat",
            "/v1/responses": "responses",
            "/v1/embeddings": "embeddings",
            "/v1/messages": "messages",
            "/v1/messages/count_tokens": "count_tokens",
        }.get(path)
        if kind is None:
            await self._error(send, provider, 404, f"Unknown request URL: {method} {path}", rid)
            return
        if method != "POST":
            await self._error(send, provider, 405, f"{method} {path}: use POST", rid)
            return
        if not isinstance(request.body, dict):
            await self._error(send, provider, 400, "the request body must be a JSON object", rid)
            return
        if model.startswith("sim-unknown"):
            message = f"The model `{model}` does not exist or you do not have access to it."
            await self._error(send, provider, 404, message, rid, param="model")
            return
        try:
            if kind == "count_tokens":
                await self._json(send, request, {"input_tokens": _anthropic_count(request.body).total}, failure)
                return
            usage = simulated_usage(kind, request.body)
        except SimulatorInputError as exc:
            await self._error(send, provider, 400, exc.message, rid, param=exc.param)
            return
        stream = request.body.get("stream") is True
        if kind == "embeddings":
            await self._json(send, request, self._embeddings(request.body, usage), failure)
        elif kind == "chat":
            if stream:
                await self._stream(send, request, self._chat_stream(request, usage), failure, options)
            else:
                await self._json(send, request, self._chat(request, usage), failure)
        elif kind == "responses":
            if stream:
                await self._stream(send, request, self._responses_stream(request, usage), failure, options)
            else:
                await self._json(send, request, self._response_object(request, usage, "completed"), failure)
        elif stream:
            await self._stream(send, request, self._messages_stream(request, usage), failure, options)
        else:
            await self._json(send, request, self._message(request, usage), failure)

    # -- payloads ----------------------------------------------------------------------------------

    def _words(self, request: _Request, count: int) -> list[str]:
        start = self.seed + len(request.request_id)
        return [_WORDS[(start + i) % len(_WORDS)] + " " for i in range(count)]

    def _chunks(self, request: _Request, count: int) -> list[str]:
        words = self._words(request, count)
        return ["".join(words[i : i + self.chunk_tokens]) for i in range(0, len(words), self.chunk_tokens)]

    async def _models(self, send: Send, request: _Request, model_id: str | None, failure: str | None) -> None:
        anthropic = request.provider == "anthropic"
        names = MODELS_ANTHROPIC if anthropic else MODELS_OPENAI

        def one(name: str) -> dict[str, Any]:
            if anthropic:
                return {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z"}
            return {"id": name, "object": "model", "created": 1735689600, "owned_by": "fleetledger-simulator"}

        if model_id is not None:
            if model_id not in names:
                message = f"The model `{model_id}` does not exist or you do not have access to it."
                await self._error(send, request.provider, 404, message, request.request_id, param="model")
                return
            await self._json(send, request, one(model_id), failure)
            return
        data = [one(n) for n in names]
        if anthropic:
            payload: dict[str, Any] = {"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]}
        else:
            payload = {"object": "list", "data": data}
        await self._json(send, request, payload, failure)

    def _embeddings(self, body: Mapping[str, Any], usage: Mapping[str, Any]) -> dict[str, Any]:
        asked = body.get("dimensions")
        dims = max(1, min(asked, 4096)) if isinstance(asked, int) else DEFAULT_DIMENSIONS
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(_embedding_inputs(body)):
            seed = (item if isinstance(item, str) else ",".join(map(str, item))).encode()
            raw = b""
            counter = 0
            while len(raw) < dims * 4:
                raw += hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
                counter += 1
            values = [(b - 127.5) / 127.5 for b in raw[: dims * 4 : 4]]
            norm = math.sqrt(sum(v * v for v in values)) or 1.0
            vector = [v / norm for v in values]
            embedding: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        return {"object": "list", "data": data, "model": body["model"], "usage": dict(usage)}

    def _chat(self, request: _Request, usage: Mapping[str, Any]) -> dict[str, Any]:
        body = request.body
        visible, total = _output_tokens_of("chat", usage)
        capped = total < _natural_output(usage["prompt_tokens"])
        return {
            "id": f"chatcmpl-{request.request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_simulator",
            "service_tier": "default",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(self._words(request, visible)),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "length" if capped else "stop",
                }
            ],
            "usage": dict(usage),
        }

    def _chat_stream(self, request: _Request, usage: Mapping[str, Any]) -> Iterator[bytes]:
        body = request.body
        options = body.get("stream_options")
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        visible, total = _output_tokens_of("chat", usage)
        capped = total < _natural_output(usage["prompt_tokens"])
        head = {
            "id": f"chatcmpl-{request.request_id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_simulator",
            "service_tier": "default",
        }
        extra = {"usage": None} if include_usage else {}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return b"data: " + _dumps({**head, "choices": [choice], **extra}) + b"\n\n"

        yield chunk({"role": "assistant", "content": "", "refusal": None})
        for piece in self._chunks(request, visible):
            yield chunk({"content": piece})
        yield chunk({}, "length" if capped else "stop")
        if include_usage:
            yield b"data: " + _dumps({**head, "choices": [], "usage": dict(usage)}) + b"\n\n"
        yield b"data: [DONE]\n\n"

    def _response_object(
        self, request: _Request, usage: Mapping[str, Any] | None, status: str, text: str | None = None
    ) -> dict[str, Any]:
        body = request.body
        output: list[dict[str, Any]] = []
        incomplete = None
        if usage is not None:
            visible, total = _output_tokens_of("responses", usage)
            if text is None:
                text = "".join(self._words(request, visible))
            output = [
                {
                    "type": "message",
                    "id": f"msg_{request.request_id}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
                }
            ]
            if total < _natural_output(usage["input_tokens"]):
                status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), Mapping) else None
        return {
            "id": f"resp_{request.request_id}",
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": body["model"],
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": reasoning.get("effort") if reasoning else None, "summary": None},
            "service_tier": "default",
            "store": True,
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": dict(usage) if usage is not None else None,
            "user": None,
            "metadata": body.get("metadata") or {},
        }

    def _responses_stream(self, request: _Request, usage: Mapping[str, Any]) -> Iterator[bytes]:
        sequence = itertools.count()
        item_id = f"msg_{request.request_id}"

        def event(kind: str, **fields: Any) -> bytes:
            data = {"type": kind, "sequence_number": next(sequence), **fields}
            return b"event: " + kind.encode() + b"\ndata: " + _dumps(data) + b"\n\n"

        visible, _ = _output_tokens_of("responses", usage)
        pieces = self._chunks(request, visible)
        text = "".join(pieces)
        in_progress = self._response_object(request, None, "in_progress")
        yield event("response.created", response=in_progress)
        yield event("response.in_progress", response=in_progress)
        item = {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}
        yield event("response.output_item.added", output_index=0, item=item)
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield event("response.content_part.added", item_id=item_id, output_index=0, content_index=0, part=empty)
        for piece in pieces:
            yield event(
                "response.output_text.delta", item_id=item_id, output_index=0, content_index=0, delta=piece, logprobs=[]
            )
        yield event(
            "response.output_text.done", item_id=item_id, output_index=0, content_index=0, text=text, logprobs=[]
        )
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        yield event("response.content_part.done", item_id=item_id, output_index=0, content_index=0, part=part)
        final = self._response_object(request, usage, "completed", text)
        yield event("response.output_item.done", output_index=0, item=final["output"][0])
        yield event("response.incomplete" if final["status"] == "incomplete" else "response.completed", response=final)

    def _message(self, request: _Request, usage: Mapping[str, Any]) -> dict[str, Any]:
        body = request.body
        total_input = usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
        capped = usage["output_tokens"] < _natural_output(total_input)
        return {
            "id": f"msg_{request.request_id}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": "".join(self._words(request, usage["output_tokens"]))}],
            "stop_reason": "max_tokens" if capped else "end_turn",
            "stop_sequence": None,
            "usage": dict(usage),
        }

    def _messages_stream(self, request: _Request, usage: Mapping[str, Any]) -> Iterator[bytes]:
        def event(kind: str, **fields: Any) -> bytes:
            return b"event: " + kind.encode() + b"\ndata: " + _dumps({"type": kind, **fields}) + b"\n\n"

        final = self._message(request, usage)
        start = {**final, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
        yield event("message_start", message=start)
        yield event("content_block_start", index=0, content_block={"type": "text", "text": ""})
        yield event("ping")
        for piece in self._chunks(request, usage["output_tokens"]):
            yield event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
        yield event("content_block_stop", index=0)
        delta = {"stop_reason": final["stop_reason"], "stop_sequence": None}
        yield event("message_delta", delta=delta, usage={"output_tokens": usage["output_tokens"]})
        yield event("message_stop")


def create_simulator_app(*, latency_ms: float = 0.0, seed: int = 0, **options: Any) -> SimulatorApp:
    """The simulator ASGI app. ``latency_ms`` is waited before each response starts; ``seed`` varies
    ids and texts (never usage). Further options: ``chunk_tokens`` (tokens per stream event, 4),
    ``chunk_delay_ms`` (between stream events, 0), ``api_key`` (required when set), ``hang_s`` (how
    long a ``timeout`` failure holds, 30), ``disconnect_after`` (events before a ``disconnect``
    failure drops a stream, 2), ``max_recorded`` (requests kept, 1000)."""
    return SimulatorApp(latency_ms=latency_ms, seed=seed, **options)


@dataclass
class RunningSimulator:
    """A simulator served by uvicorn in a background thread (see :func:`run_simulator_in_thread`)."""

    url: str
    app: SimulatorApp
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.app.requests

    @property
    def openai_base_url(self) -> str:
        """``base_url`` for ``openai.OpenAI`` (it includes ``/v1``)."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """``base_url`` for ``anthropic.Anthropic`` (the SDK adds ``/v1``)."""
        return self.url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_simulator_in_thread(host: str = "127.0.0.1", port: int = 0, **options: Any) -> RunningSimulator:
    """Serve a simulator with uvicorn in a daemon thread; returns once it accepts connections.

    ``port=0`` picks a free port (see ``.url``). ``options`` go to :func:`create_simulator_app`.
    """
    import uvicorn

    app = create_simulator_app(**options)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fleetledger-simulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the simulator did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return RunningSimulator(url=f"http://{host}:{bound}", app=app, _server=server, _thread=thread)
