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

Modules: ``usage`` (:func:`simulated_usage`, :func:`normalized_usage`), ``openai`` and ``anthropic``
(each format's usage rules and payloads), ``common`` (what they share: token rules, the request,
the answer text), ``failures`` (failure injection and error bodies), ``app`` (the ASGI app),
``server`` (uvicorn in a thread). Every public name is importable from here.
"""

from fleetledger.testing.simulator.anthropic import MODELS_ANTHROPIC
from fleetledger.testing.simulator.app import MAX_BODY_BYTES, SimulatorApp, create_simulator_app
from fleetledger.testing.simulator.common import DEFAULT_MAX_OUTPUT, SimulatorInputError
from fleetledger.testing.simulator.failures import error_body
from fleetledger.testing.simulator.openai import DEFAULT_DIMENSIONS, MODELS_OPENAI
from fleetledger.testing.simulator.server import KEEP_ALIVE_S, RunningSimulator, run_simulator_in_thread
from fleetledger.testing.simulator.usage import normalized_usage, simulated_usage

__all__ = [
    "RunningSimulator",
    "SimulatorApp",
    "SimulatorInputError",
    "create_simulator_app",
    "normalized_usage",
    "run_simulator_in_thread",
    "simulated_usage",
    "error_body",
    "KEEP_ALIVE_S",
    "MAX_BODY_BYTES",
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_DIMENSIONS",
    "MODELS_OPENAI",
    "MODELS_ANTHROPIC",
]
