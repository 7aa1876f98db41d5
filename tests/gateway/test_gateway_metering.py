"""Usage capture from streams: any split of the upstream bytes forwards the same events and usage."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetledger.gateway.metering import StreamMeter


def _sse(*events: dict, done: bool = False, named: bool = False, crlf: bool = False) -> bytes:
    parts = []
    for event in events:
        head = f"event: {event['type']}\n" if named else ""
        parts.append(f"{head}data: {json.dumps(event)}\n\n")
    if done:
        parts.append("data: [DONE]\n\n")
    text = "".join(parts)
    return (text.replace("\n", "\r\n") if crlf else text).encode()


CHAT_CHUNKS = [
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": "Hel"}}],
        "usage": None,
    },
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": "lo"}}],
        "usage": None,
    },
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o",
        "choices": [],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 2,
            "total_tokens": 14,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    },
]
ANTHROPIC_EVENTS = [
    {
        "type": "message_start",
        "message": {
            "id": "m1",
            "type": "message",
            "model": "claude-sonnet-4-6",
            "usage": {
                "input_tokens": 10,
                "cache_read_input_tokens": 20,
                "cache_creation_input_tokens": 0,
                "output_tokens": 1,
            },
        },
    },
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}},
    {"type": "message_stop"},
]


def _feed(meter: StreamMeter, data: bytes, cuts: list[int]) -> bytes:
    out = b""
    last = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        out += meter.feed(data[last:cut])
        last = cut
    return out + meter.flush()


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12), crlf=st.booleans())
def test_any_split_forwards_the_same_events_and_usage(cuts, crlf):
    chat = _sse(*CHAT_CHUNKS, done=True, crlf=crlf)
    meter = StreamMeter("chat", "openai")
    assert _feed(meter, chat, [c % (len(chat) + 1) for c in cuts]) == chat.replace(b"\r\n", b"\n")
    assert meter.usage is not None and meter.usage.units["input_tokens"] == 12
    assert meter.usage.units["cache_read_tokens"] == 4 and meter.usage.units["output_tokens"] == 2

    hidden = StreamMeter("chat", "openai", hide_usage_chunk=True)
    out = _feed(hidden, chat, [c % (len(chat) + 1) for c in cuts])
    assert b'"usage": {' not in out and out.count(b"data:") == 3  # two content chunks and [DONE]
    assert hidden.usage is not None and hidden.usage.units["output_tokens"] == 2

    messages = _sse(*ANTHROPIC_EVENTS, named=True, crlf=crlf)
    meter = StreamMeter("messages", "anthropic")
    assert _feed(meter, messages, [c % (len(messages) + 1) for c in cuts]) == messages.replace(b"\r\n", b"\n")
    usage = meter.usage
    assert usage is not None and usage.model == "claude-sonnet-4-6"
    # Anthropic input excludes cache reads; the ledger's input_tokens includes them.
    assert (usage.units["input_tokens"], usage.units["cache_read_tokens"], usage.units["output_tokens"]) == (30, 20, 7)


def test_a_stream_cut_before_usage_reports_none_and_after_start_reports_the_start():
    assert StreamMeter("chat", "openai").usage is None
    chat = StreamMeter("chat", "openai")
    chat.feed(_sse(*CHAT_CHUNKS[:2]))
    assert chat.usage is None
    cut = StreamMeter("messages", "anthropic")
    cut.feed(_sse(*ANTHROPIC_EVENTS[:2], named=True))
    assert cut.usage is not None and cut.usage.units["output_tokens"] == 1


def test_responses_stream_usage_from_the_completed_event():
    completed = {
        "type": "response.completed",
        "response": {
            "id": "r1",
            "object": "response",
            "model": "gpt-4.1-mini",
            "output": [],
            "usage": {"input_tokens": 9, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 0}},
        },
    }
    meter = StreamMeter("responses", "openai")
    meter.feed(_sse({"type": "response.created", "response": {"id": "r1"}}, completed, named=True))
    assert meter.usage is not None and (meter.usage.units["input_tokens"], meter.usage.units["output_tokens"]) == (9, 3)


def test_budget_estimates_count_inline_images_per_image_not_per_byte():
    from fleetledger.gateway.reservations import _text_size

    image = "data:image/png;base64," + "A" * 400_000
    body = {
        "model": "gpt-4o",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": image}},
                ],
            }
        ],
    }
    size, media = _text_size(body)
    assert media == 1 and size < 300
    anthropic_body = {"source": {"type": "base64", "media_type": "image/png", "data": "B" * 100_000}}
    assert _text_size(anthropic_body)[1] == 1
    plain = {"messages": [{"role": "user", "content": "é" * 10}]}
    # Text counts by its UTF-8 bytes (plus the JSON around it), never less than the text itself.
    size, media = _text_size(plain)
    assert media == 0 and size >= len(("é" * 10).encode())
