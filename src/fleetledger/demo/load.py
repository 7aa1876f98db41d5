"""Loading the demo into a ledger (:func:`load_demo`): its events, ground truth and, optionally, budgets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fleetledger.core.money import format_usd
from fleetledger.demo.budgets import demo_budgets
from fleetledger.demo.spec import DemoSpec
from fleetledger.demo.spikes import ground_truth
from fleetledger.demo.traffic import generate

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["load_demo"]


def load_demo(
    ledger: Ledger,
    spec: DemoSpec,
    on_progress: Callable[[int], None] | None = None,
    *,
    budgets: bool = False,
) -> dict[str, Any]:
    """Replace the ledger's demo data (``source='demo'``) with ``spec``'s fleet; real data is untouched.

    ``budgets``: also give the fleet and each department a monthly budget (:func:`demo_budgets`).

    The ground truth is stored under the meta key ``demo_ground_truth`` for detectors to be scored on.
    """
    removed = ledger.store.delete_source("demo")
    result = ledger.ingest(
        ((f"demo:{n}", event) for n, event in enumerate(generate(spec), 1)),
        source="demo",
        on_progress=on_progress,
    )
    truth = ground_truth(spec)
    ledger.store.set_meta("demo_ground_truth", truth)
    start = spec.end - timedelta(days=spec.days)
    report = ledger.costs(since=start, until=spec.end)
    created = demo_budgets(ledger, spec) if budgets else []
    fleet = truth["fleet"]
    return {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "replaced": removed,
        "departments": fleet["departments"],
        "agents": fleet["agents"],
        "providers": fleet["providers"],
        "models": fleet["models"],
        "unpriced": int(report.total["unpriced"]),
        "cost_usd": format_usd(result.cost_nanos),
        "ground_truth": truth["anomalies"],
        "budgets_created": created,
    }
