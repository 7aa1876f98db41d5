"""The provider-vs-ledger report: exact sums, and each kind of difference classified where it comes from."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import usd_to_nanos
from fleetledger.reconciliation.compare import import_for_ledger, key_maps, reconcile_ledger

from .conftest import DAY14, import_all, meter_fixture_traffic

START, END = 1791936000, 1792022400  # 2026-10-14, UTC


def _usage(model: str, project: str, input_tokens: int, output_tokens: int, requests: int, cached: int = 0) -> dict:
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_cached_tokens": cached,
        "num_model_requests": requests,
        "project_id": project,
        "api_key_id": "key_" + project,
        "model": model,
        "batch": False,
        "service_tier": "default",
    }


def _cost(line_item: str, project: str, value: str) -> dict:
    return {
        "object": "organization.costs.result",
        "amount": {"value": Decimal(value), "currency": "usd"},
        "line_item": line_item,
        "project_id": project,
    }


def _page(results: list[dict]) -> dict:
    return {"object": "page", "data": [{"object": "bucket", "start_time": START, "end_time": END, "results": results}]}


def _constructed(ledger) -> None:
    """One cell of each class on 2026-10-14 (openai; proj_search is the ledger's project "search")."""
    for _ in range(40):  # matched
        ledger.record(
            timestamp=DAY14,
            provider="openai",
            model="gpt-4o",
            input_tokens=3000,
            cache_read_tokens=1000,
            output_tokens=750,
            project="search",
        )
    for _ in range(200):  # price mismatch: the provider bills output at $0.90/MTok, we price $0.60
        ledger.record(
            timestamp=DAY14,
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=2500,
            output_tokens=500,
            project="search",
        )
    for _ in range(10):  # metered, not billed
        ledger.record(
            timestamp=DAY14, provider="openai", model="o4-mini", input_tokens=1000, output_tokens=100, project="search"
        )
    # An estimate never replaced by actual usage: a reservation committed with its estimate, the line
    # item Ledger.commit_reservation writes.
    ledger.record(
        timestamp=DAY14,
        provider="openai",
        model="gpt-4.1-mini",
        project="search",
        category="other",
        operation="reservation",
        cost_usd="0.05",
    )
    # ...and a day outside the provider's exports, which must not be compared.
    ledger.record(
        timestamp=datetime(2026, 10, 12, 9, tzinfo=UTC), provider="openai", model="gpt-4o", input_tokens=9, project="x"
    )
    usage = _page(
        [
            _usage("gpt-4o-2024-08-06", "proj_search", 120000, 30000, 40, cached=40000),
            _usage("gpt-4o-mini-2024-07-18", "proj_search", 500000, 100000, 200),
            _usage("gpt-4.1-2025-04-14", "proj_shadow", 100000, 10000, 10),  # traffic the ledger never saw
            _usage("gpt-4.1-mini-2025-04-14", "proj_search", 20000, 5000, 5),
        ]
    )
    costs = _page(
        [
            _cost("gpt-4o-2024-08-06, input", "proj_search", "0.2"),
            _cost("gpt-4o-2024-08-06, cached input", "proj_search", "0.05"),
            _cost("gpt-4o-2024-08-06, output", "proj_search", "0.3"),
            _cost("gpt-4o-mini-2024-07-18, input", "proj_search", "0.075"),
            _cost("gpt-4o-mini-2024-07-18, output", "proj_search", "0.09"),
            _cost("gpt-4.1-2025-04-14, input", "proj_shadow", "0.2"),
            _cost("gpt-4.1-2025-04-14, output", "proj_shadow", "0.08"),
            _cost("gpt-4.1-mini-2025-04-14, input", "proj_search", "0.008"),
            _cost("gpt-4.1-mini-2025-04-14, output", "proj_search", "0.008"),
        ]
    )
    assert import_for_ledger(ledger, "openai-usage", usage).rejected == 0
    assert import_for_ledger(ledger, "openai-costs", costs).rejected == 0


def test_provider_cost_lines_equal_to_metered_cost_are_all_matched(recon_ledger):
    meter_fixture_traffic(recon_ledger)
    import_all(recon_ledger)
    report = reconcile_ledger(recon_ledger, since="7d")
    totals = report.to_dict()["totals"]
    assert {cell.classification for cell in report.cells} == {"matched"}
    assert len(report.cells) == 7
    assert report.provider_nanos == report.ledger_nanos == usd_to_nanos(Decimal("1.4461712"))
    assert (totals["drift_usd"], totals["unexplained_usd"]) == ("0.000000000", "0.000000000")
    assert totals["tokens"]["drift"] == {
        "input_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 0,
    }
    assert report.coverage == {
        "anthropic": ["2026-10-14"],
        "mistral": ["2026-10-14"],
        "openai": ["2026-10-13", "2026-10-14"],
    }
    sonnet = next(c for c in report.cells if c.model == "claude-sonnet-4-5")
    assert (sonnet.key, sonnet.provider_cost_nanos) == ("research", 481_938_000)
    assert {p["token_type"]: p["provider_usd_per_mtok"] for p in sonnet.prices} == {
        "cache_read": "0.300000",
        "cache_write": "5.100000",  # 20480 5m writes at $3.75 and 30720 1h writes at $6, together
        "input": "3.000000",
        "output": "15.000000",
    }
    assert all(p["provider_usd_per_mtok"] == p["ledger_usd_per_mtok"] for p in sonnet.prices)


def test_each_difference_is_classified_and_the_parts_sum_to_the_drift(recon_ledger):
    _constructed(recon_ledger)
    report = reconcile_ledger(recon_ledger, since="7d")
    cells = {(c.model, c.key): c for c in report.cells}
    assert {key: c.classification for key, c in cells.items()} == {
        ("gpt-4o", "search"): "matched",
        ("gpt-4o-mini", "search"): "price_mismatch",
        ("gpt-4.1", "proj_shadow"): "unmetered_traffic",
        ("o4-mini", "search"): "metered_not_billed",
        ("gpt-4.1-mini", "search"): "unreconciled_estimate",
    }
    usd = {key: {name: str(Decimal(n) / 10**9) for name, n in c.parts.items()} for key, c in cells.items()}
    assert usd[("gpt-4o-mini", "search")] == {"price_mismatch": "0.03"}
    assert cells[("gpt-4o-mini", "search")].prices == [
        {"token_type": "input", "provider_usd_per_mtok": "0.150000", "ledger_usd_per_mtok": "0.150000"},
        {"token_type": "output", "provider_usd_per_mtok": "0.900000", "ledger_usd_per_mtok": "0.600000"},
    ]
    assert usd[("gpt-4.1", "proj_shadow")] == {"unmetered_traffic": "0.28"}  # at our catalog prices
    assert usd[("o4-mini", "search")] == {"metered_not_billed": "-0.0154"}
    assert usd[("gpt-4.1-mini", "search")] == {"unreconciled_estimate": "-0.05", "unmetered_traffic": "0.016"}
    assert cells[("gpt-4o", "search")].parts == {}

    by_class = report.by_class()
    assert by_class == {
        "matched": 0,
        "unmetered_traffic": 296_000_000,
        "price_mismatch": 30_000_000,
        "unreconciled_estimate": -50_000_000,
        "metered_not_billed": -15_400_000,
        "unexplained": 0,
    }
    assert sum(by_class.values()) == report.drift_nanos == report.provider_nanos - report.ledger_nanos
    assert report.provider_nanos == usd_to_nanos(Decimal("1.011"))
    assert report.ledger_nanos == usd_to_nanos(Decimal("0.55") + Decimal("0.135") + Decimal("0.0154") + Decimal("0.05"))
    tokens = report.token_totals()["drift"]
    assert tokens == {
        "input_tokens": 100000 + 20000 - 10 * 1000,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "output_tokens": 10000 + 5000 - 10 * 100,
    }
    assert report.coverage == {"openai": ["2026-10-14"]}  # the ledger's 2026-10-12 is not judged


def test_a_wider_tolerance_turns_small_differences_into_matches(recon_ledger):
    _constructed(recon_ledger)
    report = reconcile_ledger(recon_ledger, since="7d", tolerance_usd="0.0002")  # 200 requests: $0.04
    mini = next(c for c in report.cells if c.model == "gpt-4o-mini")
    assert (mini.classification, mini.parts, mini.tolerance_nanos) == ("matched", {"matched": 30_000_000}, 40_000_000)
    assert sum(report.by_class().values()) == report.drift_nanos
    with pytest.raises(InvalidInput, match="tolerance_usd: must be a non-negative"):
        reconcile_ledger(recon_ledger, since="7d", tolerance_usd="-1")
    with pytest.raises(InvalidInput, match="tolerance_usd: '1e30' is more than"):  # was decimal.InvalidOperation
        reconcile_ledger(recon_ledger, since="7d", tolerance_usd="1e30")


def test_a_bill_without_usage_leaves_an_unexplained_remainder(recon_ledger):
    for _ in range(10):
        recon_ledger.record(
            timestamp=DAY14,
            provider="mistral",
            model="mistral-medium-2508",
            input_tokens=3104,
            output_tokens=287,
            cache_read_tokens=2048,
            project="search",
        )
    csv_text = (
        "date,provider,model,project,description,amount\n"
        "2026-10-14,mistral,mistral-medium-2508,search,Mistral Medium usage,0.02\n"
        "2026-10-14,mistral,mistral-small-2506,search,Mistral Small usage,0.01\n"
    )
    assert import_for_ledger(recon_ledger, "invoice-csv", csv_text.encode()).inserted == 2
    report = reconcile_ledger(recon_ledger, since="7d", provider="mistral")
    cells = {c.model: c for c in report.cells}
    medium = cells["mistral-medium-3-1"]
    assert (medium.classification, medium.parts) == ("unexplained", {"unexplained": 20_000_000 - 10_783_200})
    assert cells["mistral-small-3.2-24b-instruct"].parts == {
        "unmetered_traffic": 10_000_000
    }  # the ledger has none of it
    assert report.unexplained_nanos == 9_216_800
    assert sum(report.by_class().values()) == report.drift_nanos


def test_keys_can_be_mapped_to_tags_or_ignored(recon_ledger):
    _constructed(recon_ledger)
    ignored = reconcile_ledger(recon_ledger, since="7d", keys=key_maps({"openai": {"provider_key": "none"}}))
    assert {c.key for c in ignored.cells} == {None}
    # gpt-4.1 (proj_shadow) still unmetered: the ledger has no gpt-4.1 anywhere
    assert next(c for c in ignored.cells if c.model == "gpt-4.1").classification == "unmetered_traffic"
    by_tag = key_maps({"openai": {"provider_key": "api_key_id", "ledger_key": "tag.api_key_id"}})
    report = reconcile_ledger(recon_ledger, since="7d", keys=by_tag)
    assert {c.key for c in report.cells if c.provider_has_usage and c.ledger_requests == 0} >= {"key_proj_shadow"}
    with pytest.raises(InvalidInput, match="provider_key"):
        key_maps({"openai": {"provider_key": "org"}})


@pytest.mark.parametrize("scenario", ["fixtures", "constructed"])
def test_rollups_and_raw_events_give_the_same_report(recon_ledger, scenario):
    if scenario == "fixtures":
        meter_fixture_traffic(recon_ledger)
        import_all(recon_ledger)
    else:
        _constructed(recon_ledger)
        recon_ledger.record(  # a line item that is not an estimate, without a model
            timestamp=DAY14, provider="openai", model=None, category="other", cost_usd="0.7", project="search"
        )
    fast = reconcile_ledger(recon_ledger, since="7d").to_dict()
    raw = reconcile_ledger(recon_ledger, since="7d", use_rollups=False).to_dict()
    assert fast == raw
    assert fast["cells"]
