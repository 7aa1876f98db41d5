"""The simulated Anthropic API: messages and token counting (usage and payloads).

Cache (see :mod:`fleetledger.testing.simulator`): the prompt prefix up to and including the last
block (tool, system block or message block) carrying ``cache_control`` is read from the cache, or
written to it when any text contains ``[cache-miss]`` (1-hour writes when that ``cache_control``
has ``"ttl": "1h"``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fleetledger.testing.simulator.common import (
    Request,
    SimulatorInputError,
    Text,
    dumps,
    natural_output,
    output_cap,
    part_text,
    text_tokens,
)

__all__ = [
    "MODELS_ANTHROPIC",
    "AnthropicCount",
    "anthropic_count",
    "messages_usage",
    "message_object",
    "messages_stream",
]


MODELS_ANTHROPIC = ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7")


@dataclass(frozen=True)
class AnthropicCount:
    """Input tokens of a messages request, and its cached prefix."""

    total: int
    prefix: int
    ttl_1h: bool
    miss: bool


def anthropic_count(body: Mapping[str, Any]) -> AnthropicCount:
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
            total += text_tokens(json.dumps(plain, sort_keys=True, separators=(",", ":")))
            mark(tool)
    system = body.get("system")
    if isinstance(system, str):
        total += text_tokens(system)
        texts.append(system)
    elif isinstance(system, list):
        for block in system:
            text = part_text(block)
            total += text_tokens(text)
            texts.append(text)
            mark(block)
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in ("user", "assistant"):
            raise SimulatorInputError(f"messages.{i}.role: must be 'user' or 'assistant'", f"messages.{i}")
        total += 4
        content = message.get("content")
        if isinstance(content, str):
            total += text_tokens(content)
            texts.append(content)
        elif isinstance(content, list):
            for block in content:
                text = part_text(block)
                total += text_tokens(text)
                texts.append(text)
                mark(block)
        else:
            raise SimulatorInputError(f"messages.{i}.content: must be a string or an array of blocks", f"messages.{i}")
    return AnthropicCount(total, prefix, ttl_1h, "[cache-miss]" in "".join(texts))


def messages_usage(body: Mapping[str, Any]) -> dict[str, Any]:
    """The usage object of an Anthropic messages request."""
    count = anthropic_count(body)
    if "max_tokens" not in body:
        raise SimulatorInputError("max_tokens: Field required", "max_tokens")
    output = min(output_cap(body, "max_tokens"), natural_output(count.total))
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


def message_object(writer: Text, request: Request, usage: Mapping[str, Any]) -> dict[str, Any]:
    body = request.body
    total_input = usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    capped = usage["output_tokens"] < natural_output(total_input)
    return {
        "id": f"msg_{request.request_id}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": "".join(writer.words(request, usage["output_tokens"]))}],
        "stop_reason": "max_tokens" if capped else "end_turn",
        "stop_sequence": None,
        "usage": dict(usage),
    }


def messages_stream(writer: Text, request: Request, usage: Mapping[str, Any]) -> Iterator[bytes]:
    def event(kind: str, **fields: Any) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + dumps({"type": kind, **fields}) + b"\n\n"

    final = message_object(writer, request, usage)
    start = {**final, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    yield event("message_start", message=start)
    yield event("content_block_start", index=0, content_block={"type": "text", "text": ""})
    yield event("ping")
    for piece in writer.chunks(request, usage["output_tokens"]):
        yield event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
    yield event("content_block_stop", index=0)
    delta = {"stop_reason": final["stop_reason"], "stop_sequence": None}
    yield event("message_delta", delta=delta, usage={"output_tokens": usage["output_tokens"]})
    yield event("message_stop")
