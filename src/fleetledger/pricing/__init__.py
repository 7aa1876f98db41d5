"""Price sources and exact event pricing (see :mod:`fleetledger.pricing.engine`)."""

from fleetledger.pricing.engine import (
    BUCKETS,
    CATALOG_VERSION,
    Cost,
    PriceOverride,
    Pricer,
    PriceTable,
    event_usage,
    parse_unit_prices,
)

__all__ = [
    "BUCKETS",
    "CATALOG_VERSION",
    "Cost",
    "PriceOverride",
    "Pricer",
    "PriceTable",
    "event_usage",
    "parse_unit_prices",
]
