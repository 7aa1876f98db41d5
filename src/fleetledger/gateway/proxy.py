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

This module is the ASGI app (lifecycle, routes, ``/v1/models``); the steps live in
:mod:`~fleetledger.gateway.admission` (1-3), :mod:`~fleetledger.gateway.cached` (4),
:mod:`~fleetledger.gateway.reservations` (5) and :mod:`~fleetledger.gateway.relay` (6-7); what they
share (the per-request :class:`~fleetledger.gateway.calls.Call`, response helpers) is
:mod:`~fleetledger.gateway.calls`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable
from typing import Any

import anyio
import anyio.to_thread
import httpx

from fleetledger.gateway.admission import Admission
from fleetledger.gateway.cache.lookup import ResponseCaching
from fleetledger.gateway.cached import CachedAnswers
from fleetledger.gateway.calls import Call, ClientGone, Receive, Scope, Send, send_error, send_json
from fleetledger.gateway.config import GatewayConfig
from fleetledger.gateway.keys import KeyBook
from fleetledger.gateway.policies import PolicyBook
from fleetledger.gateway.relay import Relay
from fleetledger.gateway.reservations import BudgetReservations
from fleetledger.gateway.upstream import UpstreamPool
from fleetledger.gateway.wire import ANTHROPIC, ENDPOINTS, OPENAI, GatewayError
from fleetledger.ledger.facade import Ledger

__all__ = ["Gateway", "create_gateway_app"]

log = logging.getLogger("fleetledger.gateway")


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
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresher: asyncio.Task[Any] | None = None
        self._started = False
        self.admission = Admission(ledger, config, self.keys, self.policies)
        self.reservations = BudgetReservations(ledger, config, self.admission)
        self.cached = CachedAnswers(ledger, self.caching)
        self.relay = Relay(ledger, config, self.pools, self.reservations, self.cached, self._background)
        #: Requests being handled (a stream is metered after its last byte was sent).
        self.in_flight = 0

    # -- lifecycle ---------------------------------------------------------------------------------

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
            await send_error(send, call, exc)
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

    # -- the call ----------------------------------------------------------------------------------

    async def _completion(self, call: Call, receive: Receive, send: Send) -> None:
        await self.admission.admit(call, receive)
        if call.cache_mode != "off" and await self.cached.serve(call, send):
            return
        await self.reservations.reserve(call, self.budget_book)
        try:
            if call.stream:
                await self.relay.stream(call, receive, send)
            else:
                await self.relay.whole(call, send)
        except BaseException:
            await self.reservations.release(call)
            raise

    # -- /v1/models --------------------------------------------------------------------------------

    async def _models(self, call: Call, send: Send) -> None:
        key = call.key = await self.admission.authenticate(call)
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
