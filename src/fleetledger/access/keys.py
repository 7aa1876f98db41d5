"""API keys and what each role may do: the one place access rules live (the server only asks).

Keys look like ``tl_<8-char id>_<32-char secret>``; only a SHA-256 of the secret is stored (keys are
random and long, so a slow password hash adds nothing). A key has a role:

| role | may |
| --- | --- |
| ``admin`` | everything, including API keys |
| ``finops`` | read everything; manage budgets, approvals, alerts and prices |
| ``department_head`` | read its departments' costs and budgets; request overages for them |
| ``viewer`` | read its departments' costs and budgets |
| ``ingest`` | write usage events only |

``department_head`` and ``viewer`` keys name one or more departments; every cost query they make
is filtered to those departments, and asking for another department is refused (403).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Column, Integer, String, Table, func, select, update

from fleetledger.core.errors import Forbidden, InvalidInput, NotFound
from fleetledger.core.time import from_us, to_us
from fleetledger.storage.schema import metadata
from fleetledger.storage.store import Store

__all__ = [
    "ROLES",
    "ACTIONS",
    "Principal",
    "api_keys",
    "create_key",
    "list_keys",
    "revoke_key",
    "authenticate",
    "any_keys",
    "LOCAL_ADMIN",
]

ROLES = ("admin", "finops", "department_head", "viewer", "ingest")
_READERS = {"admin", "finops", "department_head", "viewer"}
_MANAGERS = {"admin", "finops"}
#: action -> roles allowed. Department scoping is applied on top for department_head / viewer.
ACTIONS: dict[str, set[str]] = {
    "events.write": {"admin", "finops", "ingest"},
    "costs.read": _READERS,
    "budgets.read": _READERS,
    "budgets.write": _MANAGERS,
    "approvals.request": {"admin", "finops", "department_head"},
    "approvals.decide": _MANAGERS,
    "alerts.read": _READERS,
    "alerts.write": _MANAGERS,
    "pricing.read": _READERS,
    "pricing.write": _MANAGERS,
    "audit.read": _MANAGERS,
    "keys.manage": {"admin"},
    "metrics.read": _READERS,
    "stream.read": _READERS,
    "gateway.read": _READERS,
    "gateway.write": _MANAGERS,
    # Provider lines are org-wide (project, key, workspace; no department): managers only.
    "reconciliation.read": _MANAGERS,
    "reconciliation.write": _MANAGERS,
    "reports.read": _READERS,
    "reports.schedule": _MANAGERS,
}

_Id = BigInteger().with_variant(Integer(), "sqlite")
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("key_id", String(16), nullable=False, unique=True),
    Column("secret_hash", String(64), nullable=False),
    Column("name", String(200)),
    Column("role", String(32), nullable=False),
    Column("departments", JSON),
    Column("created_us", BigInteger, nullable=False),
    Column("last_used_us", BigInteger),
    Column("revoked", Boolean, nullable=False),
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's role and, for scoped roles, its departments."""

    role: str
    key_id: str | None = None
    name: str | None = None
    departments: tuple[str, ...] = field(default=())

    @property
    def scoped(self) -> bool:
        return self.role in ("department_head", "viewer")

    def can(self, action: str) -> bool:
        return self.role in ACTIONS[action]

    def require(self, action: str) -> None:
        if not self.can(action):
            raise Forbidden(f"a {self.role} key may not {action.replace('.', ' ')}; ask an admin or finops key")

    def allowed_departments(self, requested: Sequence[str | None] | None) -> list[str | None] | None:
        """The department filter a query must use: None (all) for unscoped keys."""
        if not self.scoped:
            return list(requested) if requested else None
        if not requested:
            return list(self.departments)
        outside = [d for d in requested if d not in self.departments]
        if outside:
            raise Forbidden(
                f"this {self.role} key covers department(s) {', '.join(self.departments)}, "
                f"not {', '.join(map(str, outside))}"
            )
        return list(requested)

    def check_department(self, department: str | None) -> None:
        if self.scoped and department not in self.departments:
            raise Forbidden(
                f"this {self.role} key covers department(s) {', '.join(self.departments)}, not {department}"
            )

    @property
    def actor(self) -> str:
        return self.name or self.key_id or self.role


#: Who a caller is when no API key exists yet and the server listens on loopback only.
LOCAL_ADMIN = Principal(role="admin", name="local")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    store: Store, *, role: str, departments: Sequence[str] = (), name: str | None = None, now: datetime
) -> tuple[str, dict[str, Any]]:
    """Create a key; returns the full key (shown once) and its record."""
    if role not in ROLES:
        raise InvalidInput(f"role: {role!r} must be one of {', '.join(ROLES)}")
    departments = tuple(sorted({d.strip() for d in departments if d.strip()}))
    if role in ("department_head", "viewer") and not departments:
        raise InvalidInput(f"department: a {role} key needs at least one --department")
    if role not in ("department_head", "viewer") and departments:
        raise InvalidInput(f"department: a {role} key sees every department; do not pass --department")
    key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(24)
    with store.write() as conn:
        conn.execute(
            api_keys.insert().values(
                key_id=key_id,
                secret_hash=_hash(secret),
                name=name,
                role=role,
                departments=list(departments),
                created_us=to_us(now),
                revoked=False,
            )
        )
    return f"tl_{key_id}_{secret}", {"key_id": key_id, "name": name, "role": role, "departments": list(departments)}


def list_keys(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = conn.execute(select(api_keys).order_by(api_keys.c.id)).all()
    return [
        {
            "key_id": r.key_id,
            "name": r.name,
            "role": r.role,
            "departments": r.departments or [],
            "created_at": from_us(r.created_us).isoformat(),
            "last_used_at": from_us(r.last_used_us).isoformat() if r.last_used_us else None,
            "revoked": r.revoked,
        }
        for r in rows
    ]


def revoke_key(store: Store, key_id: str) -> None:
    with store.write() as conn:
        if not conn.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(revoked=True)).rowcount:
            raise NotFound(f"API key {key_id} does not exist")


def any_keys(store: Store) -> bool:
    with store.read() as conn:
        return bool(conn.execute(select(func.count()).select_from(api_keys).where(~api_keys.c.revoked)).scalar())


def authenticate(store: Store, presented: str, *, now: datetime) -> Principal | None:
    """The principal for a presented key, or None when it is unknown, malformed or revoked."""
    parts = presented.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != "tl":
        return None
    _, key_id, secret = parts
    with store.read() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
    if row is None or row.revoked or not hmac.compare_digest(row.secret_hash, _hash(secret)):
        return None
    if row.last_used_us is None or to_us(now) - row.last_used_us > 60_000_000:
        with store.write() as conn:  # at most once a minute: last use is for people, not accounting
            conn.execute(update(api_keys).where(api_keys.c.id == row.id).values(last_used_us=to_us(now)))
    return Principal(role=row.role, key_id=row.key_id, name=row.name, departments=tuple(row.departments or ()))
