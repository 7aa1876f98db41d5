"""Enforcement: live budget counters, reservations before spend, commits after.

How it holds under concurrency:

* Every write that changes a budget's spend or reservations runs in one transaction that first
  **locks the budgets it touches**: ``SELECT .. FOR UPDATE`` in id order on PostgreSQL (many
  processes); on SQLite the write transaction itself (``BEGIN IMMEDIATE``) is the lock. A
  reservation reads spent + reserved, decides, and adds its amount before the lock is released, so
  two requests can never both take the last dollar: the committed spend of a ``block`` budget never
  exceeds its limit when commits stay within their reservations, and every request that fits is
  granted (the check is ``spent + reserved + amount <= limit``).
* Counters (``budget_usage``) are incremented in the same transaction as the events that cause
  them (ingest) and the reservations that hold them, so they never drift from the ledger.
* Reservations expire after a TTL; expired holds are released lazily by the next reservation.
* When the database cannot be reached, a budget's ``fail_mode`` decides: ``closed`` refuses,
  ``open`` allows a provisional reservation whose spend is recorded when the event arrives.

Threshold levels (warning, critical, exceeded) are stored per budget and period and published on
the event bus once per level, after the transaction commits.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from fleetledger.budgets.model import LEVELS, Budget
from fleetledger.budgets.periods import HOUR_US, Window
from fleetledger.budgets.tables import (
    approvals,
    budget_daily,
    budget_rate,
    budget_usage,
    budgets,
    reservations,
    token_ratios,
)
from fleetledger.core.errors import BudgetExceeded, BudgetThrottled, Conflict, NotFound, StorageUnavailable
from fleetledger.core.money import format_usd
from fleetledger.core.time import from_us, to_us
from fleetledger.core.usage import DIMENSIONS
from fleetledger.storage.schema import EVENT_INDEX, meta
from fleetledger.storage.store import Store

__all__ = ["Enforcer", "Reservation", "Decision", "BUDGETS_VERSION_KEY"]

BUDGETS_VERSION_KEY = "budgets_version"
_PG_BUDGET_LOCK = 7262212
_DAY_US = 86_400_000_000
_TS, _COST, _TAGS = EVENT_INDEX["ts_us"], EVENT_INDEX["cost_nanos"], EVENT_INDEX["tags"]
Publish = Callable[[str, dict[str, Any]], object]


@dataclass
class Decision:
    """What the budgets say about a request (``check``) or did (``reserve``)."""

    allowed: bool
    budgets: list[dict[str, Any]] = field(default_factory=list)
    downgrade_to: str | None = None
    refusal: BudgetExceeded | None = None


@dataclass
class Reservation:
    """Money held against every matching budget until committed, released or expired."""

    id: str
    amount_nanos: int
    expires_at: datetime
    budgets: list[str]
    downgrade_to: str | None = None
    provisional: bool = False
    dims: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    _ledger: Any = field(default=None, repr=False)

    @property
    def amount_usd(self) -> Decimal:
        return Decimal(self.amount_nanos) / 1_000_000_000

    def commit(self, actual_cost_usd: Decimal | str | int) -> None:
        """Charge the actual cost (recorded as a line item) and release the rest of the hold."""
        self._ledger.commit_reservation(self, actual_cost_usd)

    def release(self) -> None:
        """Nothing was spent: release the whole hold."""
        self._ledger.release_reservation(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reservation_id": self.id,
            "amount_usd": format_usd(self.amount_nanos),
            "expires_at": self.expires_at.isoformat(),
            "budgets": self.budgets,
            "downgrade_to": self.downgrade_to,
            "provisional": self.provisional,
        }


class _Book:
    """The active budgets of this process, indexed for matching event rows fast."""

    def __init__(self, items: Sequence[Budget], version: Any) -> None:
        self.version = version
        self.budgets = {b.id: b for b in items}
        self.by_name = {b.name: b for b in items}
        self.unconditional: list[Budget] = []
        self.index: dict[int, dict[str, list[Budget]]] = {}
        self.conditions: dict[int, list[tuple[int, frozenset[str]]]] = {}
        self.tag_scoped: list[Budget] = []
        for budget in items:
            if not budget.active:
                continue
            if any(k.startswith("tag.") for k in budget.scope):
                self.tag_scoped.append(budget)
                continue
            conditions = budget.row_matcher()
            self.conditions[budget.id] = conditions
            if not conditions:
                self.unconditional.append(budget)
                continue
            first_index, values = conditions[0]
            slot = self.index.setdefault(first_index, {})
            for value in values:
                slot.setdefault(value, []).append(budget)
        # Windows cached per budget: (start_us, end_us, bucket_us) for event timestamps, and the
        # current window for decisions.
        self.windows: dict[int, tuple[int, int, int]] = {}
        self.current: dict[int, Window] = {}

    def for_row(self, row: Sequence[Any]) -> list[Budget]:
        found = list(self.unconditional)
        for index, slot in self.index.items():
            for budget in slot.get(row[index], ()):
                if all(row[i] in values for i, values in self.conditions[budget.id][1:]):
                    found.append(budget)
        if self.tag_scoped:
            tags = json.loads(row[_TAGS]) if row[_TAGS] else {}
            dims = {name: row[EVENT_INDEX[name]] for name in EVENT_INDEX if name in _DIM_NAMES}
            dims["tags"] = tags
            found.extend(b for b in self.tag_scoped if b.matches(dims))
        return found

    def for_dims(self, dims: Mapping[str, Any]) -> list[Budget]:
        return sorted((b for b in self.budgets.values() if b.active and b.matches(dims)), key=lambda b: b.id)

    def window(self, budget: Budget, now: datetime) -> Window:
        """The budget's current window, cached until it ends (rolling windows move every call)."""
        if budget.period == "rolling":
            return budget.window(now)
        now_us = to_us(now)
        cached = self.current.get(budget.id)
        if cached is not None and cached.start_us <= now_us < cached.end_us:
            return cached
        window = budget.window(now)
        self.current[budget.id] = window
        return window

    def bucket(self, budget: Budget, ts_us: int) -> int:
        if budget.period == "rolling":
            return ts_us - ts_us % HOUR_US
        cached = self.windows.get(budget.id)
        if cached is not None and cached[0] <= ts_us < cached[1]:
            return cached[2]
        window = budget.window(from_us(ts_us))
        if budget.period != "custom" or window.start_us <= ts_us < window.end_us:
            self.windows[budget.id] = (window.start_us, window.end_us, window.bucket_us)
        return window.bucket_us


#: The attribution dimensions a tag-scoped budget can also filter on (the event's own columns).
_DIM_NAMES = frozenset(DIMENSIONS) - {"service_tier", "category", "status"}


class Enforcer:
    """Budget counters and reservations over a Store; one per Ledger (thread-safe)."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime], publish: Publish | None = None) -> None:
        self.store = store
        self.clock = clock
        self.publish: Publish = publish or (lambda topic, payload: None)
        self._lock = threading.Lock()
        self._book: _Book | None = None
        self._expired_at = 0

    # -- the book of budgets -------------------------------------------------------------------------

    def book(self, conn: Connection | None = None) -> _Book:
        """The active budgets, reloaded when another process (or this one) changed them."""
        if conn is None:
            with self.store.read() as own:
                return self.book(own)
        version = conn.execute(select(meta.c.value).where(meta.c.key == BUDGETS_VERSION_KEY)).scalar()
        book = self._book
        if book is not None and book.version == version:
            return book
        rows = conn.execute(select(budgets).where(budgets.c.active)).all()
        extra: dict[int, list[tuple[int, int]]] = {}
        for approval in conn.execute(
            select(approvals.c.budget_id, approvals.c.approved_amount, approvals.c.deadline_us).where(
                and_(approvals.c.status == "approved", approvals.c.kind == "overage")
            )
        ):
            extra.setdefault(approval.budget_id, []).append(
                (int(Decimal(approval.approved_amount) * 1_000_000_000), approval.deadline_us or 0)
            )
        book = _Book([Budget.from_row(r, extra.get(r.id, ())) for r in rows], version)
        with self._lock:
            self._book = book
        return book

    def current_version(self) -> Any:
        """The version of the budgets this process last loaded (None after a change here)."""
        book = self._book
        return None if book is None else book.version

    def lock_for_change(self, conn: Connection) -> None:
        """Serialize a budget change with ingest on PostgreSQL (SQLite's write lock already does)."""
        if self.store.dialect == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_BUDGET_LOCK})")

    def bump_version(self, conn: Connection) -> None:
        """Tell every process, this one included, that the budgets changed: call it after the change."""
        self.store.set_meta(BUDGETS_VERSION_KEY, secrets.token_hex(8), conn)
        with self._lock:
            self._book = None

    # -- counters from ingest ------------------------------------------------------------------------

    def on_events(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> list[tuple[str, dict[str, Any]]]:
        """Add freshly stored events to their budgets' counters; returns bus events to publish."""
        if not rows:
            return []
        if self.store.dialect == "postgresql":
            # Shared with ingest, exclusive for budget changes: a budget created concurrently either
            # sees these events in its opening balance or counts them here, never neither.
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({_PG_BUDGET_LOCK})")
        book = self.book(conn)
        if not book.budgets:
            return []
        increments: dict[tuple[int, int], list[int]] = {}
        daily: dict[tuple[int, int], list[int]] = {}
        for row in rows:
            matched = book.for_row(row)
            if not matched:
                continue
            ts, cost = row[_TS], row[_COST]
            day = ts - ts % _DAY_US
            for budget in matched:
                for counters, key in ((increments, (budget.id, book.bucket(budget, ts))), (daily, (budget.id, day))):
                    acc = counters.get(key)
                    if acc is None:
                        counters[key] = [cost, 1]
                    else:
                        acc[0] += cost
                        acc[1] += 1
        if not increments:
            return []
        self._add_usage(conn, [(b, k, cost, 0, n) for (b, k), (cost, n) in sorted(increments.items())])
        self.add_daily(conn, [(b, d, cost, n) for (b, d), (cost, n) in sorted(daily.items())])
        return self._levels(conn, book, {budget_id for budget_id, _ in increments})

    def _add_usage(self, conn: Connection, changes: Iterable[tuple[int, int, int, int, int]]) -> None:
        """(budget_id, bucket_us, spent delta, reserved delta, requests delta) upserts."""
        rows = [
            {"budget_id": b, "bucket_us": k, "spent_nanos": s, "reserved_nanos": r, "requests": n, "level": 0}
            for b, k, s, r, n in changes
        ]
        if not rows:  # a request no budget covers: nothing to count (and no empty executemany)
            return
        statement = self.store.upsert(
            budget_usage,
            ["budget_id", "bucket_us"],
            increment=["spent_nanos", "reserved_nanos", "requests"],
        )
        conn.execute(statement, rows)

    def add_daily(self, conn: Connection, changes: Sequence[tuple[int, int, int, int]]) -> None:
        """(budget_id, day_us, spent delta, requests delta) upserts into the daily spend counters."""
        if changes:
            conn.execute(
                self.store.upsert(budget_daily, ["budget_id", "day_us"], increment=["spent_nanos", "requests"]),
                [{"budget_id": b, "day_us": d, "spent_nanos": s, "requests": n} for b, d, s, n in changes],
            )

    def burn_rates(self, conn: Connection, budget_ids: Sequence[int], now: datetime) -> dict[int, int]:
        """Average daily spend over the last 7 complete UTC days, per budget, in nano-USD."""
        today = to_us(now) - to_us(now) % _DAY_US
        rows = conn.execute(
            select(budget_daily.c.budget_id, func.sum(budget_daily.c.spent_nanos))
            .where(
                and_(
                    budget_daily.c.budget_id.in_(list(budget_ids)),
                    budget_daily.c.day_us >= today - 7 * _DAY_US,
                    budget_daily.c.day_us < today,
                )
            )
            .group_by(budget_daily.c.budget_id)
        ).all()
        return {int(b): int(total or 0) // 7 for b, total in rows}

    def usage(self, conn: Connection, budget: Budget, now: datetime) -> tuple[int, int, int]:
        """(spent, reserved, bucket) of the budget's current window."""
        return self.usage_many(conn, [budget], now, self.book(conn))[budget.id][:3]

    def usage_many(
        self, conn: Connection, items: Sequence[Budget], now: datetime, book: _Book
    ) -> dict[int, tuple[int, int, int, int]]:
        """(spent, reserved, bucket, level) of each budget's current window, in one query."""
        if not items:
            return {}
        windows = {b.id: book.window(b, now) for b in items}
        floor = min(w.start_us - w.start_us % HOUR_US if w.rolling else w.bucket_us for w in windows.values())
        rows = conn.execute(
            select(
                budget_usage.c.budget_id,
                budget_usage.c.bucket_us,
                budget_usage.c.spent_nanos,
                budget_usage.c.reserved_nanos,
                budget_usage.c.level,
            ).where(and_(budget_usage.c.budget_id.in_(list(windows)), budget_usage.c.bucket_us >= floor))
        ).all()
        out = {b.id: (0, 0, windows[b.id].bucket_us, 0) for b in items}
        for budget_id, bucket, spent, reserved, level in rows:
            window = windows[budget_id]
            if window.rolling:
                if bucket >= window.start_us - window.start_us % HOUR_US:
                    s0, r0, k0, l0 = out[budget_id]
                    out[budget_id] = (s0 + int(spent), r0 + int(reserved), k0, max(l0, level if bucket == k0 else 0))
            elif bucket == window.bucket_us:
                out[budget_id] = (int(spent), int(reserved), bucket, int(level))
        return out

    def _levels(self, conn: Connection, book: _Book, budget_ids: Iterable[int]) -> list[tuple[str, dict[str, Any]]]:
        """Raise stored levels that spend has crossed in the current windows; return bus events."""
        now = self.clock()
        now_us = to_us(now)
        touched = [book.budgets[i] for i in sorted(budget_ids) if i in book.budgets]
        events: list[tuple[str, dict[str, Any]]] = []
        for budget_id, (spent, _, bucket, stored) in self.usage_many(conn, touched, now, book).items():
            budget = book.budgets[budget_id]
            level = budget.level(spent, now_us)
            if level <= stored:
                continue
            raised = conn.execute(
                update(budget_usage)
                .where(
                    and_(
                        budget_usage.c.budget_id == budget.id,
                        budget_usage.c.bucket_us == bucket,
                        budget_usage.c.level < level,
                    )
                )
                .values(level=level)
            ).rowcount
            if raised:
                events.append(self._level_event(budget, LEVELS[level], spent, now))
        return events

    def _level_event(self, budget: Budget, level: str, spent: int, now: datetime) -> tuple[str, dict[str, Any]]:
        window = budget.window(now)
        limit = budget.limit_at(to_us(now))
        percent = (Decimal(spent) * 100 / limit).quantize(Decimal("0.01")) if limit else Decimal(100)
        payload = {
            "budget_id": budget.id,
            "name": budget.name,
            "scope": budget.scope,
            "level": level,
            "percent_used": f"{percent:f}",
            "spent_usd": format_usd(spent),
            "limit_usd": format_usd(limit),
            "period_start": window.start.isoformat(),
            "period_end": window.end.isoformat(),
            "action": budget.action,
        }
        return f"budget.{level}", payload

    # -- reservations --------------------------------------------------------------------------------

    def _lock_budgets(self, conn: Connection, ids: Sequence[int]) -> None:
        if ids and self.store.dialect == "postgresql":
            conn.execute(select(budgets.c.id).where(budgets.c.id.in_(ids)).order_by(budgets.c.id).with_for_update())

    def expire(self, conn: Connection, now_us: int) -> int:
        """Release the holds of reservations past their TTL."""
        stale = conn.execute(
            select(reservations.c.id, reservations.c.amount_nanos, reservations.c.holds)
            .where(and_(reservations.c.status == "active", reservations.c.expires_us <= now_us))
            .with_for_update(skip_locked=True)
        ).all()
        for res in stale:
            self._release_holds(conn, res.holds, res.amount_nanos)
        if stale:
            conn.execute(
                update(reservations)
                .where(reservations.c.id.in_([r.id for r in stale]))
                .values(status="expired", closed_us=now_us)
            )
        return len(stale)

    def _release_holds(self, conn: Connection, holds: Sequence[Sequence[int]], amount: int) -> None:
        self._add_usage(conn, [(int(b), int(k), 0, -amount, 0) for b, k in holds])

    def evaluate(
        self, conn: Connection, amount_nanos: int, dims: Mapping[str, Any], now: datetime, *, hold: bool
    ) -> tuple[Decision, list[tuple[str, dict[str, Any]]], list[tuple[int, int]]]:
        """Decide a request of ``amount_nanos`` against every matching budget (locks them)."""
        now_us = to_us(now)
        book = self.book(conn)
        matched = book.for_dims(dims)
        self._lock_budgets(conn, [b.id for b in matched])
        if hold and now_us - self._expired_at >= 1_000_000:
            # Stale holds are released at most once a second per process: TTLs are minutes long.
            self._expired_at = now_us
            self.expire(conn, now_us)
        decision = Decision(allowed=True)
        events: list[tuple[str, dict[str, Any]]] = []
        holds: list[tuple[int, int]] = []
        usage = self.usage_many(conn, matched, now, book)
        for budget in matched:
            spent, reserved, bucket, _ = usage[budget.id]
            limit = budget.limit_at(now_us)
            remaining = limit - spent - reserved
            window = book.window(budget, now)
            state = {
                "budget_id": budget.id,
                "name": budget.name,
                "action": budget.action,
                "limit_usd": format_usd(limit),
                "spent_usd": format_usd(spent),
                "reserved_usd": format_usd(reserved),
                "remaining_usd": format_usd(remaining),
                "resets_at": None if window.rolling else window.end.isoformat(),
            }
            decision.budgets.append(state)
            holds.append((budget.id, bucket))
            if amount_nanos <= remaining:
                continue
            if budget.action == "notify":
                events.append(self._level_event(budget, "exceeded", spent + reserved + amount_nanos, now))
                continue
            if budget.action == "downgrade":
                decision.downgrade_to = decision.downgrade_to or budget.downgrade_model
                continue
            fields: dict[str, Any] = dict(
                budget_id=budget.id,
                budget=budget.name,
                limit_usd=state["limit_usd"],
                spent_usd=state["spent_usd"],
                reserved_usd=state["reserved_usd"],
                remaining_usd=format_usd(max(remaining, 0)),
                requested_usd=format_usd(amount_nanos),
                resets_at=state["resets_at"],
                action=budget.action,
            )
            if budget.action == "throttle":
                minute = now_us - now_us % 60_000_000
                used = (
                    conn.execute(
                        select(budget_rate.c.requests).where(
                            and_(budget_rate.c.budget_id == budget.id, budget_rate.c.minute_us == minute)
                        )
                    ).scalar()
                    or 0
                )
                if used < (budget.throttle_rpm or 0):
                    if hold:
                        conn.execute(
                            self.store.upsert(budget_rate, ["budget_id", "minute_us"], increment=["requests"]),
                            [{"budget_id": budget.id, "minute_us": minute, "requests": 1}],
                        )
                    continue
                retry = max(1, int((minute + 60_000_000 - now_us) / 1_000_000))
                refusal: BudgetExceeded = BudgetThrottled(
                    f"budget {budget.name!r} is over its limit and throttled to {budget.throttle_rpm} requests "
                    f"per minute; retry in {retry}s",
                    retry_after_s=retry,
                    **fields,
                )
            else:
                refusal = BudgetExceeded(
                    f"budget {budget.name!r} would be exceeded: limit {state['limit_usd']} USD, spent "
                    f"{state['spent_usd']}, reserved {state['reserved_usd']}, remaining "
                    f"{format_usd(max(remaining, 0))}, requested {format_usd(amount_nanos)}"
                    + (f"; resets at {state['resets_at']}" if state["resets_at"] else ""),
                    **fields,
                )
            decision.allowed = False
            decision.refusal = refusal
            events.append(self._level_event(budget, "exceeded", spent + reserved + amount_nanos, now))
            break
        return decision, events, holds

    def reserve(
        self,
        amount_nanos: int,
        dims: Mapping[str, Any],
        *,
        ttl: timedelta,
        model: str | None = None,
        prompt_chars: int | None = None,
    ) -> Reservation:
        now = self.clock()
        try:
            with self.store.write() as conn:
                decision, events, holds = self.evaluate(conn, amount_nanos, dims, now, hold=True)
                if decision.allowed:
                    reservation_id = "r-" + secrets.token_hex(12)
                    conn.execute(
                        reservations.insert().values(
                            id=reservation_id,
                            amount_nanos=amount_nanos,
                            status="active",
                            holds=holds,
                            dims=dict(dims),
                            model=model,
                            prompt_chars=prompt_chars,
                            created_us=to_us(now),
                            expires_us=to_us(now + ttl),
                        )
                    )
                    self._add_usage(conn, [(b, k, 0, amount_nanos, 0) for b, k in holds])
        except StorageUnavailable:
            return self._unverifiable(amount_nanos, dims, now, ttl, model)
        self._publish(events)
        if not decision.allowed:
            assert decision.refusal is not None
            raise decision.refusal
        return Reservation(
            id=reservation_id,
            amount_nanos=amount_nanos,
            expires_at=now + ttl,
            budgets=[b["name"] for b in decision.budgets],
            downgrade_to=decision.downgrade_to,
            dims=dict(dims),
            model=model,
        )

    def check(self, amount_nanos: int, dims: Mapping[str, Any]) -> Decision:
        now = self.clock()
        with self.store.read() as conn:
            decision, _, _ = self.evaluate(conn, amount_nanos, dims, now, hold=False)
        return decision

    def _unverifiable(
        self, amount_nanos: int, dims: Mapping[str, Any], now: datetime, ttl: timedelta, model: str | None
    ) -> Reservation:
        book = self._book
        matched = book.for_dims(dims) if book else []
        closed = [b for b in matched if b.fail_mode == "closed"] if book else ["unknown"]
        if closed:
            names = ", ".join(getattr(b, "name", "unknown") for b in closed)
            raise StorageUnavailable(
                f"spend cannot be verified (database unreachable) and budget(s) {names} fail closed; retry later"
            )
        return Reservation(
            id="provisional-" + secrets.token_hex(8),
            amount_nanos=amount_nanos,
            expires_at=now + ttl,
            budgets=[b.name for b in matched],
            provisional=True,
            dims=dict(dims),
            model=model,
        )

    def close_reservation(
        self,
        conn: Connection,
        reservation_id: str,
        *,
        status: str,
        actual_nanos: int | None,
        event_id: str | None = None,
        input_tokens: int | None = None,
    ) -> None:
        """Commit or release a reservation inside the caller's transaction."""
        row = conn.execute(select(reservations).where(reservations.c.id == reservation_id).with_for_update()).first()
        if row is None:
            raise NotFound(f"reservation {reservation_id} does not exist")
        if row.status in ("committed", "released"):
            raise Conflict(f"reservation {reservation_id} is already {row.status}")
        if row.status == "active":
            self._release_holds(conn, row.holds, row.amount_nanos)
        conn.execute(
            update(reservations)
            .where(reservations.c.id == reservation_id)
            .values(status=status, committed_nanos=actual_nanos, event_id=event_id, closed_us=to_us(self.clock()))
        )
        if status == "committed" and row.model and row.prompt_chars and input_tokens:
            statement = self.store.upsert(token_ratios, ["model"], increment=["chars", "tokens"])
            conn.execute(statement, [{"model": row.model, "chars": row.prompt_chars, "tokens": input_tokens}])

    def learned_ratio(self, model: str) -> Decimal | None:
        with self.store.read() as conn:
            row = conn.execute(select(token_ratios).where(token_ratios.c.model == model)).first()
        if row is None or not row.tokens:
            return None
        return Decimal(row.chars) / Decimal(row.tokens)

    def _publish(self, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        for topic, payload in events:
            self.publish(topic, payload)

    def publish_after(self, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        self._publish(events)
