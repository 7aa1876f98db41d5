"""The providers' wire formats the gateway speaks: error bodies and the request fields it reads.

Errors the gateway itself raises are shaped like the provider's own, so SDKs raise their usual
exceptions (``openai.RateLimitError``, ``anthropic.PermissionDeniedError``...) with our message::

    OpenAI:    {"error": {"message", "type", "param", "code"}}
    Anthropic: {"type": "error", "error": {"type", "message"}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["GatewayError", "error_body", "OPENAI", "ANTHROPIC", "ENDPOINTS", "max_output_field"]

OPENAI = "openai"
ANTHROPIC = "anthropic"

#: path -> (wire format, endpoint name used for metering and the cache key)
ENDPOINTS: dict[str, tuple[str, str]] = {
    "/v1/chat/completions": (OPENAI, "chat"),
    "/v1/responses": (OPENAI, "responses"),
    "/v1/embeddings": (OPENAI, "embeddings"),
    "/v1/messages": (ANTHROPIC, "messages"),
}

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    504: "api_error",
    529: "overloaded_error",
}


class GatewayError(Exception):
    """An error the gateway answers itself, in the caller's provider shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.param = param
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def body(self, wire: str) -> bytes:
        return error_body(wire, self.status, self.code, self.message, param=self.param, extra=self.extra)


def error_body(
    wire: str,
    status: int,
    code: str,
    message: str,
    *,
    param: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    if wire == ANTHROPIC:
        error: dict[str, Any] = {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}
        if extra:
            error["fleetledger"] = {"code": code, **extra}
        return json.dumps({"type": "error", "error": error}).encode()
    error = {"message": message, "type": _OPENAI_TYPES.get(status, "api_error"), "param": param, "code": code}
    if extra:
        error["fleetledger"] = dict(extra)
    return json.dumps({"error": error}).encode()


def max_output_field(endpoint: str, body: Mapping[str, Any]) -> str | None:
    """The request field that caps output tokens (None for embeddings)."""
    if endpoint == "chat":
        return "max_tokens" if "max_tokens" in body and "max_completion_tokens" not in body else "max_completion_tokens"
    if endpoint == "responses":
        return "max_output_tokens"
    if endpoint == "messages":
        return "max_tokens"
    return None
