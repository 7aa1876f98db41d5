"""Answering a gateway request from the response cache, and storing upstream answers in it (step 4).

A hit is answered without calling the upstream (a streaming client gets the whole answer replayed as
events) and recorded at no cost, with what it saved (tags ``gateway.cache`` and
``gateway.saved_usd``). Lookups and writes go through :class:`~fleetledger.gateway.cache.ResponseCaching`.
"""

from __future__ import annotations

import time
from typing import Any

from fleetledger.core.money import format_usd
from fleetledger.core.time import to_us
from fleetledger.core.usage import parse_event
from fleetledger.gateway.cache.codec import CachedResponse
from fleetledger.gateway.cache.lookup import ResponseCaching
from fleetledger.gateway.calls import Call, Send, call_tags, response_headers, send_bytes
from fleetledger.gateway.replay import replay_stream
from fleetledger.gateway.upstream import UpstreamResponse
from fleetledger.ledger.facade import Ledger

__all__ = ["CachedAnswers"]

_CATEGORY = {"embeddings": "embedding"}


class CachedAnswers:
    """The gateway's side of the response cache: serve a hit, store an upstream answer."""

    def __init__(self, ledger: Ledger, caching: ResponseCaching) -> None:
        self.ledger = ledger
        self.caching = caching

    async def serve(self, call: Call, send: Send) -> bool:
        """Answer ``call`` from the cache when it holds the answer; False on a miss."""
        assert call.key is not None
        namespace = call.key.key_id
        call.cache_key = self.caching.key(call.path, call.body, namespace)
        hit = await self.caching.lookup(
            call.cache_key,
            call.path,
            call.body,
            namespace=namespace,
            model=call.model,
            mode=call.cache_mode,
            threshold=call.cache_threshold,
        )
        if hit is None:
            return False
        found, kind = hit
        body, content_type = found.body, found.headers.get("content-type", "application/json")
        if call.stream:
            # The cache holds whole answers; a streaming client gets it replayed as events.
            replayed = replay_stream(call.endpoint, found.body, include_usage=not call.hide_usage_chunk)
            if replayed is None:
                return False
            body, content_type = replayed, "text/event-stream; charset=utf-8"
        call.upstream = call.upstream or ""
        event = parse_event(
            {
                **call.key.dims,
                "event_id": f"gw-{call.request_id}",
                "timestamp": self.ledger.clock(),
                "provider": found.provider,
                "model": found.model,
                "category": _CATEGORY.get(call.endpoint, "llm_inference"),
                "prompt_hash": call.cache_key,
                "latency_ms": round((time.perf_counter() - call.started) * 1000, 3),
                "tags": {
                    **call_tags(call),
                    "gateway.cache": kind,
                    "gateway.saved_usd": format_usd(found.cost_nanos),
                },
            }
        )
        self.ledger.record_event(event, source="gateway")
        headers = [(b"content-type", content_type.encode())]
        headers += response_headers(call)
        headers += [
            (b"x-fleetledger-cache", kind.encode()),
            (b"x-fleetledger-cost-usd", b"0.000000000"),
            (b"x-fleetledger-saved-usd", format_usd(found.cost_nanos).encode()),
        ]
        await send_bytes(send, found.status, body, None, headers)
        return True

    async def store(
        self, call: Call, body: bytes, response: UpstreamResponse, provider: str, usage: Any, cost: int
    ) -> None:
        """Store the upstream's answer to ``call`` (after it was sent: runs in the background)."""
        assert call.key is not None and call.cache_key is not None
        entry = CachedResponse(
            status=response.status_code,
            headers={"content-type": response.header("content-type") or "application/json"},
            body=body,
            provider=provider,
            model=usage.model or call.model,
            cost_nanos=cost,
            usage={k: int(v) for k, v in usage.units.items()},
            created_us=to_us(self.ledger.clock()),
        )
        await self.caching.store(
            call.cache_key,
            call.path,
            call.body,
            entry,
            namespace=call.key.key_id,
            model=call.model,
            mode=call.cache_mode,
            ttl_s=call.cache_ttl_s,
        )
