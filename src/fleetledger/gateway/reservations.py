"""Budget reservation for a gateway request: estimate, reserve, release (step 5 of the proxy).

When a budget matches the request's attribution, an estimate of its cost is reserved against every
matching budget, synchronously: that is what makes budgets hold under concurrency. A refused
reservation is a 429 in the caller's error shape; a ``downgrade`` budget rewrites the model. The
estimate counts the body's bytes (inline images and audio are counted per part, not per byte) and
the requested maximum output. A reservation the call does not use is released.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.to_thread

from fleetledger.budgets.enforce import Reservation
from fleetledger.core.errors import BudgetExceeded, BudgetThrottled, FleetLedgerError, StorageUnavailable
from fleetledger.core.money import format_usd, usd_to_nanos
from fleetledger.core.time import to_us
from fleetledger.gateway.admission import Admission
from fleetledger.gateway.calls import Call
from fleetledger.gateway.config import GatewayConfig
from fleetledger.gateway.wire import GatewayError, max_output_field
from fleetledger.ledger.facade import Ledger

__all__ = ["BudgetReservations"]

log = logging.getLogger("fleetledger.gateway")

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


class BudgetReservations:
    """Reserves a request's estimated cost against the budgets that match it, and releases it."""

    def __init__(self, ledger: Ledger, config: GatewayConfig, admission: Admission) -> None:
        self.ledger = ledger
        self.config = config
        self.admission = admission

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

    async def reserve(self, call: Call, book: Any) -> None:
        """Reserve an estimate against every budget of ``book`` matching the call (step 5)."""
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
            self.admission.set_model(call, downgrade)
            call.cache_key = None  # a budget's downgrade is not the answer to the request as asked
            call.upstream = self.admission.upstream_for(call.wire)(downgrade) or call.upstream
            self.admission.check_route(call)

    async def release(self, call: Call) -> None:
        reservation, call.reservation = call.reservation, None
        if reservation is not None:
            try:
                await anyio.to_thread.run_sync(self.ledger.release_reservation, reservation)
            except FleetLedgerError:
                log.warning("could not release reservation %s; it expires on its own", reservation.id, exc_info=True)
