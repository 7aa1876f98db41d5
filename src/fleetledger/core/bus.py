"""An in-process event bus: cost, budget and alert events, fan-out to whoever listens.

Why in-process: the server's live stream, the gateway and the alert engine run in one process and
need to hear about spend the moment it is recorded, without a broker to deploy. Durable delivery to
people is the outbox's job (``fleetledger.alerts.outbox``); the bus is best-effort and synchronous:
``publish`` calls each subscriber on the publisher's thread, after the publisher's transaction has
committed. A subscriber that raises is logged and skipped, so a broken listener can never make a
cost fail to record.

Topics and the payloads published on them (plain JSON-able dicts; money as decimal strings):

* ``cost.recorded``   -- one priced usage event (published by the ledger);
* ``budget.warning`` / ``budget.critical`` / ``budget.exceeded`` -- ``{"budget_id", "name", "scope",
  "level", "percent_used", "spent_usd", "limit_usd", "period_start", "period_end"}``;
* ``budget.adjusted`` -- a budget's limit or scope changed;
* ``alert.fired``     -- ``{"alert_id", "rule_id", "rule", "severity", "dedup_key", "title",
  "message", "data", "fired_at", "channels"}`` (published by :class:`~fleetledger.alerts.AlertEngine`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "EventBus",
    "Subscriber",
    "COST_RECORDED",
    "BUDGET_WARNING",
    "BUDGET_CRITICAL",
    "BUDGET_EXCEEDED",
    "BUDGET_ADJUSTED",
    "ALERT_FIRED",
    "TOPICS",
    "WILDCARD",
]

log = logging.getLogger(__name__)

COST_RECORDED = "cost.recorded"
BUDGET_WARNING = "budget.warning"
BUDGET_CRITICAL = "budget.critical"
BUDGET_EXCEEDED = "budget.exceeded"
BUDGET_ADJUSTED = "budget.adjusted"
ALERT_FIRED = "alert.fired"
TOPICS = (COST_RECORDED, BUDGET_WARNING, BUDGET_CRITICAL, BUDGET_EXCEEDED, BUDGET_ADJUSTED, ALERT_FIRED)
#: Subscribe to every topic; those callbacks receive a copy of the payload with ``"topic"`` added.
WILDCARD = "*"

#: A subscriber is called with the payload dict (treat it as read-only: it is shared).
Subscriber = Callable[[dict[str, Any]], object]  # a return value is ignored


class EventBus:
    """Topic -> subscribers. Thread-safe: subscribe, unsubscribe and publish from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[Subscriber]] = {}

    def subscribe(self, topic: str, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(payload)`` for every event on ``topic`` (or ``"*"``: all topics).

        Returns a function that unsubscribes; calling it twice is harmless.
        """
        if not isinstance(topic, str) or not topic:
            raise ValueError("topic must be a non-empty string")
        with self._lock:
            # Copy-on-write: publish iterates a snapshot without holding the lock.
            self._subscribers[topic] = [*self._subscribers.get(topic, ()), callback]

        def unsubscribe() -> None:
            with self._lock:
                current = self._subscribers.get(topic, [])
                if callback in current:
                    remaining = list(current)
                    remaining.remove(callback)
                    self._subscribers[topic] = remaining

        return unsubscribe

    def publish(self, topic: str, payload: dict[str, Any]) -> int:
        """Deliver ``payload`` to the topic's and the wildcard's subscribers; returns how many ran OK."""
        with self._lock:
            direct = self._subscribers.get(topic, [])
            wildcard = self._subscribers.get(WILDCARD, []) if topic != WILDCARD else []
        tagged = {**payload, "topic": topic}
        targets = [(callback, payload) for callback in direct] + [(callback, tagged) for callback in wildcard]
        delivered = 0
        for callback, item in targets:
            try:
                callback(item)
                delivered += 1
            except Exception:  # a listener's bug must not break the publisher
                log.exception("event bus subscriber %r failed on %s", callback, topic)
        return delivered

    def subscriber_count(self, topic: str | None = None) -> int:
        with self._lock:
            if topic is not None:
                return len(self._subscribers.get(topic, ()))
            return sum(len(v) for v in self._subscribers.values())

    def subscribe_queue(
        self,
        topics: Iterable[str],
        loop: asyncio.AbstractEventLoop,
        *,
        maxsize: int = 1000,
    ) -> tuple[asyncio.Queue[dict[str, Any]], Callable[[], None]]:
        """Forward events on ``topics`` into an ``asyncio.Queue`` owned by ``loop``.

        For live streams (server-sent events, websockets): publishers run on worker threads, so
        each payload is handed over with ``loop.call_soon_threadsafe``. Items are the payload with
        ``"topic"`` added. When the queue is full the event is dropped for that listener (a slow
        browser must not grow memory without bound). Returns ``(queue, unsubscribe)``.
        """
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=maxsize)

        def put(item: dict[str, Any]) -> None:
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                log.warning("event stream queue full; dropping a %s event", item.get("topic"))

        def forwarder(topic: str) -> Subscriber:
            def forward(payload: dict[str, Any]) -> None:
                if not loop.is_closed():
                    # Wildcard payloads already carry their real topic.
                    item = payload if topic == WILDCARD else {**payload, "topic": topic}
                    loop.call_soon_threadsafe(put, item)

            return forward

        unsubscribers = [self.subscribe(topic, forwarder(topic)) for topic in topics]

        def unsubscribe() -> None:
            for undo in unsubscribers:
                undo()

        return queue, unsubscribe
