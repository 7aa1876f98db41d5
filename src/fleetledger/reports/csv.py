"""CSV reports: one table per kind, cents that sum to the total, and the exact amounts beside them."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from fleetledger.reports.data import Breakdown, ReportData

__all__ = ["render_csv", "money_text"]

_VOLUMES = ("requests", "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")


def money_text(value: Decimal | None) -> str:
    return "" if value is None else f"{value:f}"


def _key_text(value: Any) -> str:
    return "" if value is None else (value.isoformat() if hasattr(value, "isoformat") else str(value))


def breakdown_rows(breakdown: Breakdown) -> tuple[list[str], list[list[str]]]:
    header = [*breakdown.keys, *_VOLUMES, "cost_usd", "cost_usd_exact", "share_pct"]
    rows = [
        [
            *(_key_text(k) for k in line.keys),
            *(str(line.measure(m)) for m in _VOLUMES),
            money_text(line.display),
            money_text(line.cost),
            money_text(line.share_pct),
        ]
        for line in breakdown.lines
    ]
    return header, rows


def render_csv(data: ReportData) -> bytes:
    """``summary``: department x cost center x provider x model; ``detailed``: by day, project and
    agent too; ``chargeback``: the charge of each cost center (direct + allocated shared cost).

    ``cost_usd`` is in cents, rounded so the column sums exactly to the period's total in cents;
    ``cost_usd_exact`` is the exact nine-place amount (sums to the exact total)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if data.kind == "chargeback":
        writer.writerow(
            [
                "cost_center",
                "direct_usd",
                "shared_allocated_usd",
                "charge_usd",
                "charge_usd_exact",
                "allocation_share_pct",
            ]
        )
        for row in data.chargeback:
            writer.writerow(
                [
                    _key_text(row["cost_center"]),
                    money_text(row["direct"]),
                    money_text(row["shared_allocated"]),
                    money_text(row["charge_display"]),
                    money_text(row["charge"]),
                    money_text(row["allocation_share_pct"]),
                ]
            )
    else:
        header, rows = breakdown_rows(data.detail)
        writer.writerow(header)
        writer.writerows(rows)
    return buffer.getvalue().encode()
