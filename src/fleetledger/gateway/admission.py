"""Admission of a gateway request: who calls, with what body, within which limits, to which upstream.

Steps 1 to 3 of :mod:`fleetledger.gateway.proxy`: the virtual key (from the in-memory key book,
looked up again once when a key is unknown: it may have been created a moment ago), the body size
limit, JSON and ``model``, the key's rate limit (a token bucket per key) and model allow-list, the
policies for the key's scope (downgrade, max output tokens, cache, provider switch) and the route to
an upstream. A refusal is a :class:`~fleetledger.gateway.wire.GatewayError`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

import anyio
import anyio.to_thread

from fleetledger.gateway.calls import Call, ClientGone, Receive
from fleetledger.gateway.config import GatewayConfig
from fleetledger.gateway.keys import KeyBook, VirtualKey
from fleetledger.gateway.policies import PolicyBook
from fleetledger.gateway.wire import ANTHROPIC, GatewayError, max_output_field
from fleetledger.ledger.facade import Ledger

__all__ = ["Admission"]


class Admission:
    """Authenticates, reads and checks a request; applies the policies and picks the upstream."""

    def __init__(self, ledger: Ledger, config: GatewayConfig, keys: KeyBook, policies: PolicyBook) -> None:
        self.ledger = ledger
        self.config = config
        self.keys = keys
        self.policies = policies
        self._rate: dict[str, list[float]] = {}
        self._last_miss_refresh = 0.0

    async def admit(self, call: Call, receive: Receive) -> VirtualKey:
        """Steps 1-3 of a completion (see :mod:`fleetledger.gateway.proxy`): the key, the body, the key's
        limits, the policies and the route; raises :class:`GatewayError` when the call is refused."""
        key = call.key = await self.authenticate(call)
        await self.read_body(call, receive)
        self.rate_limit(key)
        if not key.allows(call.model):
            allowed = ", ".join(key.allowed_models or ())
            raise GatewayError(
                403,
                "model_not_allowed",
                f"virtual key {key.key_id} may not use model {call.model!r}; allowed: {allowed}",
                param="model",
            )
        self.apply_policies(call, key)
        self.check_route(call)
        if call.stream and call.endpoint == "chat":
            options = call.body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                call.body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
                call.hide_usage_chunk = True
                call.changed = True
        return key

    async def authenticate(self, call: Call) -> VirtualKey:
        auth = call.headers.get(b"authorization", b"").decode("latin-1").strip()
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        api_key = call.headers.get(b"x-api-key", b"").decode("latin-1").strip()
        presented = (api_key or bearer) if call.wire == ANTHROPIC else (bearer or api_key)
        if not presented:
            where = "x-api-key" if call.wire == ANTHROPIC else "Authorization: Bearer"
            raise GatewayError(
                401,
                "missing_api_key",
                f"no virtual key: send {where} <key> (create one: fleetledger gateway keys create)",
            )
        key = self.keys.find(presented)
        if key is None and time.monotonic() - self._last_miss_refresh > 0.2:
            # A key created a moment ago by another process: look again before refusing.
            self._last_miss_refresh = time.monotonic()
            await anyio.to_thread.run_sync(self.keys.refresh)
            key = self.keys.find(presented)
        if key is None:
            raise GatewayError(401, "invalid_api_key", "unknown or revoked virtual key")
        return key

    def rate_limit(self, key: VirtualKey) -> None:
        limit = key.rate_limit_rpm
        if not limit:
            return
        # A token bucket per key: up to ``limit`` at once, refilled at limit/60 per second (no
        # double burst at a minute boundary, as a fixed window would allow).
        now = time.monotonic()
        slot = self._rate.get(key.key_id)
        if slot is None:
            slot = self._rate[key.key_id] = [float(limit), now]
        slot[0] = min(float(limit), slot[0] + (now - slot[1]) * limit / 60)
        slot[1] = now
        if slot[0] < 1:
            retry = max(1, math.ceil((1 - slot[0]) * 60 / limit))
            raise GatewayError(
                429,
                "rate_limit_exceeded",
                f"virtual key {key.key_id} is limited to {limit} requests per minute; retry in {retry}s",
                headers={"retry-after": str(retry)},
            )
        slot[0] -= 1

    async def read_body(self, call: Call, receive: Receive) -> None:
        limit = self.config.limits.max_body_bytes
        length = call.headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise GatewayError(
                413, "request_too_large", f"request body of {int(length)} bytes is over the {limit}-byte limit"
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise GatewayError(413, "request_too_large", f"request body is over the {limit}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        call.raw = b"".join(chunks)
        try:
            body = json.loads(call.raw)
        except ValueError as exc:
            raise GatewayError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise GatewayError(400, "invalid_json", f"request body must be a JSON object, got {type(body).__name__}")
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise GatewayError(400, "missing_model", "model: required (a non-empty string)", param="model")
        call.body = body
        call.requested_model = call.model = model
        call.stream = body.get("stream") is True

    def upstream_for(self, wire: str) -> Callable[[str], str | None]:
        def upstream_for(model: str) -> str | None:
            route = self.config.route_for(model)
            return route.upstream if route else self.config.default_upstream(wire)

        return upstream_for

    def _known(self, upstream: str, model: str) -> bool:
        if self.config.route_for(model) is not None:
            return True
        provider = self.config.upstreams[upstream].provider
        if not isinstance(self.ledger.pricer.catalog_model(provider, model), str):
            return True
        return any(o.matches_model(provider or "", model) for o in self.ledger.pricer.overrides)

    def apply_policies(self, call: Call, key: VirtualKey) -> None:
        applied = self.policies.apply(key.dims, call.model, self.upstream_for(call.wire))
        call.applied = applied
        if applied.downgraded_from:
            call.downgraded_from = applied.downgraded_from
            self.set_model(call, applied.model)
        call.upstream = applied.upstream
        if applied.max_output_tokens:
            name = max_output_field(call.endpoint, call.body)
            if name is not None:
                current = call.body.get(name)
                if not isinstance(current, int) or current > applied.max_output_tokens:
                    call.body[name] = applied.max_output_tokens
                    call.changed = True
        mode, ttl, threshold = key.cache, self.config.cache.exact.ttl_s, None
        if mode == "semantic":
            ttl, threshold = self.config.cache.semantic.ttl_s, self.config.cache.semantic.threshold
        if mode == "off" and applied.cache:
            mode = applied.cache.get("mode", "exact")
            ttl = int(applied.cache.get("ttl_s", ttl))
            threshold = applied.cache.get("threshold")
        call.cache_mode, call.cache_ttl_s, call.cache_threshold = mode, ttl, threshold

    def set_model(self, call: Call, model: str) -> None:
        call.model = model
        call.body["model"] = model
        call.changed = True

    def check_route(self, call: Call) -> None:
        if call.upstream is None or call.upstream not in self.config.upstreams:
            raise GatewayError(
                404,
                "model_not_found",
                f"model {call.model!r}: no {call.wire} upstream is configured for it (see routes in gateway.yaml)",
                param="model",
            )
        if self.config.upstreams[call.upstream].kind != call.wire:
            raise GatewayError(
                400,
                "wrong_endpoint",
                f"model {call.model!r} is served by the {self.config.upstreams[call.upstream].kind} upstream "
                f"{call.upstream!r}; call it through that provider's endpoint",
                param="model",
            )
        if not self._known(call.upstream, call.model):
            raise GatewayError(
                404,
                "model_not_found",
                f"model {call.model!r} does not exist or has no price; add a route for it in gateway.yaml",
                param="model",
            )
