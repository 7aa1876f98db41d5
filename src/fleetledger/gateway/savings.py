"""What the gateway's response cache saved, read back from the ledger.

A cache hit is recorded as a usage event with zero tokens (so zero provider cost) and two tags:
``gateway.cache`` (``exact`` or ``semantic``) and ``gateway.saved_usd`` (what the original call
cost, as a decimal string). Its ``prompt_hash`` is the request's cache key, so the caching ROI
(:func:`fleetledger.analytics.roi.cacheable_spend`) sees repeats too. See
docs/decisions/0008-gateway.md for why tags rather than a new column.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy import String, and_, cast, select

from fleetledger.core.money import format_usd, usd_to_nanos
from fleetledger.core.time import parse_range, to_us
from fleetledger.ledger.facade import Ledger
from fleetledger.storage.schema import events

__all__ = ["cache_savings", "SAVED_TAG", "CACHE_TAG"]

CACHE_TAG = "gateway.cache"
SAVED_TAG = "gateway.saved_usd"


def cache_savings(ledger: Ledger, *, since: Any = "30d", until: Any = None) -> dict[str, Any]:
    """Cache hits served by the gateway in a range and what they saved, overall and per kind."""
    start, end = parse_range(since, until, now=ledger.clock())
    ledger.flush()
    query = select(events.c.tags).where(
        and_(
            events.c.source == "gateway",
            events.c.ts_us >= to_us(start),
            events.c.ts_us < to_us(end),
            cast(events.c.tags, String).like(f'%"{CACHE_TAG}"%'),
        )
    )
    hits: dict[str, int] = {}
    saved: dict[str, int] = {}
    with ledger.store.read() as conn:
        for (raw,) in conn.execute(query):
            tags = json.loads(raw) if isinstance(raw, str) else (raw or {})
            kind = tags.get(CACHE_TAG)
            if kind is None:
                continue
            hits[kind] = hits.get(kind, 0) + 1
            saved[kind] = saved.get(kind, 0) + usd_to_nanos(Decimal(tags.get(SAVED_TAG, "0")))
    return {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "hits": sum(hits.values()),
        "saved_usd": format_usd(sum(saved.values())),
        "by_kind": {k: {"hits": hits[k], "saved_usd": format_usd(saved[k])} for k in sorted(hits)},
    }
