"""What the route modules share: the caller, the ledger, bounded path ids, the caller's filters.

The routes import from here and :mod:`fleetledger.server.app` imports the routes, so no route
module imports the app (docs/decisions/0014-package-layers.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Annotated

from fastapi import Path, Request
from pydantic import AfterValidator

from fleetledger.access.keys import LOCAL_ADMIN, Principal, any_keys, authenticate
from fleetledger.core.errors import FleetLedgerError
from fleetledger.core.filters import Where, parse_where
from fleetledger.ledger.facade import Ledger
from fleetledger.storage.store import Store

__all__ = [
    "MAX_ROW_ID",
    "BudgetKey",
    "RowId",
    "Unauthorized",
    "ledger_of",
    "principal",
    "scoped",
    "scoped_where",
    "store_of",
]

#: Row ids are signed 64-bit integers: a larger number names nothing (and overflows the driver).
MAX_ROW_ID = 2**63 - 1

#: An integer row id in a path (``/api/approvals/{approval_id}``): 1 .. 2**63-1, else a 422.
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="Row id, 1 .. 2**63-1")]


def _budget_key(key: str) -> str:
    if key.isdigit() and not (key.isascii() and 1 <= int(key) <= MAX_ROW_ID):
        raise ValueError(f"a budget id is 1 .. {MAX_ROW_ID} in ASCII digits")
    return key


#: A budget's name or id in a path (``/api/budgets/{key}``): all digits is an id, bounded as
#: :data:`RowId`; anything else is a name.
BudgetKey = Annotated[
    str, Path(min_length=1, max_length=200, description="Budget name or id"), AfterValidator(_budget_key)
]


class Unauthorized(FleetLedgerError):
    code = "unauthorized"
    http_status = 401


def ledger_of(request: Request) -> Ledger:
    return request.app.state.ledger  # type: ignore[no-any-return]


def store_of(request: Request) -> Store:
    return ledger_of(request).store


def principal(request: Request) -> Principal:
    """The caller, from its API key (or the local admin while no key exists on loopback)."""
    state = request.app.state
    header = request.headers.get("authorization", "")
    presented = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    ledger: Ledger = state.ledger
    if presented:
        found = authenticate(ledger.store, presented, now=ledger.clock())
        if found is None:
            raise Unauthorized("unknown or revoked API key")
        return found
    now = time.monotonic()
    if now - state.keys_checked_at > 2.0:
        state.keys_exist = any_keys(ledger.store)
        state.keys_checked_at = now
    if not state.keys_exist and state.local_only:
        return LOCAL_ADMIN
    raise Unauthorized(
        "an API key is required: Authorization: Bearer tl_... (create one with `fleetledger keys create`)"
    )


def scoped(who: Principal, where: Where) -> Where:
    """``where`` narrowed to the caller's departments (naming another department is a 403)."""
    departments = who.allowed_departments(where.get("department"))
    if departments is not None:
        where = {**where, "department": departments}
    return where


def scoped_where(who: Principal, items: Iterable[str]) -> Where:
    """The caller's ``key=value`` filters (:mod:`fleetledger.core.filters`), narrowed to its departments."""
    return scoped(who, parse_where(items, what="where"))
