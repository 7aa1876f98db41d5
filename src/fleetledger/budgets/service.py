"""Budgets with accountability: creation with hierarchy checks, adjustments, approvals, status.

Rules kept here, for every adapter (CLI, REST, dashboard):

* Amount > 0; thresholds 0 < warning < critical <= 100; a custom period that ends after it starts;
  a known time zone; a known action (and a model for ``downgrade``, a rate for ``throttle``).
* A child budget must narrow its parent's scope, and the children of a parent with the same period
  may not be allocated more than the parent's amount unless ``force=True``, which is audited.
* A mid-period change needs a justification. An increase above ``approval_limit_usd`` (a setting)
  becomes an approval request instead of a change. Overages are requested, then approved (possibly
  for a different amount, with a deadline until which the limit is raised) or declined.
* Every change is in ``budget_changes`` (who, when, old, new, why) and in the audit log.

All of it happens in one transaction per call, so a refused change writes nothing.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from fleetledger.budgets.enforce import BUDGETS_VERSION_KEY, Enforcer
from fleetledger.budgets.model import ACTIONS, Budget, normalize_scope, validate_period
from fleetledger.budgets.tables import approvals, audit_log, budget_changes, budgets
from fleetledger.core.errors import Conflict, InvalidInput, NotFound
from fleetledger.core.money import NANOS_PER_USD, format_usd, parse_usd, usd_to_nanos
from fleetledger.core.time import from_us, to_us
from fleetledger.storage.query import grouped_costs
from fleetledger.storage.store import Store

__all__ = ["BudgetService", "audit"]

_PCT = Decimal("0.01")


def audit(
    conn: Connection,
    *,
    at: datetime,
    actor: str | None,
    action: str,
    entity: str,
    entity_id: Any,
    detail: Mapping[str, Any] | None = None,
) -> None:
    conn.execute(
        audit_log.insert().values(
            at_us=to_us(at),
            actor=actor,
            action=action,
            entity=entity,
            entity_id=str(entity_id) if entity_id is not None else None,
            detail=dict(detail or {}),
        )
    )


def _percent(value: Any, field: str) -> Decimal:
    number = parse_usd(value, field=field)
    if not Decimal(0) < number <= Decimal(100):
        raise InvalidInput(f"{field}: must be between 0 and 100, got {value}")
    return number


class BudgetService:
    def __init__(
        self,
        store: Store,
        enforcer: Enforcer,
        *,
        clock: Callable[[], datetime],
        fx_rates: Mapping[str, Decimal],
        approval_limit_usd: Decimal | None = None,
    ) -> None:
        self.store = store
        self.enforcer = enforcer
        self.clock = clock
        self.fx_rates = fx_rates
        self.approval_limit_usd = approval_limit_usd
        self._status_cache: dict[Any, tuple[float, Any, list[dict[str, Any]]]] = {}
        self._status_lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------------

    def get(self, key: int | str, conn: Connection | None = None) -> Budget:
        if conn is None:
            with self.store.read() as own:
                return self.get(key, own)
        column = budgets.c.id if isinstance(key, int) or str(key).isdigit() else budgets.c.name
        value = int(key) if column is budgets.c.id else key
        row = conn.execute(select(budgets).where(column == value)).first()
        if row is None:
            raise NotFound(f"budget {key!r} does not exist (see `fleetledger budget list`)")
        book = self.enforcer.book(conn)
        return book.budgets.get(row.id) or Budget.from_row(row)

    def list(self, departments: Sequence[str] | None = None) -> list[Budget]:
        """Every budget, or (``departments`` given) those scoped within these departments."""
        with self.store.read() as conn:
            rows = conn.execute(select(budgets).order_by(budgets.c.id)).all()
            book = self.enforcer.book(conn)
        found = [book.budgets.get(r.id) or Budget.from_row(r) for r in rows]
        if departments is not None:
            found = [b for b in found if b.within_departments(departments)]
        return found

    # -- creating --------------------------------------------------------------------------------

    def _usd_limit(self, amount: Decimal, currency: str) -> int:
        currency = currency.upper()
        if currency == "USD":
            return usd_to_nanos(amount)
        rate = self.fx_rates.get(currency)
        if rate is None:
            raise InvalidInput(f"currency: no exchange rate configured for {currency}")
        return usd_to_nanos(amount / rate)

    def create(
        self,
        *,
        name: str,
        amount: Any,
        scope: Mapping[str, Any] | Sequence[str] | None = None,
        period: str = "monthly",
        currency: str = "USD",
        timezone: str = "UTC",
        warning_pct: Any = "80",
        critical_pct: Any = "95",
        action: str = "notify",
        downgrade_model: str | None = None,
        throttle_rpm: int | None = None,
        fail_mode: str | None = None,
        parent: int | str | None = None,
        window_days: int | None = None,
        starts: datetime | None = None,
        ends: datetime | None = None,
        force: bool = False,
        actor: str | None = None,
    ) -> Budget:
        name = (name or "").strip()
        if not name:
            raise InvalidInput("name: required")
        value = parse_usd(amount, field="amount")
        if value <= 0:
            raise InvalidInput(f"amount: must be positive, got {amount}")
        warning, critical = _percent(warning_pct, "warning_pct"), _percent(critical_pct, "critical_pct")
        if warning >= critical:
            raise InvalidInput(f"thresholds: warning ({warning}%) must be below critical ({critical}%)")
        if action not in ACTIONS:
            raise InvalidInput(f"action: {action!r} must be one of {', '.join(ACTIONS)}")
        if action == "downgrade" and not downgrade_model:
            raise InvalidInput("downgrade_model: a downgrade budget names the cheaper model to switch to")
        if action == "throttle" and not (throttle_rpm and throttle_rpm > 0):
            raise InvalidInput("throttle_rpm: a throttle budget needs a positive requests-per-minute limit")
        fail_mode = fail_mode or ("closed" if action == "block" else "open")
        if fail_mode not in ("closed", "open"):
            raise InvalidInput(f"fail_mode: {fail_mode!r} must be closed or open")
        starts_us = to_us(starts) if starts else None
        ends_us = to_us(ends) if ends else None
        validate_period(period, timezone, window_days, starts_us, ends_us)
        scope_map = normalize_scope(scope)
        limit = self._usd_limit(value, currency)
        now = self.clock()
        with self.store.write() as conn:
            self.enforcer.lock_for_change(conn)
            if conn.execute(select(budgets.c.id).where(budgets.c.name == name)).first():
                raise Conflict(f"name: a budget called {name!r} exists already")
            parent_budget = self.get(parent, conn) if parent is not None else None
            if parent_budget is not None:
                self._check_child(
                    conn, parent_budget, scope_map, period, limit, force=force, actor=actor, child_name=name, now=now
                )
            new_id = conn.execute(
                budgets.insert()
                .values(
                    name=name,
                    scope=scope_map,
                    period=period,
                    window_days=window_days,
                    starts_us=starts_us,
                    ends_us=ends_us,
                    timezone=timezone,
                    amount=f"{value:f}",
                    currency=currency.upper(),
                    limit_nanos=limit,
                    warning_pct=f"{warning:f}",
                    critical_pct=f"{critical:f}",
                    action=action,
                    downgrade_model=downgrade_model,
                    throttle_rpm=throttle_rpm,
                    fail_mode=fail_mode,
                    parent_id=parent_budget.id if parent_budget else None,
                    active=True,
                    created_by=actor,
                    created_us=to_us(now),
                    updated_us=to_us(now),
                )
                .returning(budgets.c.id)
            ).scalar_one()
            budget = Budget.from_row(conn.execute(select(budgets).where(budgets.c.id == new_id)).one())
            self._open_balance(conn, budget, now)
            conn.execute(
                budget_changes.insert().values(
                    budget_id=new_id, kind="created", new_amount=f"{value:f}", actor=actor, at_us=to_us(now)
                )
            )
            audit(
                conn,
                at=now,
                actor=actor,
                action="budget.created",
                entity="budget",
                entity_id=new_id,
                detail=budget.summary(),
            )
            self.enforcer.bump_version(conn)
        return budget

    def _check_child(
        self,
        conn: Connection,
        parent: Budget,
        scope: Mapping[str, builtins.list[str]],
        period: str,
        limit: int,
        *,
        force: bool,
        actor: str | None,
        child_name: str,
        now: datetime,
        exclude_id: int | None = None,
    ) -> None:
        for key, values in parent.scope.items():
            if key not in scope or not set(scope[key]) <= set(values):
                raise InvalidInput(
                    f"scope: a child of {parent.name!r} must keep its filter {key}={'|'.join(values)} "
                    "(a child narrows its parent's scope, so its spend counts in the parent)"
                )
        siblings = conn.execute(
            select(func.coalesce(func.sum(budgets.c.limit_nanos), 0)).where(
                and_(
                    budgets.c.parent_id == parent.id,
                    budgets.c.period == period,
                    budgets.c.active,
                    budgets.c.id != (exclude_id or -1),
                )
            )
        ).scalar()
        allocated = int(siblings or 0) + limit
        if period == parent.period and allocated > parent.limit_nanos:
            message = (
                f"amount: children of {parent.name!r} would be allocated {format_usd(allocated)} USD, more than "
                f"its {format_usd(parent.limit_nanos)} USD"
            )
            if not force:
                raise InvalidInput(message + "; pass force to allocate anyway (audited)")
            audit(
                conn,
                at=now,
                actor=actor,
                action="budget.forced_allocation",
                entity="budget",
                entity_id=parent.id,
                detail={
                    "child": child_name,
                    "allocated_usd": format_usd(allocated),
                    "parent_limit_usd": format_usd(parent.limit_nanos),
                },
            )

    def _open_balance(self, conn: Connection, budget: Budget, now: datetime) -> None:
        """Count the spend already in the current window (the ledger is the source of truth)."""
        window = budget.window(now)
        where: dict[str, Sequence[str | None]] = {k: list(v) for k, v in budget.scope.items()}
        if window.rolling:
            rows = grouped_costs(self.store, ["hour"], window.start_us, to_us(now) + 1, where, conn=conn)
            changes = [
                (budget.id, int(r.keys[0]), int(r.measures["cost_nanos"]), 0, int(r.measures["requests"])) for r in rows
            ]
        else:
            rows = grouped_costs(self.store, [], window.start_us, window.end_us, where, conn=conn)
            total = rows[0].measures if rows else {"cost_nanos": 0, "requests": 0}
            changes = [(budget.id, window.bucket_us, int(total["cost_nanos"]), 0, int(total["requests"]))]
        if changes:
            self.enforcer._add_usage(conn, changes)  # noqa: SLF001 - same package
        # The last 8 UTC days of spend, so the burn rate is right from the start.
        today = to_us(now) - to_us(now) % 86_400_000_000
        days = grouped_costs(self.store, ["day"], today - 8 * 86_400_000_000, to_us(now) + 1, where, conn=conn)
        self.enforcer.add_daily(
            conn,
            [(budget.id, int(r.keys[0]), int(r.measures["cost_nanos"]), int(r.measures["requests"])) for r in days],
        )

    # -- changing --------------------------------------------------------------------------------

    def adjust(
        self, key: int | str, new_amount: Any, *, justification: str, actor: str | None = None, force: bool = False
    ) -> dict[str, Any]:
        """Change the amount mid-period; above the approval limit this files an approval request."""
        justification = (justification or "").strip()
        if not justification:
            raise InvalidInput("justification: a budget change needs a reason")
        value = parse_usd(new_amount, field="amount")
        if value <= 0:
            raise InvalidInput(f"amount: must be positive, got {new_amount}")
        now = self.clock()
        with self.store.write() as conn:
            self.enforcer.lock_for_change(conn)
            budget = self.get(key, conn)
            limit = self._usd_limit(value, budget.currency)
            if (
                self.approval_limit_usd is not None
                and value > budget.amount
                and Decimal(limit) / NANOS_PER_USD > self.approval_limit_usd
            ):
                approval_id = self._file_request(conn, budget, "increase", value, justification, actor, now, None)
                return {"status": "pending_approval", "approval_id": approval_id, "budget": budget.name}
            if budget.parent_id is not None:
                parent = self.get(budget.parent_id, conn)
                self._check_child(
                    conn,
                    parent,
                    budget.scope,
                    budget.period,
                    limit,
                    force=force,
                    actor=actor,
                    child_name=budget.name,
                    now=now,
                    exclude_id=budget.id,
                )
            self._apply_amount(conn, budget, value, limit, justification, actor, now, kind="adjusted")
            self.enforcer.bump_version(conn)
        self.enforcer.publish_after(
            [
                (
                    "budget.adjusted",
                    {
                        "budget_id": budget.id,
                        "name": budget.name,
                        "old_amount": f"{budget.amount:f}",
                        "new_amount": f"{value:f}",
                        "currency": budget.currency,
                        "justification": justification,
                        "actor": actor,
                    },
                )
            ]
        )
        return {
            "status": "adjusted",
            "budget": budget.name,
            "old_amount": f"{budget.amount:f}",
            "new_amount": f"{value:f}",
        }

    def _apply_amount(
        self,
        conn: Connection,
        budget: Budget,
        value: Decimal,
        limit: int,
        justification: str,
        actor: str | None,
        now: datetime,
        *,
        kind: str,
        approval_id: int | None = None,
    ) -> None:
        conn.execute(
            update(budgets)
            .where(budgets.c.id == budget.id)
            .values(amount=f"{value:f}", limit_nanos=limit, updated_us=to_us(now))
        )
        conn.execute(
            budget_changes.insert().values(
                budget_id=budget.id,
                kind=kind,
                old_amount=f"{budget.amount:f}",
                new_amount=f"{value:f}",
                justification=justification,
                actor=actor,
                approval_id=approval_id,
                at_us=to_us(now),
            )
        )
        audit(
            conn,
            at=now,
            actor=actor,
            action=f"budget.{kind}",
            entity="budget",
            entity_id=budget.id,
            detail={"old_amount": f"{budget.amount:f}", "new_amount": f"{value:f}", "why": justification},
        )

    def _file_request(
        self,
        conn: Connection,
        budget: Budget,
        kind: str,
        amount: Decimal,
        justification: str,
        actor: str | None,
        now: datetime,
        deadline: datetime | None,
    ) -> int:
        approval_id = conn.execute(
            approvals.insert()
            .values(
                budget_id=budget.id,
                kind=kind,
                requested_amount=f"{amount:f}",
                justification=justification,
                requested_by=actor,
                requested_us=to_us(now),
                status="pending",
                deadline_us=to_us(deadline) if deadline else None,
            )
            .returning(approvals.c.id)
        ).scalar_one()
        conn.execute(
            budget_changes.insert().values(
                budget_id=budget.id,
                kind=f"{kind}_requested",
                old_amount=f"{budget.amount:f}",
                new_amount=f"{amount:f}",
                justification=justification,
                actor=actor,
                approval_id=approval_id,
                at_us=to_us(now),
            )
        )
        audit(
            conn,
            at=now,
            actor=actor,
            action=f"approval.{kind}_requested",
            entity="approval",
            entity_id=approval_id,
            detail={"budget": budget.name, "amount": f"{amount:f}", "why": justification},
        )
        return int(approval_id)

    def deactivate(self, key: int | str, *, justification: str, actor: str | None = None) -> dict[str, Any]:
        """Retire a budget: it stops counting and enforcing; its history stays."""
        justification = (justification or "").strip()
        if not justification:
            raise InvalidInput("justification: retiring a budget needs a reason")
        now = self.clock()
        with self.store.write() as conn:
            self.enforcer.lock_for_change(conn)
            budget = self.get(key, conn)
            conn.execute(update(budgets).where(budgets.c.id == budget.id).values(active=False, updated_us=to_us(now)))
            conn.execute(
                budget_changes.insert().values(
                    budget_id=budget.id,
                    kind="deactivated",
                    old_amount=f"{budget.amount:f}",
                    justification=justification,
                    actor=actor,
                    at_us=to_us(now),
                )
            )
            audit(
                conn,
                at=now,
                actor=actor,
                action="budget.deactivated",
                entity="budget",
                entity_id=budget.id,
                detail={"why": justification},
            )
            self.enforcer.bump_version(conn)
        return {"budget": budget.name, "active": False}

    def request_overage(
        self,
        key: int | str,
        amount: Any,
        *,
        justification: str,
        actor: str | None = None,
        deadline: datetime | None = None,
    ) -> int:
        """Ask for ``amount`` more than the limit until ``deadline`` (default: the end of the period)."""
        justification = (justification or "").strip()
        if not justification:
            raise InvalidInput("justification: an overage request needs a reason")
        value = parse_usd(amount, field="amount")
        if value <= 0:
            raise InvalidInput(f"amount: must be positive, got {amount}")
        now = self.clock()
        with self.store.write() as conn:
            budget = self.get(key, conn)
            until = deadline or (budget.window(now).end if budget.period != "rolling" else now + timedelta(days=7))
            if until <= now:
                raise InvalidInput("deadline: must be in the future")
            return self._file_request(conn, budget, "overage", value, justification, actor, now, until)

    def decide(
        self,
        approval_id: int,
        *,
        approve: bool,
        actor: str | None = None,
        note: str | None = None,
        amount: Any = None,
        deadline: datetime | None = None,
    ) -> dict[str, Any]:
        """Approve (optionally for another amount or deadline) or decline a pending request."""
        now = self.clock()
        with self.store.write() as conn:
            self.enforcer.lock_for_change(conn)
            row = conn.execute(select(approvals).where(approvals.c.id == approval_id)).first()
            if row is None:
                raise NotFound(f"approval #{approval_id} does not exist")
            if row.status != "pending":
                raise Conflict(f"approval #{approval_id} was already {row.status}")
            budget = self.get(row.budget_id, conn)
            granted = parse_usd(amount, field="amount") if amount is not None else Decimal(row.requested_amount)
            if granted <= 0:
                raise InvalidInput("amount: must be positive")
            until = deadline or (from_us(row.deadline_us) if row.deadline_us else None)
            if approve and until is not None and until <= now:
                raise InvalidInput("deadline: must be in the future")
            status = "approved" if approve else "declined"
            conn.execute(
                update(approvals)
                .where(approvals.c.id == approval_id)
                .values(
                    status=status,
                    approved_amount=f"{granted:f}" if approve else None,
                    decided_by=actor,
                    decided_us=to_us(now),
                    decision_note=note,
                    deadline_us=to_us(until) if until else None,
                )
            )
            if approve and row.kind == "increase":
                self._apply_amount(
                    conn,
                    budget,
                    granted,
                    self._usd_limit(granted, budget.currency),
                    row.justification,
                    actor,
                    now,
                    kind="adjusted",
                    approval_id=approval_id,
                )
            conn.execute(
                budget_changes.insert().values(
                    budget_id=budget.id,
                    kind=f"{row.kind}_{status}",
                    old_amount=f"{budget.amount:f}",
                    new_amount=f"{granted:f}" if approve else None,
                    justification=note or row.justification,
                    actor=actor,
                    approval_id=approval_id,
                    at_us=to_us(now),
                )
            )
            audit(
                conn,
                at=now,
                actor=actor,
                action=f"approval.{status}",
                entity="approval",
                entity_id=approval_id,
                detail={"budget": budget.name, "kind": row.kind, "amount": f"{granted:f}", "note": note},
            )
            self.enforcer.bump_version(conn)
        return {
            "approval_id": approval_id,
            "status": status,
            "budget": budget.name,
            "kind": row.kind,
            "amount": f"{granted:f}" if approve else None,
            "deadline": until.isoformat() if until and approve else None,
        }

    def approvals(
        self, status: str | None = None, departments: Sequence[str] | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Approval requests, optionally by status and for budgets within ``departments``."""
        visible = None if departments is None else {b.id for b in self.list(departments)}
        with self.store.read() as conn:
            query = select(approvals, budgets.c.name).join(budgets, budgets.c.id == approvals.c.budget_id)
            if status:
                query = query.where(approvals.c.status == status)
            if visible is not None:
                query = query.where(approvals.c.budget_id.in_(sorted(visible)))
            rows = conn.execute(query.order_by(approvals.c.id)).all()
        return [
            {
                "approval_id": r.id,
                "budget": r.name,
                "kind": r.kind,
                "requested_amount": r.requested_amount,
                "justification": r.justification,
                "requested_by": r.requested_by,
                "requested_at": from_us(r.requested_us).isoformat(),
                "status": r.status,
                "approved_amount": r.approved_amount,
                "deadline": from_us(r.deadline_us).isoformat() if r.deadline_us else None,
                "decided_by": r.decided_by,
                "decision_note": r.decision_note,
            }
            for r in rows
        ]

    def history(self, key: int | str) -> builtins.list[dict[str, Any]]:
        budget = self.get(key)
        with self.store.read() as conn:
            rows = conn.execute(
                select(budget_changes).where(budget_changes.c.budget_id == budget.id).order_by(budget_changes.c.id)
            ).all()
        return [
            {
                "at": from_us(r.at_us).isoformat(),
                "kind": r.kind,
                "old_amount": r.old_amount,
                "new_amount": r.new_amount,
                "justification": r.justification,
                "actor": r.actor,
                "approval_id": r.approval_id,
            }
            for r in rows
        ]

    # -- status ----------------------------------------------------------------------------------

    def status(
        self,
        keys: Sequence[int | str] | None = None,
        *,
        departments: Sequence[str] | None = None,
        max_age_s: float = 0.0,
    ) -> builtins.list[dict[str, Any]]:
        """Spent, reserved, remaining, burn rate, projection and colour for each budget."""
        if max_age_s > 0:
            # Dashboards poll this: an answer up to max_age_s old is served from memory, but only
            # while the budgets are unchanged, as the database says (one cheap read): an answer
            # computed before a change is never served after it.
            key = (tuple(map(str, keys or ())), tuple(departments) if departments is not None else None)
            version = self.store.get_meta(BUDGETS_VERSION_KEY)
            with self._status_lock:
                cached = self._status_cache.get(key)
            if cached is not None and time.monotonic() - cached[0] < max_age_s and cached[1] == version:
                return cached[2]
            fresh = self.status(keys, departments=departments)
            if self.store.get_meta(BUDGETS_VERSION_KEY) == version:  # nothing changed while computing
                with self._status_lock:
                    self._status_cache[key] = (time.monotonic(), version, fresh)
            return fresh
        now = self.clock()
        now_us = to_us(now)
        wanted = [self.get(k) for k in keys] if keys else [b for b in self.list() if b.active]
        if departments is not None:
            wanted = [
                b
                for b in wanted
                if set(b.scope.get("department", [])) and set(b.scope.get("department", [])) <= set(departments)
            ]
        out = []
        with self.store.read() as conn:
            book = self.enforcer.book(conn)
            usage = self.enforcer.usage_many(conn, wanted, now, book)
            burns = self.enforcer.burn_rates(conn, [b.id for b in wanted], now)
            for budget in wanted:
                spent, reserved, _, _ = usage[budget.id]
                window = book.window(budget, now)
                limit = budget.limit_at(now_us)
                remaining = limit - spent - reserved
                percent = (Decimal(spent) * 100 / limit).quantize(_PCT) if limit else Decimal(100)
                burn = burns.get(budget.id, 0)
                days_left = Decimal(window.end_us - now_us) / 86_400_000_000 if not window.rolling else Decimal(0)
                projected = spent + int(burn * days_left)
                depletion = (Decimal(max(remaining, 0)) / burn).quantize(Decimal("0.1")) if burn else None
                color = "green" if percent < 70 else ("yellow" if percent <= 90 else "red")
                out.append(
                    {
                        **budget.summary(),
                        "period_start": window.start.isoformat(),
                        "period_end": window.end.isoformat(),
                        "amount_usd": format_usd(budget.limit_nanos),
                        "limit_usd": format_usd(limit),
                        "spent_usd": format_usd(spent),
                        "reserved_usd": format_usd(reserved),
                        "remaining_usd": format_usd(remaining),
                        "percent_used": f"{percent:f}",
                        "status": color,
                        "burn_rate_daily_usd": format_usd(burn),
                        "projected_period_spend_usd": format_usd(projected),
                        "days_until_depletion": f"{depletion:f}" if depletion is not None else None,
                    }
                )
        return out
