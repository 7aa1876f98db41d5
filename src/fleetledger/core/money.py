"""Exact money.

Amounts are held as ``Decimal`` in Python and as integer **nano-USD** (1e-9 USD) in storage.
A component cost (input tokens x price per million) is computed exactly as a Decimal and rounded
once, half-even, to a whole nano-dollar; an event's total is *defined* as the sum of its stored
components, so parts always sum to totals exactly, in SQLite and PostgreSQL alike. The rounding
error is at most $0.0000000005 per component, five orders of magnitude inside the $0.0001
per-request tolerance finance asks for, and unbiased over many events (half-even).

Display in other currencies uses configured rates (``Settings.fx_rates``: units of the currency
per 1 USD) and each currency's minor unit (JPY has none).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from fleetledger.core.errors import InvalidInput

__all__ = [
    "NANOS_PER_USD",
    "usd_to_nanos",
    "nanos_to_usd",
    "format_usd",
    "parse_usd",
    "convert",
    "CURRENCY_DECIMALS",
]

NANOS_PER_USD = 1_000_000_000
_NANO = Decimal(1)

CURRENCY_DECIMALS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "JPY": 0,
    "CHF": 2,
    "CAD": 2,
    "AUD": 2,
    "INR": 2,
    "CNY": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "KRW": 0,
    "BRL": 2,
    "MXN": 2,
    "SGD": 2,
    "HKD": 2,
    "NZD": 2,
}


def usd_to_nanos(amount: Decimal | int | str) -> int:
    """Exact USD amount -> integer nano-USD, rounded half-even to the nearest nano-dollar."""
    value = Decimal(amount) if not isinstance(amount, Decimal) else amount
    return int((value * NANOS_PER_USD).quantize(_NANO, rounding=ROUND_HALF_EVEN))


def nanos_to_usd(nanos: int) -> Decimal:
    """Integer nano-USD -> exact Decimal USD (nine decimal places, trailing zeros kept off)."""
    return (Decimal(int(nanos)) / NANOS_PER_USD).quantize(Decimal("0.000000001"))


def format_usd(nanos: int) -> str:
    """Decimal string for JSON: exact, never exponent notation."""
    return f"{nanos_to_usd(nanos):f}"


def parse_usd(text: str | int | Decimal, *, field: str = "amount") -> Decimal:
    """Parse a user-supplied dollar amount; floats are refused because they are not exact."""
    if isinstance(text, float):
        raise InvalidInput(f"{field}: give money as a decimal string, not a float ({text!r})")
    try:
        value = Decimal(str(text).strip().lstrip("$").replace(",", ""))
    except InvalidOperation:
        raise InvalidInput(f"{field}: {text!r} is not a decimal amount") from None
    if not value.is_finite():
        raise InvalidInput(f"{field}: {text!r} is not a finite amount")
    return value


def convert(nanos: int, currency: str, rates: Mapping[str, Decimal]) -> Decimal:
    """nano-USD -> amount in ``currency``, rounded half-even to the currency's minor unit."""
    currency = currency.upper()
    usd = Decimal(int(nanos)) / NANOS_PER_USD
    if currency == "USD":
        rate = Decimal(1)
    else:
        try:
            rate = rates[currency]
        except KeyError:
            known = ", ".join(sorted({"USD", *rates}))
            raise InvalidInput(f"currency {currency}: no exchange rate configured (known: {known})") from None
    places = CURRENCY_DECIMALS.get(currency, 2)
    return (usd * rate).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
