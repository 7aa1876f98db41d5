"""Prometheus metrics for one server process.

Spend is counted in integer nano-USD and only turned into a float at exposition time, because the
Prometheus text format has no decimals; these figures are for monitoring, the ledger is the record.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics"]


class _Spend:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.nanos: dict[str, int] = {}

    def add(self, provider: str, nanos: int) -> None:
        with self._lock:
            self.nanos[provider] = self.nanos.get(provider, 0) + nanos

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "fleetledger_spend_usd", "Spend ingested through this process, by provider", labels=["provider"]
        )
        with self._lock:
            for provider, nanos in sorted(self.nanos.items()):
                family.add_metric([provider], nanos / 1e9)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "fleetledger_events", "Usage events received", ["outcome"], registry=self.registry
        )  # outcome: accepted | duplicate | rejected
        self.latency = Histogram(
            "fleetledger_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.spend = _Spend()
        self.registry.register(self.spend)  # type: ignore[arg-type]

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route, str(status)).observe(seconds)

    def ingested(self, accepted: int, duplicates: int, rejected: int) -> None:
        self.events.labels("accepted").inc(accepted)
        self.events.labels("duplicate").inc(duplicates)
        self.events.labels("rejected").inc(rejected)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
