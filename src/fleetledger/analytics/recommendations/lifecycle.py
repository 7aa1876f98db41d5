"""Stored recommendations: reading them back, who may see them, and the status lifecycle.

Lifecycle: ``identified -> in_review -> approved -> implemented | declined``; an implemented one can
go back to ``approved`` (rolled back), a declined one be reopened. Implementing records when
(``implemented_us``), the baseline :mod:`.realized` measures the saving from.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from fleetledger.analytics.recommendations.recommendation import STATUSES, Recommendation
from fleetledger.analytics.recommendations.tables import recommendations
from fleetledger.core.errors import Conflict, InvalidInput, NotFound
from fleetledger.core.time import to_us

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["from_row", "visible_to", "list_recommendations", "get_recommendation", "set_status"]

_TRANSITIONS = {
    "identified": {"in_review", "approved", "declined"},
    "in_review": {"identified", "approved", "declined"},
    "approved": {"in_review", "implemented", "declined"},
    "implemented": {"approved", "declined"},  # rolled back
    "declined": {"identified", "in_review"},
}


def from_row(row: Any) -> Recommendation:
    return Recommendation(
        id=row.id, kind=row.kind, scope=dict(row.scope or {}), title=row.title, current_nanos=int(row.current_nanos),
        optimized_nanos=int(row.optimized_nanos), effort=row.effort, risk=row.risk, quality_impact=row.quality_impact,
        steps=list(row.steps or []), rollback=list(row.rollback or []), status=row.status,
        implemented_us=row.implemented_us, realized=row.realized, fingerprint=row.fingerprint,
        created_us=row.created_us, updated_us=row.updated_us,
    )  # fmt: skip


def visible_to(rec: Recommendation, departments: Sequence[str | None] | None) -> bool:
    """Whether a caller limited to ``departments`` (None: everything) may see ``rec``: all of its spend
    is in those departments. Recommendations stored before departments were recorded are not shown."""
    if departments is None:
        return True
    mine: list[Any] = list(rec.scope.get("departments") or rec.scope.get("department") or [])
    return bool(mine) and set(mine) <= set(departments)


def list_recommendations(
    ledger: Ledger,
    *,
    status: str | None = None,
    kind: str | None = None,
    departments: Sequence[str | None] | None = None,
) -> list[Recommendation]:
    """Stored recommendations, largest monthly saving first (``departments``: only theirs, see :func:`visible_to`)."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    statement = select(recommendations)
    if status is not None:
        statement = statement.where(recommendations.c.status == status)
    if kind is not None:
        statement = statement.where(recommendations.c.kind == kind)
    with ledger.store.read() as conn:
        found = [from_row(r) for r in conn.execute(statement)]
    found = [r for r in found if visible_to(r, departments)]
    return sorted(found, key=lambda r: (-r.savings_nanos, r.id))


def get_recommendation(ledger: Ledger, rec_id: int) -> Recommendation:
    with ledger.store.read() as conn:
        row = conn.execute(select(recommendations).where(recommendations.c.id == rec_id)).first()
    if row is None:
        raise NotFound(f"recommendation {rec_id} does not exist; see `fleetledger recommend list`")
    return from_row(row)


def set_status(ledger: Ledger, rec_id: int, status: str, *, now: datetime | None = None) -> Recommendation:
    """Move a recommendation along its lifecycle; ``implemented`` records when (the realized baseline)."""
    if status not in STATUSES:
        raise InvalidInput(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    current = get_recommendation(ledger, rec_id)
    if status == current.status:
        return current
    if status not in _TRANSITIONS[current.status]:
        allowed = ", ".join(sorted(_TRANSITIONS[current.status]))
        raise Conflict(f"recommendation {rec_id} is {current.status}; it can move to {allowed}, not {status}")
    now_us = to_us(now or ledger.clock())
    values: dict[str, Any] = {"status": status, "updated_us": now_us}
    if status == "implemented":
        values.update(implemented_us=now_us, realized=None)
    with ledger.store.write() as conn:
        conn.execute(update(recommendations).where(recommendations.c.id == rec_id).values(**values))
    return get_recommendation(ledger, rec_id)
