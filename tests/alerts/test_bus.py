"""The in-process event bus: topics, wildcard, unsubscribe, failing subscribers, asyncio bridge."""

from __future__ import annotations

import asyncio
import logging
import threading

from fleetledger.core import bus as bus_module
from fleetledger.core.bus import (
    ALERT_FIRED,
    BUDGET_ADJUSTED,
    BUDGET_CRITICAL,
    BUDGET_EXCEEDED,
    BUDGET_WARNING,
    COST_RECORDED,
    EventBus,
)


def test_topic_names_are_the_contract():
    assert (COST_RECORDED, BUDGET_WARNING, BUDGET_CRITICAL, BUDGET_EXCEEDED, BUDGET_ADJUSTED, ALERT_FIRED) == (
        "cost.recorded",
        "budget.warning",
        "budget.critical",
        "budget.exceeded",
        "budget.adjusted",
        "alert.fired",
    )
    assert set(bus_module.__all__) >= {"EventBus", "COST_RECORDED", "ALERT_FIRED"}


def test_subscribe_publish_and_unsubscribe():
    bus = EventBus()
    seen: list[dict] = []
    unsubscribe = bus.subscribe(COST_RECORDED, seen.append)
    assert bus.publish(COST_RECORDED, {"cost_usd": "0.01"}) == 1
    bus.publish(BUDGET_WARNING, {"name": "x"})  # another topic: not seen
    assert seen == [{"cost_usd": "0.01"}]
    unsubscribe()
    unsubscribe()  # harmless twice
    assert bus.publish(COST_RECORDED, {"cost_usd": "0.02"}) == 0
    assert len(seen) == 1


def test_wildcard_gets_every_topic_tagged():
    bus = EventBus()
    everything: list[dict] = []
    bus.subscribe("*", everything.append)
    bus.publish(COST_RECORDED, {"a": 1})
    bus.publish(ALERT_FIRED, {"b": 2})
    assert everything == [{"a": 1, "topic": COST_RECORDED}, {"b": 2, "topic": ALERT_FIRED}]


def test_a_failing_subscriber_does_not_break_publish(caplog):
    bus = EventBus()
    seen: list[dict] = []

    def broken(payload: dict) -> None:
        raise RuntimeError("listener bug")

    bus.subscribe(BUDGET_EXCEEDED, broken)
    bus.subscribe(BUDGET_EXCEEDED, seen.append)
    with caplog.at_level(logging.ERROR, logger="fleetledger.core.bus"):
        assert bus.publish(BUDGET_EXCEEDED, {"name": "research"}) == 1
    assert seen == [{"name": "research"}]
    assert "listener bug" in caplog.text


def test_thread_safe_subscribe_while_publishing():
    bus = EventBus()
    counts = {"n": 0}
    lock = threading.Lock()

    def count(payload: dict) -> None:
        with lock:
            counts["n"] += 1

    bus.subscribe(COST_RECORDED, count)

    def churn() -> None:
        for _ in range(200):
            bus.subscribe(COST_RECORDED, lambda p: None)()

    def publish() -> None:
        for _ in range(200):
            bus.publish(COST_RECORDED, {})

    threads = [threading.Thread(target=churn), threading.Thread(target=publish), threading.Thread(target=publish)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts["n"] == 400
    assert bus.subscriber_count(COST_RECORDED) == 1


def test_subscribe_queue_forwards_from_other_threads():
    bus = EventBus()

    async def main() -> list[dict]:
        loop = asyncio.get_running_loop()
        queue, unsubscribe = bus.subscribe_queue([ALERT_FIRED, BUDGET_WARNING], loop)
        worker = threading.Thread(
            target=lambda: (bus.publish(ALERT_FIRED, {"alert_id": 1}), bus.publish(COST_RECORDED, {"x": 1}))
        )
        worker.start()
        worker.join()
        first = await asyncio.wait_for(queue.get(), 30)
        unsubscribe()
        bus.publish(ALERT_FIRED, {"alert_id": 2})
        await asyncio.sleep(0.01)
        return [first, *([queue.get_nowait()] if not queue.empty() else [])]

    assert asyncio.run(main()) == [{"alert_id": 1, "topic": ALERT_FIRED}]


def test_every_alerts_module_declares_its_public_names():
    import importlib

    names = ["fleetledger.core.bus"] + [
        f"fleetledger.alerts.{name}" for name in ("channels", "engine", "outbox", "records", "rules", "tables")
    ]
    for name in names:
        module = importlib.import_module(name)
        assert module.__doc__ and module.__all__, name
        assert all(hasattr(module, item) for item in module.__all__), name
    package = importlib.import_module("fleetledger.alerts")
    assert all(hasattr(package, item) for item in package.__all__)
