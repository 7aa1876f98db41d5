"""Every write through the API is audited: who (the key), what, when."""

from __future__ import annotations

from typing import Any

from fleetledger.access.keys import Principal
from fleetledger.budgets.service import audit
from fleetledger.ledger.facade import Ledger

__all__ = ["record_write"]


def record_write(
    ledger: Ledger, who: Principal, action: str, entity: str, entity_id: Any, detail: dict[str, Any] | None = None
) -> None:
    with ledger.store.write() as conn:
        audit(
            conn,
            at=ledger.clock(),
            actor=who.actor,
            action=action,
            entity=entity,
            entity_id=entity_id,
            detail={"role": who.role, **(detail or {})},
        )
