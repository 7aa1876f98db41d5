"""What both simulated wire formats share: ASGI types, the token rules, the request, the answer text.

A text of ``n`` characters is ``ceil(n / 4)`` tokens (:func:`text_tokens`); the natural length of an
answer is ``16 + (input_tokens * 37) % 97`` tokens (:func:`natural_output`), capped by the
request's maximum (:func:`output_cap`). Answer texts are deterministic words (:class:`Text`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Scope",
    "Message",
    "Receive",
    "Send",
    "DEFAULT_MAX_OUTPUT",
    "SimulatorInputError",
    "Request",
    "Text",
    "text_tokens",
    "part_text",
    "content_text",
    "require_model",
    "output_cap",
    "natural_output",
    "dumps",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


#: Output tokens when the request sets no cap (the natural length never reaches it).
DEFAULT_MAX_OUTPUT = 4096


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


def text_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def part_text(part: Any) -> str:
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
        return content_text(content)
    return ""


def content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part_text(p) for p in content)
    return ""


def require_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise SimulatorInputError("you must provide a model parameter", "model")
    return model


def output_cap(body: Mapping[str, Any], *names: str) -> int:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SimulatorInputError(f"{name} must be an integer >= 1, got {value!r}", name)
        return value
    return DEFAULT_MAX_OUTPUT


def natural_output(input_tokens: int) -> int:
    return 16 + (input_tokens * 37) % 97


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass
class Request:
    """One request as the simulator received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    provider: str
    request_id: str


@dataclass(frozen=True)
class Text:
    """The answer text: deterministic words (varied by ``seed``), ``chunk_tokens`` per stream event."""

    seed: int
    chunk_tokens: int

    def words(self, request: Request, count: int) -> list[str]:
        start = self.seed + len(request.request_id)
        return [_WORDS[(start + i) % len(_WORDS)] + " " for i in range(count)]

    def chunks(self, request: Request, count: int) -> list[str]:
        words = self.words(request, count)
        return ["".join(words[i : i + self.chunk_tokens]) for i in range(0, len(words), self.chunk_tokens)]
