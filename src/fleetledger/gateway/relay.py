"""Relaying a gateway request to its upstream and metering the answer (steps 6 and 7 of the proxy).

The upstream call tries the route's fallbacks on the configured statuses (5xx, 429) and on
timeouts. A whole answer is priced from its usage and sent with its cost; a stream passes through
event by event while a :class:`~fleetledger.gateway.metering.StreamMeter` reads its usage, and ends
with the cost as an SSE comment. With a reservation, the usage event commits it (charged exactly
once); without usage (upstream error, client gone before any usage) the reservation is released and
nothing is charged. Without a reservation the event is recorded through the ledger's batching writer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread

from fleetledger.budgets.enforce import Reservation
from fleetledger.core.errors import FleetLedgerError
from fleetledger.core.money import format_usd
from fleetledger.core.usage import UsageEvent, parse_event
from fleetledger.gateway.cached import CachedAnswers
from fleetledger.gateway.calls import Call, ClientGone, Receive, Send, call_tags, response_headers, send_bytes
from fleetledger.gateway.config import GatewayConfig
from fleetledger.gateway.metering import StreamMeter, usage_from_body
from fleetledger.gateway.reservations import BudgetReservations
from fleetledger.gateway.upstream import UpstreamError, UpstreamPool, UpstreamResponse, UpstreamTimeout
from fleetledger.gateway.wire import ANTHROPIC, GatewayError
from fleetledger.ledger.facade import Ledger

__all__ = ["Relay"]

log = logging.getLogger("fleetledger.gateway")

#: Client headers forwarded upstream (the virtual key and hop-by-hop headers never are).
_FORWARD = ("anthropic-version", "anthropic-beta", "openai-organization", "openai-project", "openai-beta")


class Relay:
    """Calls the upstream (with fallbacks), relays its answer to the client and meters it.

    ``pools`` is the gateway's (filled when it starts); ``background`` runs the work that follows a
    sent response (commits, cache writes) without holding it up.
    """

    def __init__(
        self,
        ledger: Ledger,
        config: GatewayConfig,
        pools: dict[str, UpstreamPool],
        reservations: BudgetReservations,
        cached: CachedAnswers,
        background: Callable[[Awaitable[Any]], None],
    ) -> None:
        self.ledger = ledger
        self.config = config
        self.pools = pools
        self.reservations = reservations
        self.cached = cached
        self.background = background

    def targets(self, call: Call) -> list[tuple[str, str]]:
        assert call.upstream is not None
        targets = [(call.upstream, call.model)]
        route = self.config.route_for(call.model)
        if route is not None:
            for target in route.fallbacks:
                candidate = (target.upstream or call.upstream, target.model or call.model)
                if self.config.upstreams[candidate[0]].kind == call.wire and candidate not in targets:
                    targets.append(candidate)
        return targets

    def upstream_request(self, call: Call, upstream: str, model: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
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

    async def send_upstream(self, call: Call) -> tuple[UpstreamResponse, str, str]:
        """The upstream response (streaming), trying fallbacks on errors and timeouts."""
        targets = self.targets(call)
        for attempt, (upstream, model) in enumerate(targets):
            last = attempt == len(targets) - 1
            headers, content = self.upstream_request(call, upstream, model)
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
        raise AssertionError("no targets")  # pragma: no cover - targets() always returns one

    async def whole(self, call: Call, send: Send) -> None:
        response, upstream, model = await self.send_upstream(call)
        try:
            body = await response.aread()
        except UpstreamError as exc:
            raise GatewayError(502, "upstream_error", f"upstream {upstream!r} broke off its response: {exc}") from None
        provider = self.config.upstreams[upstream].provider or upstream
        headers = response_headers(call, response)
        usage = usage_from_body(body, provider) if response.status_code < 400 else None
        if usage is None:
            # An error (or a body without usage): nothing was consumed that we can know of.
            await self.reservations.release(call)
            await send_bytes(send, response.status_code, body, None, headers)
            return
        event = self.event(call, usage)
        cost = self.charge(call, event) if event is not None else 0
        headers.append((b"x-fleetledger-cost-usd", format_usd(cost).encode()))
        if call.remaining_nanos is not None and call.reservation is not None:
            remaining = call.remaining_nanos + call.reservation.amount_nanos - cost
            headers.append((b"x-fleetledger-budget-remaining-usd", format_usd(remaining).encode()))
        await send_bytes(send, response.status_code, body, None, headers)
        if event is not None and call.reservation is not None:
            reservation, call.reservation = call.reservation, None
            self.background(self.commit(call, event, reservation))
        elif call.reservation is not None:
            await self.reservations.release(call)
        if call.cache_mode != "off" and call.cache_key is not None and response.status_code == 200:
            self.background(self.cached.store(call, body, response, provider, usage, cost))

    async def stream(self, call: Call, receive: Receive, send: Send) -> None:
        response, upstream, model = await self.send_upstream(call)
        provider = self.config.upstreams[upstream].provider or upstream
        headers = response_headers(call, response)
        if response.status_code >= 400:
            try:
                body = await response.aread()
            except UpstreamError as exc:
                raise GatewayError(502, "upstream_error", f"upstream {upstream!r} broke off its error: {exc}") from None
            await self.reservations.release(call)
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
                if usage is not None and (finished := self.event(call, usage)) is not None:
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
            await self.reservations.release(call)
            return
        if event is None:
            event = self.event(call, usage, status="error" if outcome else "success", outcome=outcome)
        if event is None:
            await self.reservations.release(call)
            return
        if call.reservation is None:
            self.charge(call, event)
        else:
            reservation, call.reservation = call.reservation, None
            await self.commit(call, event, reservation)

    def event(
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
            "tags": call_tags(call, outcome),
        }
        if call.cache_key:
            fields["prompt_hash"] = call.cache_key
        try:
            return parse_event(fields)
        except FleetLedgerError:
            log.warning("request %s: usage could not be recorded", call.request_id, exc_info=True)
            return None

    def charge(self, call: Call, event: UsageEvent) -> int:
        """Price ``event``; without a reservation also record it (background writer). Returns nanos."""
        if call.reservation is None:
            return self.ledger.record_event(event, source="gateway").cost.total_nanos
        return self.ledger.pricer.price(event).total_nanos

    async def commit(self, call: Call, event: UsageEvent, reservation: Reservation) -> None:
        """Record ``event`` committing ``reservation``, in one transaction."""
        try:
            await anyio.to_thread.run_sync(
                lambda: self.ledger.record_event(event, source="gateway", reservation=reservation)
            )
        except Exception:
            log.error("request %s: commit of reservation %s failed", call.request_id, reservation.id, exc_info=True)
