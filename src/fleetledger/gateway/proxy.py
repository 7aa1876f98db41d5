"""The gateway: a raw ASGI app that authenticates, enforces, routes, caches and meters LLM calls.

One request, in order (each step answers in the caller's provider error shape when it refuses):

1. endpoint and virtual key (``Authorization: Bearer`` or ``x-api-key``), from an in-memory key book;
2. body size limit, JSON, ``model``; the key's rate limit and model allow-list;
3. policies for the key's scope (downgrade, max output tokens, cache, provider switch);
4. the response cache (non-streaming requests): a hit is answered without calling the upstream;
5. budgets: when a budget matches the request's attribution, an estimate is reserved against every
   matching budget (synchronously: that is what makes them hold under concurrency); refused -> 429;
   a ``downgrade`` budget rewrites the model;
6. the upstream call, with fallbacks on 5xx/429/timeouts; streams pass through event by event;
7. metering: the provider's usage is priced and recorded; with a reservation, the event commits it
   (charged exactly once); without usage (upstream error, client gone before any usage) the
   reservation is released and nothing is charged.

Hot-path costs are kept off the database: keys, policies and the budget book are refreshed in the
background every ``refresh_interval_s``; a request whose attribution matches no budget skips the
reservation and is recorded through the ledger's batching writer (crash journal included).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import httpx

from fleetledger.budgets.enforce import Reservation
from fleetledger.core.errors import BudgetExceeded, BudgetThrottled, FleetLedgerError, StorageUnavailable
from fleetledger.core.money import format_usd, usd_to_nanos
from fleetledger.core.time import to_us
from fleetledger.core.usage import UsageEvent, parse_event
from fleetledger.gateway.cache.lookup import ResponseCaching
from fleetledger.gateway.calls import HOP_BY_HOP, Call, ClientGone, Receive, Scope, Send, send_bytes, send_json
from fleetledger.gateway.config import GatewayConfig
from fleetledger.gateway.keys import KeyBook, VirtualKey
from fleetledger.gateway.metering import StreamMeter, usage_from_body
from fleetledger.gateway.policies import PolicyBook
from fleetledger.gateway.replay import replay_stream
from fleetledger.gateway.upstream import UpstreamError, UpstreamPool, UpstreamResponse, UpstreamTimeout
from fleetledger.gateway.wire import ANTHROPIC, ENDPOINTS, OPENAI, GatewayError, max_output_field
from fleetledger.ledger.facade import Ledger

__all__ = ["Gateway", "create_gateway_app"]

log = logging.getLogger("fleetledger.gateway")

#: Client headers forwarded upstream (the virtual key and hop-by-hop headers never are).
_FORWARD = ("anthropic-version", "anthropic-beta", "openai-organization", "openai-project", "openai-beta")
_CATEGORY = {"embeddings": "embedding"}


#: Bodies smaller than this cannot hold inline images or audio worth discounting.
_INLINE_MEDIA_MIN = 32 * 1024


def _text_size(value: Any) -> tuple[int, int]:
    """(UTF-8 bytes of a request body without its inline media, number of inline media parts).

    Base64 images and audio (``data:`` URLs, Anthropic ``source.data``, ``input_audio.data``) are
    billed per image or per second, not per byte: counted by ``estimate_media_tokens`` instead.
    """
    if isinstance(value, str):
        if value.startswith("data:") or len(value) > _INLINE_MEDIA_MIN:
            return 0, 1
        return len(value.encode()), 0
    size = media = 0
    if isinstance(value, dict):
        for key, item in value.items():
            part, found = _text_size(item)
            size, media = size + len(key) + 4 + part, media + found
    elif isinstance(value, list):
        for item in value:
            part, found = _text_size(item)
            size, media = size + 2 + part, media + found
    else:
        size = len(str(value))
    return size, media


class Gateway:
    """The ASGI application. ``transports`` (upstream name -> httpx transport) serves ``/v1/models``."""

    def __init__(
        self,
        ledger: Ledger,
        config: GatewayConfig,
        *,
        transports: dict[str, httpx.AsyncBaseTransport] | None = None,
        exact_cache: Any = None,
        semantic_cache: Any = None,
    ) -> None:
        self.ledger = ledger
        self.config = config
        self.keys = KeyBook(ledger.store, config.keys)
        self.policies = PolicyBook(ledger.store)
        self.budget_book: Any = None
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.pools: dict[str, UpstreamPool] = {}
        self._transports = transports or {}
        self.caching = ResponseCaching(config.cache, exact=exact_cache, semantic=semantic_cache)
        self._rate: dict[str, list[float]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresher: asyncio.Task[Any] | None = None
        self._started = False
        self._last_miss_refresh = 0.0
        #: Requests being handled (a stream is metered after its last byte was sent).
        self.in_flight = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Reload keys, policies and budgets when they changed (blocking; runs on a thread)."""
        self.keys.refresh()
        self.policies.refresh()
        self.budget_book = self.ledger.enforcer.book()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        await anyio.to_thread.run_sync(self.refresh)
        for name, upstream in self.config.upstreams.items():
            limits = httpx.Limits(
                max_connections=upstream.max_connections,
                max_keepalive_connections=upstream.max_connections,
                keepalive_expiry=60,
            )
            timeout = httpx.Timeout(upstream.timeout_s, connect=upstream.connect_timeout_s)
            transport = self._transports.get(name) or httpx.AsyncHTTPTransport(limits=limits)
            self.clients[name] = httpx.AsyncClient(base_url=upstream.base_url, timeout=timeout, transport=transport)
            # Completions use the gateway's own keep-alive client (see upstream.py for why).
            self.pools[name] = UpstreamPool(
                upstream.base_url,
                timeout_s=upstream.timeout_s,
                connect_timeout_s=upstream.connect_timeout_s,
                max_idle=upstream.max_connections,
            )
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        await self.drain()
        for client in self.clients.values():
            await client.aclose()
        self.clients.clear()
        for pool in self.pools.values():
            await pool.close()
        self.pools.clear()
        await self.caching.close()
        await anyio.to_thread.run_sync(self.ledger.flush)
        self._started = False

    async def drain(self) -> None:
        """Wait for the commits and cache writes that run after responses were sent."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.refresh_interval_s)
            try:
                await anyio.to_thread.run_sync(self.refresh)
            except Exception:  # the database may be down for a moment; keep serving from memory
                log.warning("gateway refresh failed; serving with the last keys, policies and budgets", exc_info=True)

    def _background(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- ASGI --------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if not self._started:
            await self.start()
        self.in_flight += 1
        try:
            await self._http(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        headers = dict(scope["headers"])
        call = Call(
            request_id="req_" + secrets.token_hex(12),
            wire=ANTHROPIC if path.startswith("/v1/messages") or b"anthropic-version" in headers else OPENAI,
            endpoint="",
            path=path,
            headers=headers,
            started=time.perf_counter(),
        )
        try:
            if path in ENDPOINTS:
                if scope["method"] != "POST":
                    raise GatewayError(405, "method_not_allowed", f"{path} accepts POST only")
                call.wire, call.endpoint = ENDPOINTS[path]
                await self._completion(call, receive, send)
            elif path == "/v1/models":
                await self._models(call, send)
            elif path == "/healthz":
                await send_json(send, 200, {"status": "ok"}, call.request_id)
            else:
                raise GatewayError(404, "not_found", f"no route {scope['method']} {path} on the fleetledger gateway")
        except GatewayError as exc:
            await self._send_error(send, call, exc)
        except ClientGone:
            return

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _send_error(self, send: Send, call: Call, exc: GatewayError) -> None:
        extra = [(k.encode(), v.encode()) for k, v in exc.headers.items()]
        await send_bytes(send, exc.status, exc.body(call.wire), call.request_id, extra)

    # -- request preparation -------------------------------------------------------------------

    async def _authenticate(self, call: Call) -> VirtualKey:
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

    def _rate_limit(self, key: VirtualKey) -> None:
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

    async def _read_body(self, call: Call, receive: Receive) -> None:
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

    def _upstream_for(self, wire: str) -> Callable[[str], str | None]:
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

    def _apply_policies(self, call: Call, key: VirtualKey) -> None:
        applied = self.policies.apply(key.dims, call.model, self._upstream_for(call.wire))
        call.applied = applied
        if applied.downgraded_from:
            call.downgraded_from = applied.downgraded_from
            self._set_model(call, applied.model)
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

    def _set_model(self, call: Call, model: str) -> None:
        call.model = model
        call.body["model"] = model
        call.changed = True

    def _check_route(self, call: Call) -> None:
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

    def _targets(self, call: Call) -> list[tuple[str, str]]:
        assert call.upstream is not None
        targets = [(call.upstream, call.model)]
        route = self.config.route_for(call.model)
        if route is not None:
            for target in route.fallbacks:
                candidate = (target.upstream or call.upstream, target.model or call.model)
                if self.config.upstreams[candidate[0]].kind == call.wire and candidate not in targets:
                    targets.append(candidate)
        return targets

    # -- budgets -----------------------------------------------------------------------------------

    def _estimate_nanos(self, call: Call) -> int:
        limits = self.config.limits
        size, media = len(call.raw), 0
        if size > _INLINE_MEDIA_MIN:
            size, media = _text_size(call.body)
        input_tokens = -(-size // limits.estimate_bytes_per_token) + media * limits.estimate_media_tokens
        output = 0
        name = max_output_field(call.endpoint, call.body)
        if name is not None:
            value = call.body.get(name)
            output = value if isinstance(value, int) and value > 0 else limits.default_max_output_tokens
        provider = self.config.upstreams[call.upstream].provider if call.upstream else None
        try:
            cost = self.ledger.estimate_cost(
                model=call.model, provider=provider, input_tokens=input_tokens, max_output_tokens=output
            )
        except FleetLedgerError:
            return 0
        return usd_to_nanos(cost)

    def _budget_dims(self, call: Call) -> dict[str, Any]:
        dims = call.dims
        dims["model"] = call.model
        if call.upstream:
            dims["provider"] = self.config.upstreams[call.upstream].provider
        return dims

    async def _reserve(self, call: Call) -> None:
        book = self.budget_book
        if book is None or not book.budgets:
            return
        dims = self._budget_dims(call)
        matched = book.for_dims(dims)
        if not matched:
            return
        amount = self._estimate_nanos(call)

        def reserve() -> tuple[Reservation, int | None]:
            reservation = self.ledger.reserve(format_usd(amount), ttl_s=self.config.limits.reservation_ttl_s, **dims)
            remaining = None
            if not reservation.provisional:
                now = self.ledger.clock()
                with self.ledger.store.read() as conn:
                    usage = self.ledger.enforcer.usage_many(conn, matched, now, book)
                remaining = min(b.limit_at(to_us(now)) - usage[b.id][0] - usage[b.id][1] for b in matched)
            return reservation, remaining

        try:
            call.reservation, call.remaining_nanos = await anyio.to_thread.run_sync(reserve)
        except BudgetExceeded as exc:
            extra = {
                "budget": exc.budget,
                "budget_id": exc.budget_id,
                "limit_usd": exc.limit_usd,
                "spent_usd": exc.spent_usd,
                "remaining_usd": exc.remaining_usd,
                "requested_usd": exc.requested_usd,
                "resets_at": exc.resets_at,
                "action": exc.action,
            }
            headers = {"retry-after": str(exc.retry_after_s)} if isinstance(exc, BudgetThrottled) else {}
            raise GatewayError(429, exc.code, exc.message, extra=extra, headers=headers) from None
        except StorageUnavailable as exc:
            raise GatewayError(503, exc.code, exc.message) from None
        downgrade = call.reservation.downgrade_to if call.reservation is not None else None
        if downgrade and downgrade != call.model:
            call.downgraded_from = call.downgraded_from or call.model
            self._set_model(call, downgrade)
            call.cache_key = None  # a budget's downgrade is not the answer to the request as asked
            call.upstream = self._upstream_for(call.wire)(downgrade) or call.upstream
            self._check_route(call)

    async def _release(self, call: Call) -> None:
        reservation, call.reservation = call.reservation, None
        if reservation is not None:
            try:
                await anyio.to_thread.run_sync(self.ledger.release_reservation, reservation)
            except FleetLedgerError:
                log.warning("could not release reservation %s; it expires on its own", reservation.id, exc_info=True)

    # -- the call ------------------------------------------------------------------------------------

    async def _completion(self, call: Call, receive: Receive, send: Send) -> None:
        key = call.key = await self._authenticate(call)
        await self._read_body(call, receive)
        self._rate_limit(key)
        if not key.allows(call.model):
            allowed = ", ".join(key.allowed_models or ())
            raise GatewayError(
                403,
                "model_not_allowed",
                f"virtual key {key.key_id} may not use model {call.model!r}; allowed: {allowed}",
                param="model",
            )
        self._apply_policies(call, key)
        self._check_route(call)
        if call.stream and call.endpoint == "chat":
            options = call.body.get("stream_options")
            if not (isinstance(options, dict) and options.get("include_usage") is True):
                call.body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
                call.hide_usage_chunk = True
                call.changed = True
        if call.cache_mode != "off" and await self._serve_from_cache(call, send):
            return
        await self._reserve(call)
        try:
            if call.stream:
                await self._stream(call, receive, send)
            else:
                await self._whole(call, send)
        except BaseException:
            await self._release(call)
            raise

    def _upstream_request(self, call: Call, upstream: str, model: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
        config = self.config.upstreams[upstream]
        if model != call.model:
            call.body["model"] = model
            call.changed = True
        content = json.dumps(call.body, separators=(",", ":")).encode() if call.changed else call.raw
        headers = {
            "content-type": "application/json",
            "accept-encoding": "identity",
            "user-agent": "fleetledger-gateway",
        }
        for name in (*_FORWARD, *self.config.forward_headers):
            value = call.headers.get(name.encode())
            if value is not None:
                headers[name] = value.decode("latin-1")
        secret = config.api_key()
        if config.kind == ANTHROPIC:
            headers.setdefault("anthropic-version", "2023-06-01")
            if secret:
                headers["x-api-key"] = secret
        elif secret:
            headers["authorization"] = f"Bearer {secret}"
        if call.stream:
            headers["accept"] = "text/event-stream"
        return [(k.encode(), v.encode("latin-1")) for k, v in headers.items()], content

    async def _send_upstream(self, call: Call) -> tuple[UpstreamResponse, str, str]:
        """The upstream response (streaming), trying fallbacks on errors and timeouts."""
        targets = self._targets(call)
        for attempt, (upstream, model) in enumerate(targets):
            last = attempt == len(targets) - 1
            headers, content = self._upstream_request(call, upstream, model)
            try:
                response = await self.pools[upstream].request("POST", call.path, headers, content)
            except UpstreamTimeout:
                if last:
                    raise GatewayError(
                        504, "upstream_timeout", f"upstream {upstream!r} did not answer in time"
                    ) from None
                continue
            except UpstreamError as exc:
                if last:
                    raise GatewayError(502, "upstream_unreachable", f"upstream {upstream!r}: {exc}") from None
                continue
            if response.status_code in self.config.fallback_on and not last:
                await response.aclose()
                continue
            if model != call.model:
                call.model = model
            call.upstream = upstream
            return response, upstream, model
        raise AssertionError("no targets")  # pragma: no cover - _targets always returns one

    def _headers(self, call: Call, response: UpstreamResponse | None = None) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        if response is not None:
            for lowered, value in response.raw_headers:
                if (
                    lowered not in HOP_BY_HOP
                    and not lowered.startswith(b"x-fleetledger-")
                    and lowered != b"x-request-id"
                ):
                    out.append((lowered, value))
        out.append((b"x-request-id", call.request_id.encode()))
        if call.downgraded_from:
            out.append((b"x-fleetledger-downgraded-from", call.downgraded_from.encode()))
        return out

    def _event(
        self, call: Call, usage: Any, *, status: str = "success", outcome: str | None = None
    ) -> UsageEvent | None:
        assert call.upstream is not None and call.key is not None
        fields: dict[str, Any] = {
            **call.key.dims,
            **usage.as_event_fields(),
            "event_id": f"gw-{call.request_id}",
            "timestamp": self.ledger.clock(),
            "latency_ms": round((time.perf_counter() - call.started) * 1000, 3),
            "status": status,
            "tags": self._tags(call, outcome),
        }
        if call.cache_key:
            fields["prompt_hash"] = call.cache_key
        try:
            return parse_event(fields)
        except FleetLedgerError:
            log.warning("request %s: usage could not be recorded", call.request_id, exc_info=True)
            return None

    def _tags(self, call: Call, outcome: str | None = None) -> dict[str, str]:
        tags = {"gateway.key": call.key.key_id if call.key else "", "gateway.upstream": call.upstream or ""}
        if call.downgraded_from:
            tags["gateway.downgraded_from"] = call.downgraded_from
        if call.applied and call.applied.policy_ids:
            tags["gateway.policies"] = ",".join(map(str, call.applied.policy_ids))
        if outcome:
            tags["gateway.outcome"] = outcome
        return tags

    def _charge(self, call: Call, event: UsageEvent) -> int:
        """Price ``event``; without a reservation also record it (background writer). Returns nanos."""
        if call.reservation is None:
            return self.ledger.record_event(event, source="gateway").cost.total_nanos
        return self.ledger.pricer.price(event).total_nanos

    async def _commit(self, call: Call, event: UsageEvent, reservation: Reservation) -> None:
        """Record ``event`` committing ``reservation``, in one transaction."""
        try:
            await anyio.to_thread.run_sync(
                lambda: self.ledger.record_event(event, source="gateway", reservation=reservation)
            )
        except Exception:
            log.error("request %s: commit of reservation %s failed", call.request_id, reservation.id, exc_info=True)

    async def _whole(self, call: Call, send: Send) -> None:
        response, upstream, model = await self._send_upstream(call)
        try:
            body = await response.aread()
        except UpstreamError as exc:
            raise GatewayError(502, "upstream_error", f"upstream {upstream!r} broke off its response: {exc}") from None
        provider = self.config.upstreams[upstream].provider or upstream
        headers = self._headers(call, response)
        usage = usage_from_body(body, provider) if response.status_code < 400 else None
        if usage is None:
            # An error (or a body without usage): nothing was consumed that we can know of.
            await self._release(call)
            await send_bytes(send, response.status_code, body, None, headers)
            return
        event = self._event(call, usage)
        cost = self._charge(call, event) if event is not None else 0
        headers.append((b"x-fleetledger-cost-usd", format_usd(cost).encode()))
        if call.remaining_nanos is not None and call.reservation is not None:
            remaining = call.remaining_nanos + call.reservation.amount_nanos - cost
            headers.append((b"x-fleetledger-budget-remaining-usd", format_usd(remaining).encode()))
        await send_bytes(send, response.status_code, body, None, headers)
        if event is not None and call.reservation is not None:
            reservation, call.reservation = call.reservation, None
            self._background(self._commit(call, event, reservation))
        elif call.reservation is not None:
            await self._release(call)
        if call.cache_mode != "off" and call.cache_key is not None and response.status_code == 200:
            self._background(self._cache_put(call, body, response, provider, usage, cost))

    async def _stream(self, call: Call, receive: Receive, send: Send) -> None:
        response, upstream, model = await self._send_upstream(call)
        provider = self.config.upstreams[upstream].provider or upstream
        headers = self._headers(call, response)
        if response.status_code >= 400:
            try:
                body = await response.aread()
            except UpstreamError as exc:
                raise GatewayError(502, "upstream_error", f"upstream {upstream!r} broke off its error: {exc}") from None
            await self._release(call)
            await send_bytes(send, response.status_code, body, None, headers)
            return
        if call.remaining_nanos is not None and call.reservation is not None:
            headers.append((b"x-fleetledger-budget-remaining-usd", format_usd(call.remaining_nanos).encode()))
        meter = StreamMeter(call.endpoint, provider, hide_usage_chunk=call.hide_usage_chunk)
        outcome: str | None = None
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})

        finished: UsageEvent | None = None

        async def pump(cancel: anyio.CancelScope) -> None:
            nonlocal outcome, finished
            try:
                async for chunk in response.aiter_raw():
                    out = meter.feed(chunk)
                    if out:
                        await send({"type": "http.response.body", "body": out, "more_body": True})
                rest = meter.flush()
                usage = meter.usage
                if usage is not None and (finished := self._event(call, usage)) is not None:
                    # The cost as an SSE comment: clients and SDKs ignore comment lines by spec.
                    cost = self.ledger.pricer.price(finished).total_nanos
                    rest += b": x-fleetledger-cost-usd " + format_usd(cost).encode() + b"\n\n"
                await send({"type": "http.response.body", "body": rest, "more_body": False})
            except UpstreamError:
                outcome = "upstream_broke_off"
            except OSError:
                outcome = "client_disconnected"
            finally:
                cancel.cancel()

        async def watch(cancel: anyio.CancelScope) -> None:
            nonlocal outcome
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    outcome = outcome or "client_disconnected"
                    cancel.cancel()
                    return

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(pump, group.cancel_scope)
                group.start_soon(watch, group.cancel_scope)
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
                await self._account_stream(call, meter, outcome, None if outcome else finished)
        if outcome == "upstream_broke_off":
            # End the client's response the way the upstream ended ours: abruptly.
            raise ClientGone()

    async def _account_stream(
        self, call: Call, meter: StreamMeter, outcome: str | None, event: UsageEvent | None = None
    ) -> None:
        usage = meter.usage
        if usage is None:
            await self._release(call)
            return
        if event is None:
            event = self._event(call, usage, status="error" if outcome else "success", outcome=outcome)
        if event is None:
            await self._release(call)
            return
        if call.reservation is None:
            self._charge(call, event)
        else:
            reservation, call.reservation = call.reservation, None
            await self._commit(call, event, reservation)

    # -- the cache -------------------------------------------------------------------------------------

    async def _serve_from_cache(self, call: Call, send: Send) -> bool:
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
                    **self._tags(call),
                    "gateway.cache": kind,
                    "gateway.saved_usd": format_usd(found.cost_nanos),
                },
            }
        )
        self.ledger.record_event(event, source="gateway")
        headers = [(b"content-type", content_type.encode())]
        headers += self._headers(call)
        headers += [
            (b"x-fleetledger-cache", kind.encode()),
            (b"x-fleetledger-cost-usd", b"0.000000000"),
            (b"x-fleetledger-saved-usd", format_usd(found.cost_nanos).encode()),
        ]
        await send_bytes(send, found.status, body, None, headers)
        return True

    async def _cache_put(
        self, call: Call, body: bytes, response: UpstreamResponse, provider: str, usage: Any, cost: int
    ) -> None:
        from fleetledger.gateway.cache.store import CachedResponse

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

    # -- /v1/models ------------------------------------------------------------------------------------

    async def _models(self, call: Call, send: Send) -> None:
        key = call.key = await self._authenticate(call)
        upstream = self.config.default_upstream(call.wire)
        data: list[dict[str, Any]] = []
        if upstream is not None:
            config = self.config.upstreams[upstream]
            headers = {"accept-encoding": "identity"}
            secret = config.api_key()
            if secret:
                headers["authorization" if config.kind == OPENAI else "x-api-key"] = (
                    f"Bearer {secret}" if config.kind == OPENAI else secret
                )
            if config.kind == ANTHROPIC:
                headers["anthropic-version"] = "2023-06-01"
            try:
                response = await self.clients[upstream].get("/v1/models", headers=headers)
                if response.status_code == 200:
                    listed = response.json().get("data")
                    data = (
                        [m for m in listed if isinstance(m, dict) and isinstance(m.get("id"), str)]
                        if isinstance(listed, list)
                        else []
                    )
            except (httpx.HTTPError, ValueError):
                data = []
        known = {m["id"] for m in data}
        for route in self.config.routes:
            if not any(c in route.model for c in "*?[") and route.model not in known:
                data.append({"id": route.model, "object": "model", "created": 0, "owned_by": route.upstream})
                known.add(route.model)
        if key.allowed_models is not None:
            data = [m for m in data if m["id"] in key.allowed_models]
        await send_json(send, 200, {"object": "list", "data": data}, call.request_id)


def create_gateway_app(ledger: Ledger, config: GatewayConfig, **options: Any) -> Gateway:
    """The gateway ASGI app over ``ledger`` (run it with uvicorn: ``fleetledger gateway``)."""
    return Gateway(ledger, config, **options)
