"""Price a hypothetical request and explain each component (``fleetledger price``, the API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fleetledger.core.errors import InvalidEvent, InvalidInput
from fleetledger.core.money import format_usd
from fleetledger.core.usage import parse_event
from fleetledger.pricing import Pricer, PriceTable
from fleetledger.pricing.engine import event_usage

__all__ = ["quote"]


def quote(
    pricer: Pricer,
    *,
    provider: str | None,
    model: str,
    timestamp: datetime,
    service_tier: str = "standard",
    **tokens: int,
) -> dict[str, Any]:
    """``{"total_usd", "components", "source", ...}`` plus ``lines`` explaining each component."""
    try:
        event = parse_event(
            {"provider": provider, "model": model, "timestamp": timestamp, "service_tier": service_tier, **tokens}
        )
    except InvalidEvent as exc:
        raise InvalidInput(exc.message) from None
    cost = pricer.price(event)
    table = pricer.table_for(event.provider, model, event.service_tier, event.timestamp)
    lines = []
    if isinstance(table, PriceTable):
        usage = event_usage(event)
        total_input = usage.get("input_tokens", 0)
        for i, ((unit, _, _), count) in enumerate(zip(table.units, table.leaves(usage), strict=True)):
            nanos = cost.components.get(unit.price_key)
            if nanos is None:
                continue
            lines.append(
                {
                    "component": unit.price_key,
                    "units": count,
                    "price": f"{(table.rate(i, total_input) * table.factor).normalize():f}",
                    "per": f"{unit.per:,}",
                    "cost_usd": format_usd(nanos),
                }
            )
    return {
        **cost.as_dict(),
        "lines": lines,
    }
