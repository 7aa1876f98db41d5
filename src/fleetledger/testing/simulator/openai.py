"""The simulated OpenAI API: chat completions, responses and embeddings (usage and payloads).

Usage rules (see :mod:`fleetledger.testing.simulator`): each message adds 4 tokens, each request 3;
cache reads are half the input tokens when the body has ``prompt_cache_key`` or any input text
contains ``[cache]``; with ``reasoning_effort`` (chat) or ``reasoning.effort`` (responses) set and
not ``"none"``, half the output tokens are reasoning tokens.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import struct
import time
from collections.abc import Iterator, Mapping
from typing import Any

from fleetledger.testing.simulator.common import (
    Request,
    SimulatorInputError,
    Text,
    content_text,
    dumps,
    natural_output,
    output_cap,
    text_tokens,
)

__all__ = [
    "MODELS_OPENAI",
    "DEFAULT_DIMENSIONS",
    "chat_usage",
    "responses_usage",
    "embeddings_usage",
    "embeddings_object",
    "chat_completion",
    "chat_stream",
    "response_object",
    "responses_stream",
]


MODELS_OPENAI = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "o4-mini", "text-embedding-3-small")


#: Embedding size when the request does not ask for ``dimensions``.
DEFAULT_DIMENSIONS = 16


def _chat_input(body: Mapping[str, Any]) -> tuple[int, str]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SimulatorInputError("messages must be a non-empty array", "messages")
    total = 3
    texts = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise SimulatorInputError(f"messages[{i}] must be an object with a role", f"messages[{i}]")
        text = content_text(message.get("content"))
        name = message.get("name")
        total += 4 + text_tokens(text) + (text_tokens(name) if isinstance(name, str) else 0)
        texts.append(text)
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        total += text_tokens(json.dumps(tools, sort_keys=True, separators=(",", ":")))
    return total, "".join(texts)


def _responses_input(body: Mapping[str, Any]) -> tuple[int, str]:
    items = body.get("input")
    instructions = body.get("instructions")
    total = 3
    texts = []
    if isinstance(instructions, str):
        total += 4 + text_tokens(instructions)
        texts.append(instructions)
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise SimulatorInputError("input must be a string or a non-empty array of items", "input")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise SimulatorInputError(f"input[{i}] must be an object", f"input[{i}]")
        if "content" in item:
            text = content_text(item.get("content"))
        else:
            output = item.get("output")  # function_call_output
            text = output if isinstance(output, str) else content_text(item.get("arguments"))
        total += 4 + text_tokens(text)
        texts.append(text)
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        total += text_tokens(json.dumps(tools, sort_keys=True, separators=(",", ":")))
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


def chat_usage(body: Mapping[str, Any]) -> dict[str, Any]:
    """The usage object of a chat completions request."""
    if body.get("n") not in (None, 1):
        raise SimulatorInputError("the simulator answers n=1 only", "n")
    input_tokens, text = _chat_input(body)
    output = min(output_cap(body, "max_completion_tokens", "max_tokens"), natural_output(input_tokens))
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


def responses_usage(body: Mapping[str, Any]) -> dict[str, Any]:
    """The usage object of a responses request."""
    input_tokens, text = _responses_input(body)
    output = min(output_cap(body, "max_output_tokens"), natural_output(input_tokens))
    reasoning_param = body.get("reasoning")
    effort = reasoning_param.get("effort") if isinstance(reasoning_param, Mapping) else None
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": _openai_cached(body, text, input_tokens)},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": _reasoning(effort, output)},
        "total_tokens": input_tokens + output,
    }


def embeddings_usage(body: Mapping[str, Any]) -> dict[str, Any]:
    """The usage object of an embeddings request."""
    tokens = sum(text_tokens(item) if isinstance(item, str) else len(item) for item in _embedding_inputs(body))
    return {"prompt_tokens": tokens, "total_tokens": tokens}


def _output_tokens_of(kind: str, usage: Mapping[str, Any]) -> tuple[int, int]:
    """(visible text tokens, total output tokens) of a usage object."""
    if kind == "chat":
        total = usage["completion_tokens"]
        return total - usage["completion_tokens_details"]["reasoning_tokens"], total
    if kind == "responses":
        total = usage["output_tokens"]
        return total - usage["output_tokens_details"]["reasoning_tokens"], total
    return usage["output_tokens"], usage["output_tokens"]


def embeddings_object(body: Mapping[str, Any], usage: Mapping[str, Any]) -> dict[str, Any]:
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


def chat_completion(writer: Text, request: Request, usage: Mapping[str, Any]) -> dict[str, Any]:
    body = request.body
    visible, total = _output_tokens_of("chat", usage)
    capped = total < natural_output(usage["prompt_tokens"])
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
                    "content": "".join(writer.words(request, visible)),
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "length" if capped else "stop",
            }
        ],
        "usage": dict(usage),
    }


def chat_stream(writer: Text, request: Request, usage: Mapping[str, Any]) -> Iterator[bytes]:
    body = request.body
    options = body.get("stream_options")
    include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
    visible, total = _output_tokens_of("chat", usage)
    capped = total < natural_output(usage["prompt_tokens"])
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
        return b"data: " + dumps({**head, "choices": [choice], **extra}) + b"\n\n"

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in writer.chunks(request, visible):
        yield chunk({"content": piece})
    yield chunk({}, "length" if capped else "stop")
    if include_usage:
        yield b"data: " + dumps({**head, "choices": [], "usage": dict(usage)}) + b"\n\n"
    yield b"data: [DONE]\n\n"


def response_object(
    writer: Text, request: Request, usage: Mapping[str, Any] | None, status: str, text: str | None = None
) -> dict[str, Any]:
    body = request.body
    output: list[dict[str, Any]] = []
    incomplete = None
    if usage is not None:
        visible, total = _output_tokens_of("responses", usage)
        if text is None:
            text = "".join(writer.words(request, visible))
        output = [
            {
                "type": "message",
                "id": f"msg_{request.request_id}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
            }
        ]
        if total < natural_output(usage["input_tokens"]):
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


def responses_stream(writer: Text, request: Request, usage: Mapping[str, Any]) -> Iterator[bytes]:
    sequence = itertools.count()
    item_id = f"msg_{request.request_id}"

    def event(kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": next(sequence), **fields}
        return b"event: " + kind.encode() + b"\ndata: " + dumps(data) + b"\n\n"

    visible, _ = _output_tokens_of("responses", usage)
    pieces = writer.chunks(request, visible)
    text = "".join(pieces)
    in_progress = response_object(writer, request, None, "in_progress")
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
    yield event("response.output_text.done", item_id=item_id, output_index=0, content_index=0, text=text, logprobs=[])
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    yield event("response.content_part.done", item_id=item_id, output_index=0, content_index=0, part=part)
    final = response_object(writer, request, usage, "completed", text)
    yield event("response.output_item.done", output_index=0, item=final["output"][0])
    yield event("response.incomplete" if final["status"] == "incomplete" else "response.completed", response=final)
