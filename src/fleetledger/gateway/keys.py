"""Virtual keys: what a client presents to the gateway instead of a provider key.

A key looks like ``tlgw_<8-hex id>_<secret>``; only the SHA-256 of the whole key is stored (keys
are random and long, so a slow password hash adds nothing). Each key maps to attribution
dimensions (department, project, agent, environment...), an optional model allow-list, an optional
requests-per-minute limit and a cache mode (``off``, ``exact``, ``semantic``).

Running gateways keep every key in memory (:class:`KeyBook`) and reload when the
``gateway_keys_version`` meta row changes, so a revoked key stops working within the refresh
interval (1 second by default) without a restart.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from fleetledger.core.errors import InvalidInput, NotFound
from fleetledger.core.time import from_us, to_us
from fleetledger.core.usage import DIMENSIONS
from fleetledger.gateway.tables import KEYS_VERSION_KEY, gateway_keys
from fleetledger.storage.store import Store

__all__ = ["VirtualKey", "KeyBook", "create_key", "list_keys", "revoke_key", "hash_key", "CACHE_MODES", "KEY_DIMS"]

CACHE_MODES = ("off", "exact", "semantic")
#: Attribution a key may carry (the event dimensions a caller chooses; not provider/model/status).
KEY_DIMS = tuple(d for d in DIMENSIONS if d not in ("provider", "model", "service_tier", "category", "status"))


@dataclass(frozen=True, slots=True)
class VirtualKey:
    key_id: str
    name: str | None
    dims: dict[str, str]
    allowed_models: tuple[str, ...] | None
    rate_limit_rpm: int | None
    cache: str
    revoked: bool = False

    def allows(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "dims": dict(self.dims),
            "allowed_models": list(self.allowed_models) if self.allowed_models is not None else None,
            "rate_limit_rpm": self.rate_limit_rpm,
            "cache": self.cache,
            "revoked": self.revoked,
        }


def hash_key(presented: str) -> str:
    return hashlib.sha256(presented.encode()).hexdigest()


def _validate_dims(dims: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in dims.items():
        if name not in KEY_DIMS:
            raise InvalidInput(f"dims: unknown dimension {name!r}; use one of {', '.join(KEY_DIMS)}")
        text = str(value).strip()
        if not text:
            raise InvalidInput(f"dims.{name}: needs a value")
        if len(text) > 256:
            raise InvalidInput(f"dims.{name}: longer than 256 characters")
        out[name] = text
    return out


def create_key(
    store: Store,
    *,
    now: datetime,
    name: str | None = None,
    dims: Mapping[str, Any] | None = None,
    allowed_models: Sequence[str] | None = None,
    rate_limit_rpm: int | None = None,
    cache: str = "off",
) -> tuple[str, VirtualKey]:
    """Create a virtual key; returns the full key (shown once) and its record."""
    clean = _validate_dims(dims or {})
    if cache not in CACHE_MODES:
        raise InvalidInput(f"cache: {cache!r} must be one of {', '.join(CACHE_MODES)}")
    if rate_limit_rpm is not None and not 1 <= rate_limit_rpm <= 10_000_000:
        raise InvalidInput(f"rate_limit_rpm: {rate_limit_rpm} must be between 1 and 10000000")
    models = None
    if allowed_models:
        models = tuple(sorted({m.strip() for m in allowed_models if m.strip()}))
    key_id = secrets.token_hex(4)
    key = f"tlgw_{key_id}_{secrets.token_urlsafe(24)}"
    with store.write() as conn:
        conn.execute(
            gateway_keys.insert().values(
                key_id=key_id,
                key_hash=hash_key(key),
                name=name,
                dims=clean,
                allowed_models=list(models) if models is not None else None,
                rate_limit_rpm=rate_limit_rpm,
                cache=cache,
                created_us=to_us(now),
                revoked=False,
            )
        )
        store.set_meta(KEYS_VERSION_KEY, secrets.token_hex(8), conn)
    return key, VirtualKey(key_id, name, clean, models, rate_limit_rpm, cache)


def _from_row(row: Any) -> VirtualKey:
    models = row.allowed_models
    return VirtualKey(
        key_id=row.key_id,
        name=row.name,
        dims=dict(row.dims or {}),
        allowed_models=tuple(models) if models is not None else None,
        rate_limit_rpm=row.rate_limit_rpm,
        cache=row.cache,
        revoked=bool(row.revoked),
    )


def list_keys(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = conn.execute(select(gateway_keys).order_by(gateway_keys.c.id)).all()
    out = []
    for row in rows:
        item = _from_row(row).to_dict()
        item["created_at"] = from_us(row.created_us).isoformat()
        out.append(item)
    return out


def revoke_key(store: Store, key_id: str, *, now: datetime) -> None:
    with store.write() as conn:
        changed = conn.execute(
            update(gateway_keys).where(gateway_keys.c.key_id == key_id).values(revoked=True, revoked_us=to_us(now))
        ).rowcount
        if not changed:
            raise NotFound(f"virtual key {key_id} does not exist (see `fleetledger gateway keys list`)")
        store.set_meta(KEYS_VERSION_KEY, secrets.token_hex(8), conn)


class KeyBook:
    """Every active virtual key of the database, by hash; reloaded when the version changes.

    ``defaults`` (gateway.yaml ``keys``) fill what a key leaves unset: attribution dimensions the
    key does not name, the rate limit of keys without one, the cache mode of keys with ``off``.
    """

    def __init__(self, store: Store, defaults: Any = None) -> None:
        self.store = store
        self.defaults = defaults
        self.version: Any = object()
        self.by_hash: dict[str, VirtualKey] = {}

    def _with_defaults(self, key: VirtualKey) -> VirtualKey:
        defaults = self.defaults
        if defaults is None:
            return key
        return VirtualKey(
            key_id=key.key_id,
            name=key.name,
            dims={**defaults.dims, **key.dims},
            allowed_models=key.allowed_models,
            rate_limit_rpm=key.rate_limit_rpm or defaults.rate_limit_rpm,
            cache=key.cache if key.cache != "off" else defaults.cache,
            revoked=key.revoked,
        )

    def refresh(self) -> bool:
        """Reload when another process (or this one) changed the keys; True when reloaded."""
        with self.store.read() as conn:
            version = conn.execute(select(_meta_value(KEYS_VERSION_KEY))).scalar()
            if version == self.version:
                return False
            rows = conn.execute(select(gateway_keys).where(~gateway_keys.c.revoked)).all()
        self.by_hash = {row.key_hash: self._with_defaults(_from_row(row)) for row in rows}
        self.version = version
        return True

    def find(self, presented: str) -> VirtualKey | None:
        return self.by_hash.get(hash_key(presented))


def _meta_value(key: str) -> Any:
    from fleetledger.storage.schema import meta

    return select(meta.c.value).where(meta.c.key == key).scalar_subquery()
