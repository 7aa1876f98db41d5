"""Monthly demo budgets for the fleet and each department, sized from their recent spend."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import TYPE_CHECKING

from fleetledger.demo.spec import DemoSpec

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["demo_budgets"]


#: Monthly budget over a department's last 30 days of spend: most departments have headroom, some
#: are tight and one or two will run out, so a first look at the dashboard shows every status.
_BUDGET_HEADROOM = ("0.9", "1.05", "1.25", "1.5", "1.5", "2", "2")


def demo_budgets(ledger: Ledger, spec: DemoSpec) -> list[str]:
    """Monthly ``notify`` budgets for the fleet and each demo department, sized from recent spend.

    Deterministic for a seed. A budget whose name exists already (a real one, or an earlier demo's)
    is left as it is, so running the demo again neither duplicates nor resets budgets.
    """
    from decimal import ROUND_CEILING, Decimal

    report = ledger.costs(by=["department"], since=spec.end - timedelta(days=30), until=spec.end)
    existing = {budget.name for budget in ledger.budgets.list()}
    rng = random.Random(f"{spec.seed}-budgets")
    wanted: list[tuple[str, dict[str, str], Decimal]] = []
    total = Decimal(0)
    for row in report.rows():
        department, spent = row.get("department"), Decimal(row["cost_usd"])
        if not department or spent <= 0:
            continue
        total += spent
        headroom = Decimal(rng.choice(_BUDGET_HEADROOM))
        wanted.append((f"{department}-monthly", {"department": department}, spent * headroom))
    if total > 0:
        wanted.insert(0, ("fleet-monthly", {}, total * Decimal("1.25")))
    created = []
    for name, scope, amount in wanted:
        if name in existing:
            continue
        whole = max(amount.quantize(Decimal(1), rounding=ROUND_CEILING), Decimal(1))
        ledger.budgets.create(name=name, scope=scope, amount=whole, period="monthly", action="notify", actor="demo")
        created.append(name)
    return created
