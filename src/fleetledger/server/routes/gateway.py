"""Gateway policy routes: list, create, delete (the dashboard's actions A3.4-A3.8 call these).

Running gateways pick up a change within their refresh interval (about a second); no restart.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from fleetledger.access.keys import Principal
from fleetledger.gateway import policies as service
from fleetledger.server.audit import record_write
from fleetledger.server.deps import MAX_ROW_ID, RowId, ledger_of, principal, store_of

router = APIRouter(tags=["gateway"])


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(description=", ".join(service.KINDS))
    scope: dict[str, str] = Field(default_factory=dict, description="{} (fleet), {'department': ...} or {'agent': ...}")
    params: dict[str, Any] = Field(default_factory=dict, description="see docs/gateway.md, per kind")
    recommendation_id: int | None = Field(default=None, ge=1, le=MAX_ROW_ID)
    note: str | None = Field(default=None, max_length=2000)


@router.get("/api/gateway/policies")
def list_policies(request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """Every gateway policy, enabled or not."""
    who.require("gateway.read")
    return {"policies": [p.to_dict() for p in service.list_policies(store_of(request))]}


@router.post("/api/gateway/policies", status_code=201)
def create_policy(body: PolicyIn, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    """Switch a policy on for a scope: model_downgrade, cache, provider_switch or max_output_tokens."""
    who.require("gateway.write")
    ledger = ledger_of(request)
    policy = service.create_policy(
        ledger.store,
        kind=body.kind,
        scope=body.scope,
        params=body.params,
        recommendation_id=body.recommendation_id,
        note=body.note,
        created_by=who.actor,
        now=ledger.clock(),
    )
    record_write(ledger, who, "gateway_policy.created", "gateway_policy", policy.id, policy.to_dict())
    return policy.to_dict()


@router.delete("/api/gateway/policies/{policy_id}", status_code=204)
def delete_policy(policy_id: RowId, request: Request, who: Principal = Depends(principal)) -> Response:
    """Remove a policy; gateways stop applying it within their refresh interval."""
    who.require("gateway.write")
    ledger = ledger_of(request)
    service.delete_policy(ledger.store, policy_id)
    record_write(ledger, who, "gateway_policy.deleted", "gateway_policy", policy_id, None)
    return Response(status_code=204)
