"""Simulated failures: which one a request asks for, the providers' error bodies, dropped connections.

A request asks for a failure with the header ``x-simulator-fail`` or a model named ``sim-fail-...``
(:func:`requested_failure`). Errors use each provider's error JSON (:func:`error_body`);
``disconnect`` raises :class:`Drop` (uvicorn's log of it is silenced); ``timeout`` holds the request
(:func:`hold`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from fleetledger.testing.simulator.common import Receive, Send, dumps

__all__ = [
    "DEFAULT_MESSAGES",
    "error_body",
    "send_error",
    "requested_failure",
    "hold",
    "Drop",
    "silence_simulated_drops",
]


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


DEFAULT_MESSAGES = {
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
        return dumps(payload)
    kind, code = _OPENAI_ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


async def send_error(
    send: Send, provider: str, status: int, message: str, request_id: str, param: str | None = None
) -> None:
    body = error_body(provider, status, message, param=param, request_id=request_id)
    name = b"request-id" if provider == "anthropic" else b"x-request-id"
    headers = [(b"content-type", b"application/json"), (name, request_id.encode())]
    if provider == "anthropic" and status in (429, 529):
        headers.append((b"x-should-retry", b"true"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def requested_failure(headers: Mapping[str, str], model: str) -> str | None:
    """The failure a request asks for: header ``x-simulator-fail``, else a ``sim-fail-<failure>`` model."""
    failure = headers.get("x-simulator-fail") or None
    if failure is None and model.startswith("sim-fail-"):
        failure = model[len("sim-fail-") :].split("-", 1)[0]
    return failure


async def hold(receive: Receive, hang_s: float) -> bool:
    """Hold the request until the client disconnects (True) or ``hang_s`` passes (False)."""
    try:
        async with asyncio.timeout(hang_s):
            while (await receive())["type"] != "http.disconnect":
                pass
        return True
    except TimeoutError:
        return False


class Drop(Exception):
    """Raised to drop the connection (uvicorn closes the transport once the response has started)."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, Drop)


_quiet = _QuietDrops()


def silence_simulated_drops() -> None:
    logger = logging.getLogger("uvicorn.error")
    if _quiet not in logger.filters:
        logger.addFilter(_quiet)
