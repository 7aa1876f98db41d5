"""Deterministic, pure usage: what the simulator reports for a request body, on the wire and normalized.

:func:`simulated_usage` gives exactly the usage object the simulator puts on the wire for a request
body, and :func:`normalized_usage` the same in fleetledger units (what a meter should record).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleetledger.testing.simulator.anthropic import messages_usage
from fleetledger.testing.simulator.common import SimulatorInputError, require_model
from fleetledger.testing.simulator.openai import chat_usage, embeddings_usage, responses_usage

__all__ = ["simulated_usage", "normalized_usage"]


_ENDPOINTS = {
    "chat": "chat",
    "chat.completions": "chat",
    "chat/completions": "chat",
    "responses": "responses",
    "embeddings": "embeddings",
    "messages": "messages",
}


def _endpoint(endpoint: str) -> str:
    key = endpoint.strip().strip("/")
    if key.startswith("v1/"):
        key = key[3:]
    try:
        return _ENDPOINTS[key]
    except KeyError:
        raise ValueError(f"unknown endpoint {endpoint!r}: one of chat, responses, embeddings, messages") from None


def simulated_usage(endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The usage object the simulator reports for ``body`` at ``endpoint``, exactly as on the wire.

    ``endpoint`` is ``chat``, ``responses``, ``embeddings`` or ``messages`` (or the path, e.g.
    ``/v1/chat/completions``). Streaming and non-streaming report the same usage. Raises
    :class:`SimulatorInputError` for a body the provider would reject.
    """
    kind = _endpoint(endpoint)
    if not isinstance(body, Mapping):
        raise SimulatorInputError("the request body must be a JSON object")
    require_model(body)
    if kind == "embeddings":
        return embeddings_usage(body)
    if kind == "messages":
        return messages_usage(body)
    if kind == "chat":
        return chat_usage(body)
    return responses_usage(body)


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
