"""The reconciliation report: cells comparing provider and ledger, and their totals by class.

A :class:`Cell` is one (UTC day, provider, model, key) comparison; its ``parts`` split the cost
drift (provider minus ledger, nano-USD) into the :data:`CLASSES` plus ``unexplained``, summing to
it exactly. A :class:`ReconciliationReport` holds the cells of a range and what was compared
(``coverage``); its totals per class equal the total drift exactly. How the cells are filled and
classified is :mod:`.compare`; this module is only the data and its JSON form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fleetledger.core.money import format_usd
from fleetledger.reconciliation.importers.provider_lines import TOKEN_TYPES

__all__ = ["CLASSES", "Cell", "ReconciliationReport", "zero_tokens", "tokens_by_type"]

CLASSES = ("matched", "unmetered_traffic", "price_mismatch", "unreconciled_estimate", "metered_not_billed")


def zero_tokens() -> dict[str, int]:
    """Token counts by field, all 0: the shape both sides of a cell keep."""
    return {"input_tokens": 0, "cache_read_tokens": 0, "cache_write_tokens": 0, "output_tokens": 0}


def tokens_by_type(tokens: Mapping[str, int]) -> dict[str, int]:
    """Token counts per priced type: ``input`` is the uncached input."""
    return {
        "input": tokens["input_tokens"] - tokens["cache_read_tokens"] - tokens["cache_write_tokens"],
        "cache_read": tokens["cache_read_tokens"],
        "cache_write": tokens["cache_write_tokens"],
        "output": tokens["output_tokens"],
    }


@dataclass(slots=True)
class Cell:
    """One (day, provider, model, key) comparison. Money in nano-USD."""

    day: date
    provider: str
    model: str  # the catalog's model id, or "" for charges not for a model's tokens
    key: str | None
    provider_tokens: dict[str, int] = field(default_factory=zero_tokens)
    provider_requests: int = 0
    provider_has_usage: bool = False
    provider_cost_nanos: int | None = None
    provider_cost_by_type: dict[str, int] = field(default_factory=dict)
    provider_cost_basis: str = "billed"
    ledger_tokens: dict[str, int] = field(default_factory=zero_tokens)
    ledger_priced_tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_TYPES, 0))
    ledger_bucket_nanos: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_TYPES, 0))
    ledger_other_nanos: int = 0
    ledger_estimate_nanos: int = 0
    ledger_requests: int = 0
    raw_model: str | None = None
    tier: str = "standard"
    parts: dict[str, int] = field(default_factory=dict)
    classification: str = "matched"
    tolerance_nanos: int = 0
    prices: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ledger_cost_nanos(self) -> int:
        return sum(self.ledger_bucket_nanos.values()) + self.ledger_other_nanos + self.ledger_estimate_nanos

    @property
    def drift_nanos(self) -> int:
        return (self.provider_cost_nanos or 0) - self.ledger_cost_nanos

    def token_drift(self) -> dict[str, int]:
        if not self.provider_has_usage:
            return {}
        return {name: self.provider_tokens[name] - self.ledger_tokens[name] for name in self.provider_tokens}

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "provider": self.provider,
            "model": self.model,
            "key": self.key,
            "classification": self.classification,
            "provider_cost_usd": format_usd(self.provider_cost_nanos or 0),
            "provider_cost_basis": self.provider_cost_basis,
            "ledger_cost_usd": format_usd(self.ledger_cost_nanos),
            "cost_drift_usd": format_usd(self.drift_nanos),
            "ledger_estimate_usd": format_usd(self.ledger_estimate_nanos),
            "parts": {name: format_usd(nanos) for name, nanos in self.parts.items()},
            "tolerance_usd": format_usd(self.tolerance_nanos),
            "provider_tokens": dict(self.provider_tokens) if self.provider_has_usage else None,
            "ledger_tokens": dict(self.ledger_tokens),
            "token_drift": self.token_drift() or None,
            "provider_requests": self.provider_requests if self.provider_has_usage else None,
            "ledger_requests": self.ledger_requests,
            "prices": self.prices,
        }


@dataclass(slots=True)
class ReconciliationReport:
    since: datetime
    until: datetime
    provider: str | None
    tolerance_usd: Decimal
    cells: list[Cell]
    coverage: dict[str, list[str]]  # provider -> compared days

    @property
    def provider_nanos(self) -> int:
        return sum(c.provider_cost_nanos or 0 for c in self.cells)

    @property
    def ledger_nanos(self) -> int:
        return sum(c.ledger_cost_nanos for c in self.cells)

    @property
    def drift_nanos(self) -> int:
        return self.provider_nanos - self.ledger_nanos

    def by_class(self) -> dict[str, int]:
        totals = dict.fromkeys((*CLASSES, "unexplained"), 0)
        for cell in self.cells:
            for name, nanos in cell.parts.items():
                totals[name] += nanos
        return totals

    @property
    def unexplained_nanos(self) -> int:
        return self.by_class()["unexplained"]

    def cell_counts(self) -> dict[str, int]:
        counts = dict.fromkeys((*CLASSES, "unexplained"), 0)
        for cell in self.cells:
            counts[cell.classification] += 1
        return counts

    def token_totals(self) -> dict[str, dict[str, int]]:
        provider, ledger = zero_tokens(), zero_tokens()
        for cell in self.cells:
            if cell.provider_has_usage:
                for name in provider:
                    provider[name] += cell.provider_tokens[name]
                    ledger[name] += cell.ledger_tokens[name]
        return {
            "provider": provider,
            "ledger": ledger,
            "drift": {name: provider[name] - ledger[name] for name in provider},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "provider": self.provider,
            "tolerance_usd_per_request": str(self.tolerance_usd),
            "coverage": self.coverage,
            "totals": {
                "provider_usd": format_usd(self.provider_nanos),
                "ledger_usd": format_usd(self.ledger_nanos),
                "drift_usd": format_usd(self.drift_nanos),
                "unexplained_usd": format_usd(self.unexplained_nanos),
                "by_class_usd": {name: format_usd(nanos) for name, nanos in self.by_class().items()},
                "cells_by_class": self.cell_counts(),
                "tokens": self.token_totals(),
            },
            "cells": [cell.to_dict() for cell in self.cells],
        }
