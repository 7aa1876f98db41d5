"""Replay a cached (non-streamed) answer as the server-sent events a streaming client expects.

Only plain-text answers are replayed: OpenAI chat completions with string content and Anthropic
messages made of text blocks. Anything else (tool calls, thinking blocks, Responses API streams)
returns None and the request goes to the upstream as usual.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["replay_stream"]


def _event(data: Any, name: str | None = None) -> bytes:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _chat(body: dict[str, Any], include_usage: bool) -> bytes | None:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return None
    base = {
        "id": body.get("id"),
        "object": "chat.completion.chunk",
        "created": body.get("created", 0),
        "model": body.get("model"),
        "system_fingerprint": body.get("system_fingerprint"),
    }
    out = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict) or message.get("tool_calls") or not isinstance(message.get("content"), str):
            return None
        index = choice.get("index", 0)
        out.append(_event({**base, "choices": [{"index": index, "delta": {"role": "assistant", "content": ""}}]}))
        out.append(_event({**base, "choices": [{"index": index, "delta": {"content": message["content"]}}]}))
        finish = {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason", "stop")}
        out.append(_event({**base, "choices": [finish]}))
    if include_usage and isinstance(body.get("usage"), dict):
        out.append(_event({**base, "choices": [], "usage": body["usage"]}))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def _messages(body: dict[str, Any]) -> bytes | None:
    content = body.get("content")
    if body.get("type") != "message" or not isinstance(content, list):
        return None
    if not all(isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str) for b in content):
        return None
    usage = dict(body.get("usage") or {})
    start = {**body, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}
    out = [_event({"type": "message_start", "message": start}, "message_start")]
    for index, block in enumerate(content):
        out.append(
            _event(
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            )
        )
        delta = {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": block["text"]}}
        out.append(_event(delta, "content_block_delta"))
        out.append(_event({"type": "content_block_stop", "index": index}, "content_block_stop"))
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": body.get("stop_reason"), "stop_sequence": body.get("stop_sequence")},
        "usage": {"output_tokens": usage.get("output_tokens", 0)},
    }
    out.append(_event(delta, "message_delta"))
    out.append(_event({"type": "message_stop"}, "message_stop"))
    return b"".join(out)


def replay_stream(endpoint: str, cached_body: bytes, *, include_usage: bool) -> bytes | None:
    """The SSE body for a cached answer, or None when it cannot be replayed faithfully."""
    try:
        body = json.loads(cached_body)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    if endpoint == "chat":
        return _chat(body, include_usage)
    if endpoint == "messages":
        return _messages(body)
    return None
