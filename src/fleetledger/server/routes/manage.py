"""Management routes: budgets, adjustments, approvals, alert rules and channels, prices, keys, audit.

Full CRUD over the objects the dashboard's actions change; each route checks the caller's role,
calls the core, and is audited. Business rules stay in the core modules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from fleetledger.access.keys import ROLES, Principal, create_key, list_keys, revoke_key
from fleetledger.budgets.tables import audit_log
from fleetledger.core.time import from_us, parse_moment, to_us
from fleetledger.pricing.overrides import add_override, delete_override, load_overrides, override_to_dict
from fleetledger.pricing.quote import quote
from fleetledger.server.audit import record_write
from fleetledger.server.deps import BudgetKey, RowId, ledger_of, principal, store_of

router = APIRouter()

_Strict = ConfigDict(extra="forbid")


# -- budgets ------------------------------------------------------------------------------------


class BudgetIn(BaseModel):
    model_config = _Strict
    name: str = Field(min_length=1, max_length=200)
    amount: str = Field(description="Decimal string, e.g. '500' or '1250.50'")
    scope: dict[str, str | list[str]] = Field(default_factory=dict, description="e.g. {'department': 'research'}")
    period: str = "monthly"
    currency: str = "USD"
    timezone: str = "UTC"
    warning_pct: str = "80"
    critical_pct: str = "95"
    action: str = "notify"
    downgrade_model: str | None = None
    throttle_rpm: int | None = Field(default=None, ge=1)
    fail_mode: str | None = None
    parent: str | None = None
    window_days: int | None = Field(default=None, ge=1, le=366)
    starts: datetime | None = None
    ends: datetime | None = None
    force: bool = False


class AdjustIn(BaseModel):
    model_config = _Strict
    amount: str
    justification: str = Field(min_length=1, max_length=2000)
    force: bool = False


class OverageIn(BaseModel):
    model_config = _Strict
    amount: str
    justification: str = Field(min_length=1, max_length=2000)
    deadline: datetime | None = None


class DecisionIn(BaseModel):
    model_config = _Strict
    note: str | None = Field(default=None, max_length=2000)
    amount: str | None = None
    deadline: datetime | None = None


def _visible(who: Principal, budget: Any) -> None:
    if who.scoped and not budget.within_departments(who.departments):
        who.check_department(",".join(sorted(budget.scope.get("department", []))) or "(all departments)")


@router.get("/api/budgets", tags=["budgets"])
def list_budgets(request: Request, who: Principal = Depends(principal)) -> list[dict[str, Any]]:
    who.require("budgets.read")
    found = ledger_of(request).budgets.list(who.departments if who.scoped else None)
    return [b.summary() for b in found]


@router.post("/api/budgets", tags=["budgets"], status_code=201)
def create_budget(body: BudgetIn, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    who.require("budgets.write")
    budget = ledger_of(request).budgets.create(**body.model_dump(), actor=who.actor)
    return budget.summary()


@router.get("/api/budgets/{key}", tags=["budgets"])
def get_budget(key: BudgetKey, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    who.require("budgets.read")
    ledger = ledger_of(request)
    budget = ledger.budgets.get(key)
    _visible(who, budget)
    return ledger.budgets.status([budget.id])[0]


@router.patch("/api/budgets/{key}", tags=["budgets"])
def adjust_budget(
    key: BudgetKey, body: AdjustIn, request: Request, who: Principal = Depends(principal)
) -> dict[str, Any]:
    """Change the amount mid-period (justification required; large increases go to approval)."""
    who.require("budgets.write")
    return ledger_of(request).budgets.adjust(
        key, body.amount, justification=body.justification, actor=who.actor, force=body.force
    )


@router.delete("/api/budgets/{key}", tags=["budgets"])
def deactivate_budget(
    key: BudgetKey,
    request: Request,
    justification: str = Query(..., min_length=1, description="Why the budget is retired"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    who.require("budgets.write")
    return ledger_of(request).budgets.deactivate(key, justification=justification, actor=who.actor)


@router.get("/api/budgets/{key}/history", tags=["budgets"])
def budget_history(key: BudgetKey, request: Request, who: Principal = Depends(principal)) -> list[dict[str, Any]]:
    who.require("budgets.read")
    ledger = ledger_of(request)
    _visible(who, ledger.budgets.get(key))
    return ledger.budgets.history(key)


@router.post("/api/budgets/{key}/overage-requests", tags=["approvals"], status_code=201)
def request_overage(
    key: BudgetKey, body: OverageIn, request: Request, who: Principal = Depends(principal)
) -> dict[str, Any]:
    who.require("approvals.request")
    ledger = ledger_of(request)
    _visible(who, ledger.budgets.get(key))
    approval_id = ledger.budgets.request_overage(
        key, body.amount, justification=body.justification, actor=who.actor, deadline=body.deadline
    )
    return {"approval_id": approval_id, "status": "pending"}


@router.get("/api/approvals", tags=["approvals"])
def list_approvals(
    request: Request,
    status: str | None = Query(None, pattern="^(pending|approved|declined)$"),
    who: Principal = Depends(principal),
) -> list[dict[str, Any]]:
    who.require("budgets.read")
    return ledger_of(request).budgets.approvals(status, who.departments if who.scoped else None)


@router.post("/api/approvals/{approval_id}/approve", tags=["approvals"])
def approve(
    approval_id: RowId, body: DecisionIn, request: Request, who: Principal = Depends(principal)
) -> dict[str, Any]:
    who.require("approvals.decide")
    return ledger_of(request).budgets.decide(
        approval_id, approve=True, actor=who.actor, note=body.note, amount=body.amount, deadline=body.deadline
    )


@router.post("/api/approvals/{approval_id}/decline", tags=["approvals"])
def decline(
    approval_id: RowId, body: DecisionIn, request: Request, who: Principal = Depends(principal)
) -> dict[str, Any]:
    who.require("approvals.decide")
    return ledger_of(request).budgets.decide(approval_id, approve=False, actor=who.actor, note=body.note)


# -- alerts -------------------------------------------------------------------------------------


class ChannelIn(BaseModel):
    model_config = _Strict
    name: str = Field(min_length=1, max_length=200)
    kind: str
    config: dict[str, Any] = Field(default_factory=dict)


class RuleIn(BaseModel):
    model_config = _Strict
    name: str = Field(min_length=1, max_length=200)
    kind: str
    scope: dict[str, str | list[str]] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    channels: list[str] = Field(default_factory=list)
    cooldown_s: int = Field(default=86_400, ge=0, le=30 * 86_400)
    enabled: bool = True


@router.get("/api/alerts/channels", tags=["alerts"])
def list_channels(request: Request, who: Principal = Depends(principal)) -> list[dict[str, Any]]:
    who.require("alerts.read")
    return [c.to_dict() for c in ledger_of(request).alerts.list_channels()]


@router.post("/api/alerts/channels", tags=["alerts"], status_code=201)
def add_channel(body: ChannelIn, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    who.require("alerts.write")
    ledger = ledger_of(request)
    channel = ledger.alerts.add_channel(body.name, body.kind, body.config)
    record_write(ledger, who, "alert_channel.created", "alert_channel", body.name, {"kind": body.kind})
    return channel.to_dict()


@router.delete("/api/alerts/channels/{name}", tags=["alerts"])
def delete_channel(name: str, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    who.require("alerts.write")
    ledger = ledger_of(request)
    ledger.alerts.delete_channel(name)
    record_write(ledger, who, "alert_channel.deleted", "alert_channel", name)
    return {"deleted": name}


@router.get("/api/alerts/rules", tags=["alerts"])
def list_rules(request: Request, who: Principal = Depends(principal)) -> list[dict[str, Any]]:
    who.require("alerts.read")
    return [r.to_dict() for r in ledger_of(request).alerts.list_rules()]


@router.post("/api/alerts/rules", tags=["alerts"], status_code=201)
def add_rule(body: RuleIn, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    who.require("alerts.write")
    ledger = ledger_of(request)
    rule = ledger.alerts.add_rule(
        body.name,
        body.kind,
        scope=body.scope,
        params=body.params,
        channels=body.channels,
        cooldown_s=body.cooldown_s,
        enabled=body.enabled,
    )
    record_write(ledger, who, "alert_rule.created", "alert_rule", body.name, {"kind": body.kind})
    return rule.to_dict()


@router.patch("/api/alerts/rules/{name}", tags=["alerts"])
def enable_rule(
    name: str, request: Request, enabled: bool = Query(...), who: Principal = Depends(principal)
) -> dict[str, Any]:
    who.require("alerts.write")
    ledger = ledger_of(request)
    ledger.alerts.set_enabled(name, enabled)
    record_write(ledger, who, "alert_rule.enabled" if enabled else "alert_rule.disabled", "alert_rule", name)
    return {"rule": name, "enabled": enabled}


@router.delete("/api/alerts/rules/{name}", tags=["alerts"])
def delete_rule(name: str, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    who.require("alerts.write")
    ledger = ledger_of(request)
    ledger.alerts.delete_rule(name)
    record_write(ledger, who, "alert_rule.deleted", "alert_rule", name)
    return {"deleted": name}


@router.get("/api/alerts/history", tags=["alerts"])
def alert_history(
    request: Request,
    since: str | None = Query(None, description="e.g. 7d"),
    limit: int = Query(100, ge=1, le=1000),
    who: Principal = Depends(principal),
) -> list[dict[str, Any]]:
    who.require("alerts.read")
    ledger = ledger_of(request)
    start = parse_moment(since, now=ledger.clock()) if since else None
    return [a.to_dict() for a in ledger.alerts.history(since=start, limit=limit)]


# -- prices -------------------------------------------------------------------------------------


class OverrideIn(BaseModel):
    model_config = _Strict
    model: str = Field(min_length=1, max_length=256, description="Exact model or a glob such as claude-*")
    provider: str | None = None
    prices: dict[str, Any] | None = Field(default=None, description="e.g. {'input_mtok': '2.5', 'output_mtok': '10'}")
    discount_percent: str | None = None
    multiplier: str | None = None
    service_tier: str | None = None
    effective_from: datetime | None = None
    effective_to: datetime | None = None
    note: str | None = Field(default=None, max_length=2000)


@router.get("/api/pricing/overrides", tags=["pricing"])
def list_overrides(request: Request, who: Principal = Depends(principal)) -> list[dict[str, Any]]:
    who.require("pricing.read")
    return [override_to_dict(o) for o in load_overrides(store_of(request))]


@router.post("/api/pricing/overrides", tags=["pricing"], status_code=201)
def create_override(body: OverrideIn, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    who.require("pricing.write")
    ledger = ledger_of(request)
    override = add_override(
        ledger.store,
        model_pattern=body.model,
        provider=body.provider,
        prices=body.prices,
        discount_percent=body.discount_percent,
        multiplier=body.multiplier,
        service_tier=body.service_tier,
        effective_from=body.effective_from,
        effective_to=body.effective_to,
        note=body.note,
        created_by=who.actor,
        now=ledger.clock(),
    )
    ledger.pricer.set_overrides(load_overrides(ledger.store))
    record_write(ledger, who, "price_override.created", "price_override", override.id, override_to_dict(override))
    return override_to_dict(override)


@router.delete("/api/pricing/overrides/{override_id}", tags=["pricing"])
def remove_override(override_id: RowId, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    who.require("pricing.write")
    ledger = ledger_of(request)
    delete_override(ledger.store, override_id)
    ledger.pricer.set_overrides(load_overrides(ledger.store))
    record_write(ledger, who, "price_override.deleted", "price_override", override_id)
    return {"deleted": override_id}


@router.get("/api/pricing/quote", tags=["pricing"])
def price_quote(
    request: Request,
    model: str = Query(..., min_length=1, max_length=256),
    provider: str | None = Query(None, max_length=256),
    input_tokens: int = Query(0, ge=0, le=10**12),
    output_tokens: int = Query(0, ge=0, le=10**12),
    cache_read_tokens: int = Query(0, ge=0, le=10**12),
    cache_write_tokens: int = Query(0, ge=0, le=10**12),
    reasoning_tokens: int = Query(0, ge=0, le=10**12),
    service_tier: str = Query("standard", pattern="^(standard|batch|flex|priority)$"),
    at: str | None = Query(None, description="Price at this time (default now)"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    """Price one hypothetical request exactly, component by component."""
    who.require("pricing.read")
    ledger = ledger_of(request)
    moment = parse_moment(at, now=ledger.clock(), field="at") if at else ledger.clock()
    return quote(
        ledger.pricer,
        provider=provider,
        model=model,
        timestamp=moment,
        service_tier=service_tier,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        reasoning_tokens=reasoning_tokens,
    )


# -- keys and audit -----------------------------------------------------------------------------


class KeyIn(BaseModel):
    model_config = _Strict
    role: str = Field(description=", ".join(ROLES))
    departments: list[str] = Field(default_factory=list)
    name: str | None = Field(default=None, max_length=200)


@router.get("/api/keys", tags=["keys"])
def keys(request: Request, who: Principal = Depends(principal)) -> list[dict[str, Any]]:
    who.require("keys.manage")
    return list_keys(store_of(request))


@router.post("/api/keys", tags=["keys"], status_code=201)
def new_key(body: KeyIn, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """Create an API key; the key itself is in this response only."""
    who.require("keys.manage")
    ledger = ledger_of(request)
    key, record = create_key(
        ledger.store, role=body.role, departments=body.departments, name=body.name, now=ledger.clock()
    )
    record_write(ledger, who, "api_key.created", "api_key", record["key_id"], record)
    request.app.state.keys_exist = True
    return {"key": key, **record}


@router.delete("/api/keys/{key_id}", tags=["keys"])
def revoke(key_id: str, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    who.require("keys.manage")
    ledger = ledger_of(request)
    revoke_key(ledger.store, key_id)
    record_write(ledger, who, "api_key.revoked", "api_key", key_id)
    return {"revoked": key_id}


@router.get("/api/audit", tags=["audit"])
def audit_entries(
    request: Request,
    since: str = Query("30d"),
    limit: int = Query(200, ge=1, le=5000),
    who: Principal = Depends(principal),
) -> list[dict[str, Any]]:
    """Who changed what, when: budgets, approvals, alerts, prices, keys, ingest calls."""
    who.require("audit.read")
    ledger = ledger_of(request)
    start = parse_moment(since, now=ledger.clock())
    with ledger.store.read() as conn:
        rows = conn.execute(
            select(audit_log).where(audit_log.c.at_us >= to_us(start)).order_by(audit_log.c.id.desc()).limit(limit)
        ).all()
    return [
        {
            "at": from_us(r.at_us).isoformat(),
            "actor": r.actor,
            "action": r.action,
            "entity": r.entity,
            "entity_id": r.entity_id,
            "detail": r.detail,
        }
        for r in rows
    ]
