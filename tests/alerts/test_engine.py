"""The alert engine: validation with nothing half-written, cooldown, escalation, budget events, history."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from fleetledger.alerts import ALERT_FIRED, BUDGET_CRITICAL, BUDGET_EXCEEDED, BUDGET_WARNING, Finding
from fleetledger.alerts.outbox import deliver_due
from fleetledger.alerts.registry import RuleRegistry
from fleetledger.alerts.tables import alert_channels, alert_outbox, alert_rules, alerts
from fleetledger.core.errors import Conflict, InvalidInput, NotFound


def counts(store) -> dict[str, int]:
    with store.read() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar()
            for t in (alert_channels, alert_rules, alerts, alert_outbox)
        }


def budget_event(level: str, *, name: str = "research-monthly", percent: str = "85.20", budget_id: int = 7) -> dict:
    return {
        "budget_id": budget_id,
        "name": name,
        "scope": {"department": "research"},
        "level": level,
        "percent_used": percent,
        "spent_usd": "852.00",
        "limit_usd": "1000.00",
        "period_start": "2026-10-01T00:00:00+00:00",
        "period_end": "2026-11-01T00:00:00+00:00",
    }


@pytest.fixture
def hooked(engine, receiver):
    engine.add_channel("hook", "webhook", {"url": receiver.url, "secret": "s"})
    return engine


# -- bad input ---------------------------------------------------------------------------------


BAD_INPUT = [
    (lambda e: e.add_channel("c", "webhook", {"url": "ftp://example.com"}), "url"),
    (lambda e: e.add_channel("c", "pagerduty", {}), "routing_key"),
    (lambda e: e.add_channel("", "webhook", {"url": "https://x.test"}), "name"),
    (lambda e: e.add_rule("r", "percent_increase", params={"percent": "12000"}), "percent"),
    (lambda e: e.add_rule("r", "percent_increase", params={"percent": "0"}), "percent"),
    (lambda e: e.add_rule("r", "budget", params={"budget": "b", "percent": "120"}), "percent"),
    (lambda e: e.add_rule("r", "budget", params={"levels": "warning,severe"}), "levels"),
    (lambda e: e.add_rule("r", "absolute_spend", scope={"region": "eu"}, params={"amount_usd": "5"}), "scope"),
    (lambda e: e.add_rule("r", "absolute_spend", params={"amount_usd": "5"}, channels=["hook", "nope"]), "channels"),
    (lambda e: e.add_rule("r", "absolute_spned", params={"amount_usd": "5"}), "kind"),
    (lambda e: e.add_rule("r", "absolute_spend", params={"amount_usd": "-5"}), "amount_usd"),
    (lambda e: e.add_rule("r", "absolute_spend", params={"amount_usd": "0"}), "amount_usd"),
    (lambda e: e.add_rule("r", "absolute_spend", params={"amount_usd": 0.5}), "amount_usd"),
    (lambda e: e.add_rule("r", "absolute_spend", params={"amount_usd": "5", "period": "year"}), "period"),
    (lambda e: e.add_rule("r", "cost_per_request", params={"amount_usd": "1", "window": "2h"}), "window"),
    (lambda e: e.add_rule("r", "cost_per_request", params={"amount_usd": "1", "percent": "5"}), "params.percent"),
    (lambda e: e.add_rule("r", "absolute_spend", params={"amount_usd": "5"}, cooldown_s=-1), "cooldown_s"),
    (lambda e: e.fire(rule=None, severity="fatal", dedup_key="k", title="t", message="m"), "severity"),
]


def test_bad_input_names_the_field_and_writes_nothing(hooked, store):
    # One database per case would be slow; each case is still checked on its own.
    before = counts(store)
    for call, field in BAD_INPUT:
        with pytest.raises(InvalidInput) as info:
            call(hooked)
        assert info.value.message.startswith(f"{field}:"), (field, info.value.message)
        assert counts(store) == before, field


def test_duplicates_and_unknown_names(hooked, store):
    hooked.add_rule("daily", "absolute_spend", params={"amount_usd": "5"}, channels=["hook"])
    before = counts(store)
    with pytest.raises(Conflict):
        hooked.add_rule("daily", "absolute_spend", params={"amount_usd": "9"})
    with pytest.raises(Conflict):
        hooked.add_channel("hook", "slack", {"url": "https://hooks.slack.test/x"})
    with pytest.raises(Conflict, match="used by rule"):
        hooked.delete_channel("hook")
    with pytest.raises(NotFound):
        hooked.test_channel("nope")
    with pytest.raises(NotFound):
        hooked.set_enabled("nope", False)
    assert counts(store) == before


def test_rule_crud_normalises(hooked):
    rule = hooked.add_rule(
        "research-budget",
        "budget",
        scope={"department": "research", "tag.team": ["nlp", "vision"]},
        params={"budget": "research-monthly", "levels": "exceeded,warning"},
        channels=["hook"],
    )
    assert rule.scope == {"department": ["research"], "tag.team": ["nlp", "vision"]}
    assert rule.params == {"budget": "research-monthly", "levels": ["warning", "exceeded"]}
    assert rule.cooldown_s == 86_400 and rule.enabled
    spend = hooked.add_rule("spend", "absolute_spend", params={"amount_usd": "$1,500"})
    assert spend.params == {"amount_usd": "1500", "period": "day", "severity": "warning"}
    assert [r.name for r in hooked.list_rules()] == ["research-budget", "spend"]
    assert not hooked.set_enabled("spend", False).enabled
    assert [r.name for r in hooked.list_rules(enabled_only=True)] == ["research-budget"]
    hooked.delete_rule("spend")
    assert [r.name for r in hooked.list_rules()] == ["research-budget"]
    listed = hooked.list_channels()[0].to_dict()
    assert listed["config"]["secret"] == "***s" and listed["config"]["url"].startswith("http://127.0.0.1")


# -- cooldown and escalation -----------------------------------------------------------------


def fire(engine, severity: str, key: str = "budget:7:2026-10", **kwargs):
    return engine.fire(rule="r", severity=severity, dedup_key=key, title=f"{severity}", message="m", **kwargs)


def test_cooldown_suppresses_the_same_key_for_24h(hooked, store, clock):
    hooked.add_rule("r", "budget", channels=["hook"])
    t0 = clock()
    assert fire(hooked, "warning") is not None
    clock.now = t0 + timedelta(hours=1)
    assert fire(hooked, "warning") is None
    assert fire(hooked, "warning", key="another-key") is not None  # other keys are independent
    clock.now = t0 + timedelta(hours=23, minutes=59)
    assert fire(hooked, "warning") is None
    clock.now = t0 + timedelta(hours=24)
    assert fire(hooked, "warning") is not None
    assert counts(store)["alerts"] == 3
    assert counts(store)["alert_outbox"] == 3


def test_escalation_fires_within_cooldown_and_lower_levels_do_not(hooked, clock):
    hooked.add_rule("r", "budget", channels=["hook"])
    fired = []
    for minutes, level in enumerate(["warning", "critical", "warning", "exceeded", "critical", "exceeded"]):
        clock.now += timedelta(minutes=minutes)
        fired.append(fire(hooked, level) is not None)
    assert fired == [True, True, False, True, False, False]
    assert [a.severity for a in hooked.history()] == ["exceeded", "critical", "warning"]


def test_zero_cooldown_always_fires(hooked):
    hooked.add_rule("r", "budget", channels=["hook"], cooldown_s=0)
    assert fire(hooked, "warning") is not None
    assert fire(hooked, "warning") is not None


# -- the bus ---------------------------------------------------------------------------------


def test_alert_fired_is_published_after_commit(hooked, bus, store):
    hooked.add_rule("r", "budget", channels=["hook"])
    seen = []

    def listener(payload: dict) -> None:
        # Published after the transaction: the alert is already visible to other readers.
        with store.read() as conn:
            stored = conn.execute(select(alerts.c.id).where(alerts.c.id == payload["alert_id"])).scalar()
        seen.append((payload, stored))

    bus.subscribe(ALERT_FIRED, listener)
    alert = fire(hooked, "critical", data={"spent_usd": "1"})
    [(payload, stored)] = seen
    assert stored == alert.id
    assert payload["severity"] == "critical" and payload["rule"] == "r" and payload["channels"] == ["hook"]
    assert payload["data"] == {"spent_usd": "1"}
    assert fire(hooked, "critical") is None
    assert len(seen) == 1  # suppressed alerts are not published


def test_budget_events_from_the_bus_fire_matching_rules(hooked, bus, store, clock, http, receiver):
    hooked.add_rule(
        "all-budgets", "budget", params={"budget": "*", "levels": ["critical", "exceeded"]}, channels=["hook"]
    )
    hooked.add_rule("research", "budget", params={"budget": "research-monthly"}, channels=["hook"])
    hooked.add_rule("other", "budget", params={"budget": "support-monthly"}, channels=["hook"])
    hooked.add_rule("sales-scope", "budget", scope={"department": "sales"}, channels=["hook"])
    hooked.add_rule("high", "budget", params={"percent": "90"}, channels=["hook"])

    bus.publish(BUDGET_WARNING, budget_event("warning"))
    assert [a.rule for a in hooked.history()] == ["research"]
    bus.publish(BUDGET_WARNING, budget_event("warning"))  # the budgets engine repeats itself: suppressed
    clock.now += timedelta(hours=2)
    bus.publish(BUDGET_CRITICAL, budget_event("critical", percent="91.00"))
    clock.now += timedelta(hours=2)
    bus.publish(BUDGET_EXCEEDED, budget_event("exceeded", percent="104.50"))
    fired = [(a.rule, a.severity) for a in reversed(hooked.history())]
    assert sorted(fired) == sorted(
        [
            ("research", "warning"),
            ("all-budgets", "critical"),
            ("research", "critical"),
            ("high", "critical"),
            ("all-budgets", "exceeded"),
            ("research", "exceeded"),
            ("high", "exceeded"),
        ]
    )
    newest = hooked.history(limit=1)[0]
    assert newest.dedup_key.startswith("budget:7:2026-10-01T00:00:00+00:00:")
    assert newest.title == "Budget research-monthly exceeded: 104.50% used"
    assert newest.data["limit_usd"] == "1000.00"
    assert newest.message.startswith("Budget research-monthly has spent $852.00 of $1000.00 (104.50%) in the period")
    assert deliver_due(store, now=clock(), http=http).delivered == 7
    assert len(receiver.requests) == 7


def test_closing_the_engine_unsubscribes(store, clock, bus, http):
    from fleetledger.alerts import AlertEngine

    engine = AlertEngine(store, clock=clock, bus=bus, http=http)
    assert bus.subscriber_count() == 3
    engine.close()
    assert bus.subscriber_count() == 0


# -- history and test sends --------------------------------------------------------------------


def test_history_with_delivery_status(hooked, store, clock, http, receiver, smtp_server):
    _, port = smtp_server
    hooked.add_channel("mail", "email", {"smtp_host": "127.0.0.1", "smtp_port": port, "from": "a@b.c", "to": "d@e.f"})
    hooked.add_rule("r", "budget", channels=["hook", "mail"])
    hooked.add_rule("q", "budget", channels=["hook"])
    t0 = clock()
    fire(hooked, "warning")
    receiver.responses = [400]
    deliver_due(store, now=clock(), http=http)
    clock.now = t0 + timedelta(days=3)
    hooked.fire(rule="q", severity="critical", dedup_key="q1", title="q", message="m")

    [newest, oldest] = hooked.history()
    assert [(d.channel, d.status) for d in newest.deliveries] == [("hook", "pending")]
    assert sorted((d.channel, d.status) for d in oldest.deliveries) == [("hook", "failed"), ("mail", "delivered")]
    assert [a.rule for a in hooked.history(since="1d")] == ["q"]
    assert [a.rule for a in hooked.history(rule="r")] == ["r"]
    assert len(hooked.history(limit=1)) == 1
    as_json = oldest.to_dict()
    assert as_json["deliveries"][0]["status"] in ("failed", "delivered")
    hooked.delete_rule("r")  # history survives its rule
    assert [a.rule for a in hooked.history()] == ["q", None]


def test_test_channel_sends_now_and_does_not_retry(hooked, store, clock, http, receiver):
    outcome = hooked.test_channel("hook")
    assert outcome.status == "delivered" and outcome.channel == "hook"
    assert b'"test":true' in receiver.requests[0].body
    receiver.responses = [503]
    failed = hooked.test_channel("hook")
    assert failed.status == "failed" and failed.detail.startswith("HTTP 503")
    assert deliver_due(store, now=clock() + timedelta(hours=1), http=http).claimed == 0


# -- plug-in evaluators ------------------------------------------------------------------------


def test_forecast_and_anomaly_rules_wait_for_their_evaluator(hooked, clock):
    rule = hooked.add_rule(
        "month-forecast", "forecast_overrun", params={"budget": "research-monthly"}, channels=["hook"]
    )
    assert hooked.evaluate() == []

    def evaluator(rule, now, store):
        return [Finding("critical", f"forecast:{rule.id}:2026-10", "Forecast over budget", "Projected $1,200")]

    hooked.register_evaluator("forecast_overrun", evaluator)
    [alert] = hooked.evaluate()
    assert (alert.rule_id, alert.severity, alert.title) == (rule.id, "critical", "Forecast over budget")
    assert hooked.evaluate() == []  # same key, within cooldown
    with pytest.raises(InvalidInput, match="^kind:"):
        hooked.register_evaluator("budget", evaluator)


def test_a_broken_evaluator_does_not_stop_the_others(hooked):
    hooked.add_rule("a", "anomaly", channels=["hook"])
    hooked.add_rule("f", "forecast_overrun", channels=["hook"])

    def broken(rule, now, store):
        raise RuntimeError("model not trained")

    hooked.register_evaluator("anomaly", broken)
    hooked.register_evaluator("forecast_overrun", lambda rule, now, store: [Finding("warning", "f1", "t", "m")])
    assert [a.rule for a in hooked.evaluate()] == ["f"]


def test_the_registry_knows_the_kinds_and_names_them_when_one_is_unknown():
    registry = RuleRegistry()
    assert list(registry) == ["absolute_spend", "percent_increase", "cost_per_request"]
    assert registry.evaluator("budget") is None and registry.evaluator("anomaly") is None  # waits for a module
    with pytest.raises(InvalidInput, match=r"^kind: 'spend_spike' is not a rule kind; use one of budget, "):
        registry.evaluator("spend_spike")
    with pytest.raises(InvalidInput, match=r"^kind: 'spend_spike' cannot have an evaluator; use one of "):
        registry.register("spend_spike", lambda rule, now, store: [])
    assert "spend_spike" not in registry


def test_a_stored_rule_of_an_unknown_kind_is_skipped_not_fatal(hooked, store, caplog):
    hooked.add_rule("f", "forecast_overrun", channels=["hook"])
    hooked.register_evaluator("forecast_overrun", lambda rule, now, store: [Finding("warning", "f1", "t", "m")])
    with store.write() as conn:  # as a newer release might have written it
        conn.execute(alert_rules.insert().values(**_rule_row(conn, "from-the-future", "spend_spike")))
    assert [a.rule for a in hooked.evaluate()] == ["f"]
    assert "alert rule from-the-future skipped: kind: 'spend_spike' is not a rule kind" in caplog.text


def _rule_row(conn, name: str, kind: str) -> dict:
    template = conn.execute(select(alert_rules).limit(1)).mappings().one()
    return {**{k: v for k, v in template.items() if k != "id"}, "name": name, "kind": kind}


def test_the_ledgers_engine_evaluates_every_scheduled_kind(ledger):
    """The composition root registers the kinds analytics and reconciliation provide."""
    assert list(ledger.alerts.registry) == [
        "absolute_spend",
        "percent_increase",
        "cost_per_request",
        "forecast_overrun",
        "anomaly",
        "reconciliation_drift",
    ]
