"""Gateway policies: rules the dashboard's actions (A3.4-A3.8) switch on for a scope.

=====================  =====================================================================
kind                   params
=====================  =====================================================================
``model_downgrade``    ``{"from_model": "gpt-4o", "to_model": "gpt-4o-mini"}``
``cache``              ``{"mode": "exact"|"semantic", "ttl_s": 3600, "threshold": 0.95?}``
``provider_switch``    ``{"model": "gpt-4o", "from_provider": "openai", "to_provider": "azure"}``
``max_output_tokens``  ``{"max_output_tokens": 800}``
=====================  =====================================================================

A scope is ``{}`` (the fleet) or dimension filters such as ``{"department": "research"}`` or
``{"agent": "summarizer"}``, matched against the virtual key's attribution. When several policies
of a kind match a request, the most specific scope wins (more filters; ``agent`` before
``department``), then the newest. Policies are stored in the ledger database; every change bumps a
version that running gateways check each second (:class:`PolicyBook`), so no restart is needed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import delete, select

from fleetledger.core.errors import InvalidInput, NotFound
from fleetledger.core.time import from_us, to_us
from fleetledger.gateway.keys import KEY_DIMS
from fleetledger.gateway.tables import POLICIES_VERSION_KEY, gateway_policies
from fleetledger.storage.store import Store

__all__ = ["KINDS", "Policy", "PolicyBook", "Applied", "create_policy", "list_policies", "delete_policy"]

KINDS = ("model_downgrade", "cache", "provider_switch", "max_output_tokens")
_Name = Annotated[str, Field(min_length=1, max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ModelDowngrade(_Strict):
    from_model: _Name
    to_model: _Name


class CachePolicy(_Strict):
    mode: Literal["exact", "semantic"] = "exact"
    ttl_s: Annotated[int, Field(ge=1, le=31_536_000)] = 3600
    threshold: Annotated[float | None, Field(default=None, gt=0, le=1)] = None


class ProviderSwitch(_Strict):
    model: _Name
    from_provider: _Name
    to_provider: _Name


class MaxOutputTokens(_Strict):
    max_output_tokens: Annotated[int, Field(ge=1, le=10_000_000)]


_PARAMS: dict[str, type[_Strict]] = {
    "model_downgrade": ModelDowngrade,
    "cache": CachePolicy,
    "provider_switch": ProviderSwitch,
    "max_output_tokens": MaxOutputTokens,
}


@dataclass(frozen=True, slots=True)
class Policy:
    id: int
    kind: str
    scope: dict[str, str]
    params: dict[str, Any]
    enabled: bool
    recommendation_id: int | None
    note: str | None
    created_us: int
    created_by: str | None

    def matches(self, dims: Mapping[str, Any]) -> bool:
        return all(dims.get(k) == v for k, v in self.scope.items())

    @property
    def specificity(self) -> tuple[int, int, int]:
        return (len(self.scope), int("agent" in self.scope), self.id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "scope": dict(self.scope),
            "params": dict(self.params),
            "enabled": self.enabled,
            "recommendation_id": self.recommendation_id,
            "note": self.note,
            "created_at": from_us(self.created_us).isoformat(),
            "created_by": self.created_by,
        }


def validate_params(kind: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    if kind not in _PARAMS:
        raise InvalidInput(f"kind: {kind!r} must be one of {', '.join(KINDS)}")
    try:
        model = _PARAMS[kind].model_validate(dict(params or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"params.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise InvalidInput(f"{kind} policy: {problems}") from None
    return model.model_dump(exclude_none=True)


def validate_scope(scope: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (scope or {}).items():
        if key not in KEY_DIMS:
            raise InvalidInput(f"scope: unknown dimension {key!r}; use one of {', '.join(KEY_DIMS)}")
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"scope.{key}: needs a non-empty string")
        out[key] = value.strip()
    return out


def _from_row(row: Any) -> Policy:
    return Policy(
        id=int(row.id),
        kind=row.kind,
        scope=dict(row.scope or {}),
        params=dict(row.params or {}),
        enabled=bool(row.enabled),
        recommendation_id=row.recommendation_id,
        note=row.note,
        created_us=int(row.created_us),
        created_by=row.created_by,
    )


def create_policy(
    store: Store,
    *,
    kind: str,
    scope: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    recommendation_id: int | None = None,
    note: str | None = None,
    created_by: str | None = None,
    now: datetime,
) -> Policy:
    clean_params = validate_params(kind, params)
    clean_scope = validate_scope(scope)
    with store.write() as conn:
        result = conn.execute(
            gateway_policies.insert().values(
                kind=kind,
                scope=clean_scope,
                params=clean_params,
                enabled=True,
                recommendation_id=recommendation_id,
                note=note,
                created_us=to_us(now),
                created_by=created_by,
            )
        )
        policy_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        store.set_meta(POLICIES_VERSION_KEY, secrets.token_hex(8), conn)
        row = conn.execute(select(gateway_policies).where(gateway_policies.c.id == policy_id)).one()
    return _from_row(row)


def list_policies(store: Store) -> list[Policy]:
    with store.read() as conn:
        rows = conn.execute(select(gateway_policies).order_by(gateway_policies.c.id)).all()
    return [_from_row(r) for r in rows]


def delete_policy(store: Store, policy_id: int) -> None:
    with store.write() as conn:
        if not conn.execute(delete(gateway_policies).where(gateway_policies.c.id == policy_id)).rowcount:
            raise NotFound(f"gateway policy {policy_id} does not exist")
        store.set_meta(POLICIES_VERSION_KEY, secrets.token_hex(8), conn)


@dataclass(slots=True)
class Applied:
    """What the policies say about one request."""

    model: str
    upstream: str | None = None
    downgraded_from: str | None = None
    max_output_tokens: int | None = None
    cache: dict[str, Any] | None = None
    policy_ids: list[int] = field(default_factory=list)


class PolicyBook:
    """The enabled policies, reloaded when the version in ``meta`` changes."""

    def __init__(self, store: Store | None, policies: Sequence[Policy] = ()) -> None:
        self.store = store
        self.version: Any = object()
        self.policies: list[Policy] = sorted(policies, key=lambda p: p.specificity, reverse=True)

    def refresh(self) -> bool:
        if self.store is None:
            return False
        from fleetledger.storage.schema import meta

        with self.store.read() as conn:
            version = conn.execute(select(meta.c.value).where(meta.c.key == POLICIES_VERSION_KEY)).scalar()
            if version == self.version:
                return False
            rows = conn.execute(select(gateway_policies).where(gateway_policies.c.enabled)).all()
        self.policies = sorted((_from_row(r) for r in rows), key=lambda p: p.specificity, reverse=True)
        self.version = version
        return True

    def apply(self, dims: Mapping[str, Any], model: str, upstream_for: Callable[[str], str | None]) -> Applied:
        """The policies for a request of ``model`` by a key with ``dims``.

        ``upstream_for(model)`` names the upstream a model is routed to; a provider switch applies
        to the model after any downgrade.
        """
        applied = Applied(model=model, upstream=upstream_for(model))
        if not self.policies:
            return applied
        seen: set[str] = set()
        for policy in self.policies:  # most specific first: the first of each kind wins
            if not policy.matches(dims):
                continue
            params = policy.params
            if policy.kind == "model_downgrade" and "model_downgrade" not in seen:
                if params["from_model"] == applied.model:
                    applied.downgraded_from = applied.model
                    applied.model = params["to_model"]
                    applied.upstream = upstream_for(applied.model)
                    seen.add(policy.kind)
                    applied.policy_ids.append(policy.id)
            elif policy.kind == "max_output_tokens" and policy.kind not in seen:
                applied.max_output_tokens = int(params["max_output_tokens"])
                seen.add(policy.kind)
                applied.policy_ids.append(policy.id)
            elif policy.kind == "cache" and policy.kind not in seen:
                applied.cache = dict(params)
                seen.add(policy.kind)
                applied.policy_ids.append(policy.id)
        for policy in self.policies:  # provider switches apply to the model after any downgrade
            if policy.kind != "provider_switch" or not policy.matches(dims):
                continue
            params = policy.params
            if params["model"] == applied.model and params["from_provider"] == applied.upstream:
                applied.upstream = params["to_provider"]
                applied.policy_ids.append(policy.id)
                break
        return applied
