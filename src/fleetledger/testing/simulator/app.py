"""The simulator as a raw ASGI application: routing, failure injection, responses, recorded requests.

No framework: it must not be a benchmark's bottleneck. The payloads are built by
:mod:`~fleetledger.testing.simulator.openai` and :mod:`~fleetledger.testing.simulator.anthropic`,
the usage by :mod:`~fleetledger.testing.simulator.usage`, the failures by
:mod:`~fleetledger.testing.simulator.failures`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fleetledger.testing.simulator.anthropic import MODELS_ANTHROPIC, anthropic_count, message_object, messages_stream
from fleetledger.testing.simulator.common import Receive, Request, Scope, Send, SimulatorInputError, Text, dumps
from fleetledger.testing.simulator.failures import (
    DEFAULT_MESSAGES,
    Drop,
    hold,
    requested_failure,
    send_error,
    silence_simulated_drops,
)
from fleetledger.testing.simulator.openai import (
    MODELS_OPENAI,
    chat_completion,
    chat_stream,
    embeddings_object,
    response_object,
    responses_stream,
)
from fleetledger.testing.simulator.usage import simulated_usage

__all__ = ["MAX_BODY_BYTES", "Options", "SimulatorApp", "create_simulator_app"]


MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass
class Options:
    """Per-request timing: the app's settings, or the request's ``x-simulator-*`` headers."""

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
        silence_simulated_drops()

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
                await send_error(send, provider, 413, f"request body larger than {MAX_BODY_BYTES} bytes", request_id)
                return
            if not message.get("more_body", False):
                break
        request = Request(scope["method"], path, headers, None, provider, request_id)
        await self._handle(request, bytes(raw), receive, send)

    def _record(self, request: Request, failure: str | None) -> None:
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

    def _headers(self, request: Request, content_type: bytes) -> list[tuple[bytes, bytes]]:
        rid = request.request_id.encode()
        name = b"request-id" if request.provider == "anthropic" else b"x-request-id"
        return [(b"content-type", content_type), (name, rid)]

    async def _json(self, send: Send, request: Request, payload: Any, failure: str | None) -> None:
        body = dumps(payload)
        await send(
            {"type": "http.response.start", "status": 200, "headers": self._headers(request, b"application/json")}
        )
        if failure == "disconnect":
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            raise Drop("simulated disconnect")
        await send({"type": "http.response.body", "body": body})

    async def _stream(
        self, send: Send, request: Request, events: Iterator[bytes], failure: str | None, options: Options
    ) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": self._headers(request, b"text/event-stream")}
        )
        for sent, event in enumerate(events):
            if failure == "disconnect" and sent == self.disconnect_after:
                raise Drop("simulated disconnect")
            if sent and options.chunk_delay_s:
                await asyncio.sleep(options.chunk_delay_s)
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    def _options(self, headers: Mapping[str, str]) -> Options:
        def number(name: str, default: float) -> float:
            try:
                value = float(headers[name])
            except (KeyError, ValueError):
                return default
            return max(0.0, value)

        return Options(
            number("x-simulator-latency-ms", self.latency_ms) / 1000,
            number("x-simulator-chunk-delay-ms", self.chunk_delay_ms) / 1000,
        )

    def _authorized(self, request: Request) -> bool:
        if self.api_key is None:
            return True
        bearer = request.headers.get("authorization", "")
        if bearer == f"Bearer {self.api_key}":
            return True
        return request.provider == "anthropic" and request.headers.get("x-api-key") == self.api_key

    async def _handle(self, request: Request, raw: bytes, receive: Receive, send: Send) -> None:
        provider, rid = request.provider, request.request_id
        if raw:
            try:
                request.body = json.loads(raw)
            except (UnicodeDecodeError, ValueError) as exc:
                self._record(request, None)
                await send_error(send, provider, 400, f"We could not parse the JSON body of your request ({exc})", rid)
                return
        body = request.body if isinstance(request.body, dict) else {}
        model: str = body["model"] if isinstance(body.get("model"), str) else ""
        failure = requested_failure(request.headers, model)
        self._record(request, failure)
        if not self._authorized(request):
            await send_error(send, provider, 401, "Incorrect API key provided (simulator).", rid)
            return
        options = self._options(request.headers)
        if options.latency_s:
            await asyncio.sleep(options.latency_s)
        if failure is not None and failure.isdigit() and 400 <= int(failure) <= 599:
            status = int(failure)
            await send_error(send, provider, status, DEFAULT_MESSAGES.get(status, f"simulated {status}"), rid)
            return
        if failure == "timeout":
            if not await hold(receive, self.hang_s):
                await send_error(send, provider, 504, DEFAULT_MESSAGES[504], rid)
            return
        if failure not in (None, "disconnect"):
            await send_error(send, provider, 400, f"x-simulator-fail: unknown failure {failure!r}", rid)
            return

        method, path = request.method, request.path
        if path == "/v1/models" or path.startswith("/v1/models/"):
            if method != "GET":
                await send_error(send, provider, 405, f"{method} {path}: use GET", rid)
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
            await send_error(send, provider, 404, f"Unknown request URL: {method} {path}", rid)
            return
        if method != "POST":
            await send_error(send, provider, 405, f"{method} {path}: use POST", rid)
            return
        if not isinstance(request.body, dict):
            await send_error(send, provider, 400, "the request body must be a JSON object", rid)
            return
        if model.startswith("sim-unknown"):
            message = f"The model `{model}` does not exist or you do not have access to it."
            await send_error(send, provider, 404, message, rid, param="model")
            return
        try:
            if kind == "count_tokens":
                await self._json(send, request, {"input_tokens": anthropic_count(request.body).total}, failure)
                return
            usage = simulated_usage(kind, request.body)
        except SimulatorInputError as exc:
            await send_error(send, provider, 400, exc.message, rid, param=exc.param)
            return
        stream = request.body.get("stream") is True
        writer = Text(self.seed, self.chunk_tokens)
        if kind == "embeddings":
            await self._json(send, request, embeddings_object(request.body, usage), failure)
        elif kind == "chat":
            if stream:
                await self._stream(send, request, chat_stream(writer, request, usage), failure, options)
            else:
                await self._json(send, request, chat_completion(writer, request, usage), failure)
        elif kind == "responses":
            if stream:
                await self._stream(send, request, responses_stream(writer, request, usage), failure, options)
            else:
                await self._json(send, request, response_object(writer, request, usage, "completed"), failure)
        elif stream:
            await self._stream(send, request, messages_stream(writer, request, usage), failure, options)
        else:
            await self._json(send, request, message_object(writer, request, usage), failure)

    async def _models(self, send: Send, request: Request, model_id: str | None, failure: str | None) -> None:
        anthropic = request.provider == "anthropic"
        names = MODELS_ANTHROPIC if anthropic else MODELS_OPENAI

        def one(name: str) -> dict[str, Any]:
            if anthropic:
                return {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z"}
            return {"id": name, "object": "model", "created": 1735689600, "owned_by": "fleetledger-simulator"}

        if model_id is not None:
            if model_id not in names:
                message = f"The model `{model_id}` does not exist or you do not have access to it."
                await send_error(send, request.provider, 404, message, request.request_id, param="model")
                return
            await self._json(send, request, one(model_id), failure)
            return
        data = [one(n) for n in names]
        if anthropic:
            payload: dict[str, Any] = {"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]}
        else:
            payload = {"object": "list", "data": data}
        await self._json(send, request, payload, failure)


def create_simulator_app(*, latency_ms: float = 0.0, seed: int = 0, **options: Any) -> SimulatorApp:
    """The simulator ASGI app. ``latency_ms`` is waited before each response starts; ``seed`` varies
    ids and texts (never usage). Further options: ``chunk_tokens`` (tokens per stream event, 4),
    ``chunk_delay_ms`` (between stream events, 0), ``api_key`` (required when set), ``hang_s`` (how
    long a ``timeout`` failure holds, 30), ``disconnect_after`` (events before a ``disconnect``
    failure drops a stream, 2), ``max_recorded`` (requests kept, 1000)."""
    return SimulatorApp(latency_ms=latency_ms, seed=seed, **options)
