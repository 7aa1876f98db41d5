"""Budgets that hold: concurrency, periods in time zones, hierarchy, accountability, actions."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from fleetledger import Ledger, Settings
from fleetledger.budgets.tables import approvals, audit_log, budget_changes, budgets, reservations
from fleetledger.core.errors import BudgetExceeded, BudgetThrottled, Conflict, InvalidInput, StorageUnavailable
from fleetledger.storage.schema import events

PRICE = Decimal("0.03")  # each request reserves and spends 3 cents; $1.00 fits 33 of them


def _count(ledger: Ledger, table) -> int:
    with ledger.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar())


def _spend_against(ledger: Ledger, results: list) -> None:
    try:
        reservation = ledger.reserve(PRICE, department="research", agent="racer")
    except BudgetExceeded:
        results.append("refused")
        return
    reservation.commit(PRICE)
    results.append("granted")


def test_64_concurrent_threads_never_overspend_and_every_fitting_request_is_granted(db_url, tmp_path):
    settings = Settings(database_url=db_url, spool_dir=tmp_path / "spool")
    with Ledger(settings=settings, background=False) as ledger:
        ledger.budgets.create(name="research", scope={"department": "research"}, amount="1.00", action="block")
        results: list[str] = []
        barrier = threading.Barrier(64)

        def worker() -> None:
            barrier.wait()
            _spend_against(ledger, results)

        threads = [threading.Thread(target=worker) for _ in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count("granted") == 33 and results.count("refused") == 31
        [status] = ledger.budgets.status()
        assert Decimal(status["spent_usd"]) == Decimal("0.99") <= Decimal("1.00")
        assert status["reserved_usd"] == "0.000000000"
        # the ledger agrees with the counter
        assert Decimal(
            ledger.costs(since="1d", where={"department": ["research"]}).total_json()["cost_usd"]
        ) == Decimal("0.99")


def _process_worker(url: str, spool: str, start, out) -> None:
    ledger = Ledger(settings=Settings(database_url=url, spool_dir=spool), background=False)
    start.wait(30)
    results: list[str] = []
    threads = [threading.Thread(target=_spend_against, args=(ledger, results)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ledger.close()
    out.put(results)


def test_64_concurrent_reservations_from_8_processes(db_url, tmp_path):
    settings = Settings(database_url=db_url, spool_dir=tmp_path / "spool")
    with Ledger(settings=settings, background=False) as ledger:
        ledger.budgets.create(name="research", scope={"department": "research"}, amount="1.00", action="block")
    # Eight fresh processes, each with its own ledger and connections. Forked from a server process
    # that imported this module once, rather than spawned (eight more imports of everything).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    start, out = context.Event(), context.Queue()
    procs = [
        context.Process(target=_process_worker, args=(db_url, str(tmp_path / f"spool{i}"), start, out))
        for i in range(8)
    ]
    for p in procs:
        p.start()
    start.set()
    results = [r for _ in procs for r in out.get(timeout=120)]
    for p in procs:
        p.join(30)
    assert results.count("granted") == 33 and results.count("refused") == 31
    with Ledger(settings=settings, background=False) as ledger:
        [status] = ledger.budgets.status()
        assert Decimal(status["spent_usd"]) == Decimal("0.99")
        assert status["reserved_usd"] == "0.000000000"


def test_period_rolls_over_at_local_midnight(db_url, tmp_path, clock):
    # New York: October ends at 04:00 UTC on November 1st (EDT, UTC-4).
    clock.now = datetime(2026, 11, 1, 3, 30, tzinfo=UTC)
    settings = Settings(database_url=db_url, spool_dir=tmp_path / "spool")
    with Ledger(settings=settings, background=False, clock=clock) as ledger:
        ledger.budgets.create(name="ny", amount="1.00", action="block", timezone="America/New_York")
        ledger.record(provider="openai", model="gpt-4o", input_tokens=200_000)  # $0.50 on Oct 31, local
        [october] = ledger.budgets.status()
        assert october["period_start"] == "2026-10-01T04:00:00+00:00"
        assert october["period_end"] == "2026-11-01T04:00:00+00:00"
        assert october["spent_usd"] == "0.500000000"
        clock.now = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # local midnight: November starts
        [november] = ledger.budgets.status()
        assert november["period_start"] == "2026-11-01T04:00:00+00:00"
        assert november["period_end"] == "2026-12-01T05:00:00+00:00"  # DST ends on Nov 1: EST, UTC-5
        assert november["spent_usd"] == "0.000000000"
        ledger.reserve("0.90")  # fits again in the new period


def test_child_spend_counts_in_parents_and_allocation_is_checked(ledger):
    parent = ledger.budgets.create(name="research", scope=["department=research"], amount="10")
    ledger.budgets.create(name="search", scope=["department=research", "project=search"], amount="6", parent="research")
    with pytest.raises(InvalidInput, match="would be allocated 11.000000000 USD, more than its 10.000000000"):
        ledger.budgets.create(
            name="ranker", scope=["department=research", "project=ranker"], amount="5", parent=parent.id
        )
    assert _count(ledger, budgets) == 2  # nothing half-written
    forced = ledger.budgets.create(
        name="ranker",
        scope=["department=research", "project=ranker"],
        amount="5",
        parent=parent.id,
        force=True,
        actor="cfo",
    )
    assert forced.parent_id == parent.id
    with ledger.store.read() as conn:
        assert (
            conn.execute(select(audit_log.c.actor).where(audit_log.c.action == "budget.forced_allocation")).scalar()
            == "cfo"
        )
    with pytest.raises(InvalidInput, match="must keep its filter department=research"):
        ledger.budgets.create(name="stray", scope=["project=search"], amount="1", parent="research")
    ledger.record(provider="openai", model="gpt-4o", input_tokens=400_000, department="research", project="search")
    ledger.record(provider="openai", model="gpt-4o", input_tokens=40_000, department="research", project="other")
    spent = {s["name"]: s["spent_usd"] for s in ledger.budgets.status()}
    assert spent == {"research": "1.100000000", "search": "1.000000000", "ranker": "0.000000000"}


def test_adjustment_needs_justification_and_is_recorded(ledger):
    ledger.budgets.create(name="ops", scope={"department": "ops"}, amount="100", actor="finops")
    with pytest.raises(InvalidInput, match="justification"):
        ledger.budgets.adjust("ops", "150", justification="  ", actor="finops")
    result = ledger.budgets.adjust("ops", "150", justification="Q4 launch", actor="finops")
    assert result["status"] == "adjusted"
    history = ledger.budgets.history("ops")
    assert [(h["kind"], h["old_amount"], h["new_amount"], h["justification"], h["actor"]) for h in history] == [
        ("created", None, "100", None, "finops"),
        ("adjusted", "100", "150", "Q4 launch", "finops"),
    ]
    assert ledger.budgets.get("ops").limit_nanos == 150 * 10**9


def test_approvals_for_large_increases_and_overages(db_url, tmp_path, clock):
    settings = Settings(database_url=db_url, spool_dir=tmp_path / "spool", approval_limit_usd=Decimal("1000"))
    with Ledger(settings=settings, background=False, clock=clock) as ledger:
        ledger.budgets.create(name="sales", scope={"department": "sales"}, amount="800", action="block")
        pending = ledger.budgets.adjust("sales", "5000", justification="new market", actor="head-of-sales")
        assert pending["status"] == "pending_approval"
        assert ledger.budgets.get("sales").amount == Decimal("800")  # unchanged until approved
        decided = ledger.budgets.decide(
            pending["approval_id"], approve=True, amount="3000", actor="cfo", note="phase 1"
        )
        assert decided["amount"] == "3000" and ledger.budgets.get("sales").amount == Decimal("3000")
        with pytest.raises(Conflict):
            ledger.budgets.decide(pending["approval_id"], approve=False, actor="cfo")
        # an overage raises the limit until its deadline, without changing the budget
        overage = ledger.budgets.request_overage("sales", "500", justification="conference", actor="head-of-sales")
        ledger.budgets.decide(overage, approve=True, actor="cfo", deadline=clock.now + timedelta(days=2))
        [status] = ledger.budgets.status()
        assert status["limit_usd"] == "3500.000000000" and status["amount_usd"] == "3000.000000000"
        ledger.reserve("3400", department="sales").release()
        clock.now += timedelta(days=3)
        assert ledger.budgets.status()[0]["limit_usd"] == "3000.000000000"
        declined = ledger.budgets.request_overage("sales", "100", justification="again", actor="head-of-sales")
        assert ledger.budgets.decide(declined, approve=False, actor="cfo", note="no")["status"] == "declined"
        kinds = [h["kind"] for h in ledger.budgets.history("sales")]
        assert kinds == [
            "created",
            "increase_requested",
            "adjusted",
            "increase_approved",
            "overage_requested",
            "overage_approved",
            "overage_requested",
            "overage_declined",
        ]
        assert [a["status"] for a in ledger.budgets.approvals()] == ["approved", "approved", "declined"]


def test_reservations_expire_and_release_their_hold(ledger, clock):
    ledger.budgets.create(name="all", amount="1", action="block")
    ledger.reserve("0.80", ttl_s=60)
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve("0.30")
    assert refused.value.reserved_usd == "0.800000000" and refused.value.remaining_usd == "0.200000000"
    assert refused.value.resets_at is not None
    clock.now += timedelta(seconds=61)
    ledger.reserve("0.30")  # the expired hold was released
    with ledger.store.read() as conn:
        statuses = sorted(conn.execute(select(reservations.c.status)).scalars())
    assert statuses == ["active", "expired"]


def test_release_and_double_commit(ledger):
    ledger.budgets.create(name="all", amount="1", action="block")
    reservation = ledger.reserve("0.50")
    reservation.release()
    with pytest.raises(Conflict):
        reservation.release()
    assert ledger.budgets.status()[0]["reserved_usd"] == "0.000000000"


def test_downgrade_throttle_and_notify_actions(ledger):
    published = []
    ledger.bus.subscribe("*", published.append)
    ledger.budgets.create(
        name="support",
        scope={"department": "support"},
        amount="0.10",
        action="downgrade",
        downgrade_model="gpt-4o-mini",
    )
    ok = ledger.reserve("0.05", department="support")
    assert ok.downgrade_to is None
    over = ledger.reserve("0.50", department="support")
    assert over.downgrade_to == "gpt-4o-mini"
    ledger.budgets.create(name="bots", scope={"agent": "bot"}, amount="0.01", action="throttle", throttle_rpm=2)
    ledger.reserve("0.02", agent="bot")
    ledger.reserve("0.02", agent="bot")
    with pytest.raises(BudgetThrottled) as throttled:
        ledger.reserve("0.02", agent="bot")
    assert throttled.value.retry_after_s > 0
    ledger.budgets.create(name="watch", scope={"team": "w"}, amount="0.01", action="notify")
    ledger.reserve("1", team="w")
    assert any(p["topic"] == "budget.exceeded" and p["name"] == "watch" for p in published)


def test_threshold_levels_publish_once_per_level(ledger):
    published = []
    ledger.bus.subscribe("*", published.append)
    ledger.budgets.create(name="lab", scope={"department": "lab"}, amount="1.00", action="notify")
    # gpt-4o input is $2.50 per million tokens: $0.85 (85%), $0.97 (97%), $1.00 (100%), $1.01
    for tokens in (340_000, 48_000, 12_000, 4_000, 4_000):
        ledger.record(provider="openai", model="gpt-4o", input_tokens=tokens, department="lab")
    levels = [(p["topic"], p["percent_used"]) for p in published if p.get("name") == "lab"]
    assert levels == [("budget.warning", "85.00"), ("budget.critical", "97.00"), ("budget.exceeded", "100.00")]


def test_fail_closed_and_fail_open(ledger, monkeypatch):
    ledger.budgets.create(name="hard", scope={"department": "a"}, amount="1", action="block")
    ledger.budgets.create(name="soft", scope={"department": "b"}, amount="1", action="notify")
    ledger.check("0.1", department="a")  # loads the book of budgets

    def unreachable(*args, **kwargs):
        raise StorageUnavailable("database unavailable: connection refused")

    monkeypatch.setattr(ledger.store, "write", unreachable)
    with pytest.raises(StorageUnavailable, match="hard fail closed"):
        ledger.reserve("0.1", department="a")
    provisional = ledger.reserve("0.1", department="b")
    assert provisional.provisional and provisional.budgets == ["soft"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"amount": "0"}, "amount: must be positive"),
        ({"amount": "-5"}, "amount: must be positive"),
        ({"amount": "abc"}, "amount: 'abc' is not a decimal amount"),
        ({"scope": {"departmnet": "x"}}, "scope: unknown key 'departmnet'"),
        ({"warning_pct": "120"}, "warning_pct: must be between 0 and 100"),
        ({"warning_pct": "95", "critical_pct": "80"}, "warning (95%) must be below critical (80%)"),
        (
            {"period": "custom", "starts": datetime(2026, 2, 1, tzinfo=UTC), "ends": datetime(2026, 1, 1, tzinfo=UTC)},
            "the period ends before it starts",
        ),
        ({"period": "fortnightly"}, "period: 'fortnightly' must be one of"),
        ({"timezone": "Mars/Olympus"}, "not an IANA time zone"),
        ({"action": "explode"}, "action: 'explode' must be one of"),
        ({"action": "downgrade"}, "downgrade_model"),
        ({"action": "throttle"}, "throttle_rpm"),
        ({"currency": "XYZ"}, "no exchange rate configured for XYZ"),
    ],
)
def test_bad_budget_input_names_the_field_and_writes_nothing(ledger, kwargs, message):
    args = {"name": "x", "amount": "10", **kwargs}
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        ledger.budgets.create(**args)
    assert _count(ledger, budgets) == 0 and _count(ledger, budget_changes) == 0 and _count(ledger, approvals) == 0


def test_budget_in_euros_and_rolling_window(ledger, clock):
    eur = ledger.budgets.create(name="eu", amount="92", currency="EUR")  # 0.92 EUR per USD configured
    assert eur.limit_nanos == 100 * 10**9
    ledger.record(provider="openai", model="gpt-4o", input_tokens=400_000, timestamp=clock.now - timedelta(days=10))
    ledger.record(provider="openai", model="gpt-4o", input_tokens=400_000, timestamp=clock.now - timedelta(days=2))
    rolling = ledger.budgets.create(name="week", amount="5", period="rolling", window_days=7)
    spent = {s["name"]: s["spent_usd"] for s in ledger.budgets.status()}
    assert spent["week"] == "1.000000000"  # only the event inside the last 7 days
    assert rolling.period == "rolling"


def test_department_scoped_views_of_budgets_and_approvals(ledger):
    """A department-scoped caller sees only budgets within its departments, and their approvals."""
    ledger.budgets.create(name="org", amount="1000")
    ledger.budgets.create(name="research", scope={"department": "research"}, amount="100")
    ledger.budgets.create(name="sales", scope={"department": "sales"}, amount="100")
    ledger.budgets.create(name="shared", scope={"department": ["research", "sales"]}, amount="100")
    ledger.budgets.request_overage("research", "10", justification="launch", actor="head")
    ledger.budgets.request_overage("sales", "10", justification="fair", actor="head")

    assert [b.name for b in ledger.budgets.list(["research"])] == ["research"]
    assert [b.name for b in ledger.budgets.list(["research", "sales"])] == ["research", "sales", "shared"]
    assert [b.name for b in ledger.budgets.list([])] == []
    assert len(ledger.budgets.list()) == 4
    assert [a["budget"] for a in ledger.budgets.approvals(departments=["research"])] == ["research"]
    assert [a["budget"] for a in ledger.budgets.approvals("pending", ["sales"])] == ["sales"]
    assert len(ledger.budgets.approvals()) == 2


def test_reserve_and_commit_where_no_budget_applies(ledger):
    """A request outside every budget is granted and charged once, with nothing held."""
    ledger.budgets.create(name="research", scope={"department": "research"}, amount="1", action="block")
    reservation = ledger.reserve("0.50", department="sales", model="gpt-4o")
    event = ledger.commit_reservation(reservation, "0.25")
    assert event.cost_usd == Decimal("0.25")
    assert _count(ledger, events) == 1
    [status] = ledger.budgets.status()
    assert status["spent_usd"] == "0.000000000" and status["reserved_usd"] == "0.000000000"
