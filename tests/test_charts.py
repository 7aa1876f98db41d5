"""Chart data sums exactly and answers the questions the dashboard asks."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from fleetledger import Ledger, Settings
from fleetledger.analytics import charts
from fleetledger.demo.generator import DemoSpec, load_demo


def _demo(tmp_path, clock) -> Ledger:
    ledger = Ledger(
        settings=Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", spool_dir=tmp_path / "s"),
        background=False,
        clock=clock,
    )
    load_demo(ledger, DemoSpec(seed=3, days=30, events=20_000, end=clock.now))
    return ledger


def _sum(nodes) -> Decimal:
    return sum((Decimal(n["value_usd"]) for n in nodes), Decimal(0))


def test_every_chart_adds_up(tmp_path, clock):
    with _demo(tmp_path, clock) as ledger:
        total = Decimal(ledger.costs(since="30d").total_json()["cost_usd"])
        burst = charts.sunburst(ledger, since="30d")
        assert Decimal(burst["total_usd"]) == total == _sum(burst["children"])
        for department in burst["children"]:  # every parent is the exact sum of its children
            assert Decimal(department["value_usd"]) == _sum(department["children"])
            for agent in department["children"]:
                assert Decimal(agent["value_usd"]) == _sum(agent["children"])
        flows = charts.sankey(ledger, since="30d", max_agents=10)
        out_of_org = sum(Decimal(link["value_usd"]) for link in flows["links"] if link["source"] == "org")
        assert out_of_org == total
        for node in flows["nodes"]:
            if node["id"].startswith("agent:"):
                incoming = sum(Decimal(f["value_usd"]) for f in flows["links"] if f["target"] == node["id"])
                outgoing = sum(Decimal(f["value_usd"]) for f in flows["links"] if f["source"] == node["id"])
                assert incoming == outgoing
        waterfall = charts.token_waterfall(ledger, since="30d")
        assert sum(Decimal(s["cost_usd"]) for s in waterfall["steps"]) == Decimal(waterfall["total_usd"]) == total
        assert Decimal(waterfall["cache_saved_usd"]) > 0  # the demo reads from prompt caches
        trend = charts.spend_trend(ledger, by="provider", since="30d")
        assert {s["key"] for s in trend["series"]} == {"openai", "anthropic", "google", "mistral", "aws", "vllm"}
        assert sum(sum(Decimal(p) for p in s["points"]) for s in trend["series"]) == total
        assert all(len(s["points"]) == len(trend["days"]) for s in trend["series"])


def test_providers_distribution_and_agents(tmp_path, clock):
    with _demo(tmp_path, clock) as ledger:
        providers = charts.provider_comparison(ledger, since="30d")["providers"]
        openai = next(p for p in providers if p["provider"] == "openai")
        assert openai["p90_latency_ms"] >= openai["p50_latency_ms"] > 0
        assert Decimal(openai["error_rate_pct"]) < 5
        distribution = charts.cost_distribution(ledger, since="30d")
        assert sum(b["requests"] for b in distribution["histogram"]) == distribution["requests"]
        assert Decimal(distribution["p99_usd"]) >= Decimal(distribution["p50_usd"])
        assert all(
            Decimal(o["cost_usd"]) > Decimal(distribution["outlier_fence_usd"]) for o in distribution["outliers"]
        )
        agents = charts.top_agents(ledger, since="30d", limit=5)["agents"]
        costs = [Decimal(a["cost_usd"]) for a in agents]
        assert costs == sorted(costs, reverse=True) and len(agents) == 5
        assert all(Decimal(a["optimization_potential_usd"]) >= 0 for a in agents)
        scoped = charts.sunburst(ledger, since="30d", where={"department": ["research"]})
        assert [c["name"] for c in scoped["children"]] == ["research"]
        # a window with nothing in it is empty, not an error
        empty = charts.cost_distribution(
            ledger, since=clock.now + timedelta(days=1), until=clock.now + timedelta(days=2)
        )
        assert empty["requests"] == 0
