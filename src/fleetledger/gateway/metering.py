"""Usage capture from upstream responses: whole JSON bodies and server-sent event streams.

The stream reader sees each upstream chunk once, splits it into SSE events, forwards every event
as soon as it is complete (no buffering of the stream), and parses JSON only for the few events
that carry usage:

* OpenAI chat: the final chunk with ``usage`` (the gateway sets ``stream_options.include_usage``
  when the client did not, and then drops that usage-only chunk so the client sees what it asked for);
* OpenAI Responses: ``response.completed`` / ``response.incomplete`` / ``response.failed``;
* Anthropic: ``message_start`` (input and cache tokens) merged with ``message_delta`` (output
  tokens, cumulative).
"""

from __future__ import annotations

import json
from typing import Any

from fleetledger.core.errors import InvalidInput
from fleetledger.ingest.responses import ExtractedUsage, extract_usage

__all__ = ["StreamMeter", "usage_from_body"]

_RESPONSE_DONE = (b"response.completed", b"response.incomplete", b"response.failed")


def usage_from_body(body: bytes, provider: str) -> ExtractedUsage | None:
    """The usage in a whole (non-streamed) response body, or None when it has none."""
    try:
        return extract_usage(body, provider=provider)
    except InvalidInput:
        return None


def _data(event: bytes) -> bytes | None:
    lines = [line[5:].lstrip() for line in event.splitlines() if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


class StreamMeter:
    """Feed upstream bytes in; get the bytes to forward out; read ``usage`` at the end."""

    def __init__(self, endpoint: str, provider: str, *, hide_usage_chunk: bool = False) -> None:
        self.endpoint = endpoint
        self.provider = provider
        self.hide_usage_chunk = hide_usage_chunk
        self._buffer = b""
        self._anthropic: dict[str, Any] | None = None
        self._final: Any = None
        self.events = 0

    def feed(self, chunk: bytes) -> bytes:
        """Complete events of ``chunk`` (and earlier partial data) to forward now."""
        data = self._buffer + chunk
        if b"\r\n" in data:
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self._buffer = data
            return b""
        complete, self._buffer = data[: end + 2], data[end + 2 :]
        if self.endpoint == "embeddings":
            return complete
        out = []
        for event in complete.split(b"\n\n"):
            if not event:
                continue
            self.events += 1
            if self._inspect(event):
                out.append(event)
        return b"\n\n".join(out) + b"\n\n" if out else b""

    def flush(self) -> bytes:
        """Whatever partial event remains when the upstream closed."""
        rest, self._buffer = self._buffer, b""
        return rest

    def _inspect(self, event: bytes) -> bool:
        """Read usage from ``event``; False when the event is to be hidden from the client."""
        if self.endpoint == "chat":
            if b'"usage":{' not in event and b'"usage": {' not in event:
                return True
            payload = self._json(event)
            if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
                self._final = payload
                if self.hide_usage_chunk and not payload.get("choices"):
                    return False
            return True
        if self.endpoint == "responses":
            if any(marker in event for marker in _RESPONSE_DONE):
                payload = self._json(event)
                if isinstance(payload, dict) and isinstance(payload.get("response"), dict):
                    self._final = payload
            return True
        if self.endpoint == "messages":
            if b"message_start" in event:
                payload = self._json(event)
                if isinstance(payload, dict) and payload.get("type") == "message_start":
                    message = payload.get("message")
                    if isinstance(message, dict):
                        self._anthropic = {**message, "usage": dict(message.get("usage") or {})}
            elif b"message_delta" in event and self._anthropic is not None:
                payload = self._json(event)
                if isinstance(payload, dict) and payload.get("type") == "message_delta":
                    usage = payload.get("usage")
                    if isinstance(usage, dict):
                        # Delta counts are cumulative; a null leaves the start's value.
                        self._anthropic["usage"].update({k: v for k, v in usage.items() if v is not None})
            return True
        return True

    @staticmethod
    def _json(event: bytes) -> Any:
        data = _data(event)
        if data is None or data == b"[DONE]":
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None

    @property
    def usage(self) -> ExtractedUsage | None:
        """The usage the stream reported so far (None when it reported none)."""
        source = self._anthropic if self.endpoint == "messages" else self._final
        if source is None:
            return None
        if self.endpoint == "messages":
            source = {**source, "type": "message"}
        try:
            return extract_usage(source, provider=self.provider)
        except InvalidInput:
            return None
