"""Cost optimisation recommendations, priced by re-pricing the real token mixes of the last 30 days.

Every figure is exact nano-USD: ``current`` is what the scope's events of the last 30 days cost as
recorded, ``optimized`` is what the *same* events would have cost under the change, priced through
``ledger.pricer`` event by event (so tiers, cache prices and overrides apply as they would have).
Nothing is estimated from list prices or invented percentages. The kinds:

``model_downgrade``  a cheaper model of the same provider whose quality score (a small editable
                     catalog: built in :mod:`.quality`, overridden by the meta key ``model_quality``) is
                     within ``max_quality_drop`` points of the current model's, for one operation;
``caching``          requests repeating an earlier ``prompt_hash`` of the same model and operation;
                     an exact-match response cache would not have sent them;
``batch``            standard-tier calls of non-interactive agents (no human user: none, or a
                     service account ``svc-...``) re-priced on the provider's batch tier;
``provider_switch``  the same model offered by another provider in the catalog (an open-weight model
                     such as gpt-oss-120b sold by Groq, Fireworks, Together, OpenRouter, Bedrock...;
                     Claude on Azure or Google), the scope's calls re-priced there; the cheapest wins;
``prompt_trim``      an agent whose input tokens per request are several times its peers' (other
                     agents of the same operation), re-priced at the peers' median;
``output_cap``       an agent whose answers often run past the operation's fleet-wide 95th percentile
                     of output tokens, re-priced with ``max_tokens`` at that percentile.

The finders: :mod:`.routing` (model downgrade, provider switch, with the provider-switch matching
rule), :mod:`.serving` (caching, batch) and :mod:`.tokens` (prompt trim, output cap), on the
recorded token mixes of :mod:`.mixes`. This module runs them and stores what they find
(:func:`scan`); :mod:`.lifecycle` and :mod:`.realized` take the recommendations from there. The
names the former single module defined stay importable from here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from fleetledger.analytics.recommendations.lifecycle import (
    from_row,
    get_recommendation,
    list_recommendations,
    set_status,
    visible_to,
)
from fleetledger.analytics.recommendations.mixes import Call, Finding, recorded_calls
from fleetledger.analytics.recommendations.quality import DEFAULT_MODEL_QUALITY, model_quality
from fleetledger.analytics.recommendations.realized import measure_realized, savings_summary
from fleetledger.analytics.recommendations.recommendation import KINDS, STATUSES, WINDOW_US, Recommendation
from fleetledger.analytics.recommendations.recommendation import WINDOW as WINDOW
from fleetledger.analytics.recommendations.routing import NOT_SWITCH_TARGETS as NOT_SWITCH_TARGETS
from fleetledger.analytics.recommendations.routing import SWITCH_PROVIDERS as SWITCH_PROVIDERS
from fleetledger.analytics.recommendations.routing import model_downgrades, provider_switches
from fleetledger.analytics.recommendations.serving import batch, caching
from fleetledger.analytics.recommendations.tables import recommendations
from fleetledger.analytics.recommendations.tokens import output_caps, prompt_trims
from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import parse_usd, usd_to_nanos
from fleetledger.core.time import to_us
from fleetledger.storage.query import grouped_costs

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = [
    "KINDS",
    "STATUSES",
    "DEFAULT_MODEL_QUALITY",
    "Recommendation",
    "model_quality",
    "scan",
    "list_recommendations",
    "visible_to",
    "savings_summary",
    "get_recommendation",
    "set_status",
    "measure_realized",
]

_EFFORT_RISK = {
    "model_downgrade": ("low", "medium"),
    "caching": ("medium", "low"),
    "batch": ("medium", "low"),
    "provider_switch": ("medium", "medium"),
    "prompt_trim": ("medium", "low"),
    "output_cap": ("low", "medium"),
}


_DETECTORS: dict[str, Callable[[Ledger, list[Call]], list[Finding]]] = {
    "model_downgrade": model_downgrades,
    "caching": caching,
    "batch": batch,
    "provider_switch": provider_switches,
    "prompt_trim": prompt_trims,
    "output_cap": output_caps,
}


def _fingerprint(kind: str, scope: Mapping[str, Any]) -> str:
    keys = {
        k: v for k, v in scope.items() if k in ("operation", "provider", "model", "agent", "to_model", "to_provider")
    }
    text = json.dumps([kind, keys], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def scan(
    ledger: Ledger,
    *,
    now: datetime | None = None,
    kinds: Sequence[str] = KINDS,
    min_monthly_savings_usd: Any = "1",
) -> list[Recommendation]:
    """Find opportunities over the last 30 days and store them (re-found ones are refreshed).

    Recommendations already approved, implemented or declined keep their figures: they are the
    baseline the decision was taken on. Returns the recommendations found by this scan.
    """
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise InvalidInput(f"kinds: unknown {', '.join(sorted(unknown))}; use {', '.join(KINDS)}")
    minimum = usd_to_nanos(parse_usd(min_monthly_savings_usd, field="min_savings_usd"))
    if minimum < 0:
        raise InvalidInput("min_savings_usd: must not be negative")
    now = now or ledger.clock()
    until_us = to_us(now)
    calls = recorded_calls(ledger, until_us - WINDOW_US, until_us)
    findings = [f for kind in kinds for f in _DETECTORS[kind](ledger, calls) if f.current - f.optimized >= minimum]
    fingerprints = []
    with ledger.store.write() as conn:
        for finding in findings:
            effort, risk = _EFFORT_RISK[finding.kind]
            scope = {
                **finding.scope,
                "measure": finding.measure,
                "window_days": 30,
                # Whose spend it is: department-scoped API keys see only their departments' recommendations.
                "departments": _departments_of(ledger, finding.measure, until_us - WINDOW_US, until_us),
            }
            fingerprint = _fingerprint(finding.kind, finding.scope)
            fingerprints.append(fingerprint)
            values = {
                "kind": finding.kind, "scope": scope, "title": finding.title, "current_nanos": finding.current,
                "optimized_nanos": finding.optimized, "effort": effort, "risk": risk,
                "quality_impact": finding.quality_impact, "steps": finding.steps, "rollback": finding.rollback,
                "updated_us": until_us,
            }  # fmt: skip
            existing = conn.execute(
                select(recommendations.c.id, recommendations.c.status).where(
                    recommendations.c.fingerprint == fingerprint
                )
            ).first()
            if existing is None:
                conn.execute(
                    insert(recommendations).values(
                        **values, status="identified", fingerprint=fingerprint, created_us=until_us
                    )
                )
            elif existing.status in ("identified", "in_review"):
                conn.execute(update(recommendations).where(recommendations.c.id == existing.id).values(**values))
        rows = conn.execute(select(recommendations).where(recommendations.c.fingerprint.in_(fingerprints))).all()
    return sorted((from_row(r) for r in rows), key=lambda r: (-r.savings_nanos, r.id))


def _departments_of(ledger: Ledger, measure: Mapping[str, Any], since_us: int, until_us: int) -> list[str | None]:
    """The departments whose spend in the window a finding's ``measure`` filter covers (None: unattributed)."""
    rows = grouped_costs(ledger.store, ["department"], since_us, until_us, {k: list(v) for k, v in measure.items()})
    return sorted((r.keys[0] for r in rows), key=lambda d: (d is None, str(d)))
