"""Importing each export kind: bad lines rejected where they are, the rest kept, re-import idempotent."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fleetledger.core.errors import InvalidEvent, InvalidInput
from fleetledger.reconciliation.compare import import_for_ledger, read_lines
from fleetledger.reconciliation.importers.openai_costs import parse_line_item
from fleetledger.reconciliation.tables import provider_lines
from fleetledger.storage.schema import events

from .conftest import EXPORTS, FIXTURES

EXPECTED = {
    "openai-costs": (
        7,
        {
            "openai_costs.json:data[1].results[5]": (
                "line_item: null; export with group_by=line_item so each amount names its model and token type"
            ),
            "openai_costs.json:data[1].results[6]": (
                "amount.value: currency 'eur' is not USD; the ledger is kept in USD, convert the line first"
            ),
            "openai_costs.json:data[1].results[7]": "amount.value: 'n/a' is not a decimal amount",
        },
    ),
    "openai-usage": (
        3,
        {
            "openai_usage.json:data[1].results[2]": (
                "model: null; export with group_by=model so each result names the model to price it by"
            )
        },
    ),
    "anthropic-usage": (
        2,
        {
            "anthropic_usage.json:data[0].results[2]": (
                "model: null; export with group_by[]=model so each result names its model"
            ),
            "anthropic_usage.json:data[0].results[3]": "uncached_input_tokens: expected a token count, got 'many'",
        },
    ),
    "anthropic-costs": (
        8,
        {
            "anthropic_costs.json:data[0].results[8]": (
                "amount: currency 'EUR' is not USD; the ledger is kept in USD, convert the line first"
            ),
            "anthropic_costs.json:data[0].results[9]": "amount: expected a decimal string in cents, got 12.5",
        },
    ),
    "invoice-csv": (
        3,
        {
            "invoice.csv:5": "date: not a date-time: '2026-13-01'",
            "invoice.csv:6": "amount: 'twelve' is not a decimal amount",
            "invoice.csv:7": "amount: currency 'EUR' is not USD; the ledger is kept in USD, convert the line first",
            "invoice.csv:8": "3 cells but the header has 9",
        },
    ),
}


def _stored(ledger, kind: str | None = None) -> list:
    query = select(provider_lines).order_by(provider_lines.c.id)
    if kind:
        query = query.where(provider_lines.c.kind == kind)
    with ledger.store.read() as conn:
        return list(conn.execute(query))


@pytest.mark.parametrize("kind", list(EXPORTS))
def test_each_kind_keeps_good_lines_and_reports_bad_ones(recon_ledger, kind):
    inserted, rejections = EXPECTED[kind]
    result = import_for_ledger(recon_ledger, kind, FIXTURES / EXPORTS[kind], source_name=EXPORTS[kind])
    assert (result.inserted, result.updated, result.unchanged, result.rejected) == (inserted, 0, 0, len(rejections))
    assert {r["location"]: r["reason"] for r in result.rejections} == rejections
    rows = _stored(recon_ledger, kind)
    assert len(rows) == inserted
    assert all(row.source == EXPORTS[kind] for row in rows)
    with recon_ledger.store.read() as conn:  # provider lines never become metered events
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 0

    again = import_for_ledger(recon_ledger, kind, FIXTURES / EXPORTS[kind])
    assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, inserted, len(rejections))
    assert len(_stored(recon_ledger, kind)) == inserted


def test_amounts_are_exact_decimals_and_cents_are_divided(recon_ledger):
    import_for_ledger(recon_ledger, "openai-costs", FIXTURES / "openai_costs.json")
    import_for_ledger(recon_ledger, "anthropic-costs", FIXTURES / "anthropic_costs.json")
    rows = {(r.kind, r.description): r for r in _stored(recon_ledger)}
    cached = rows[("openai-costs", "gpt-4o-2024-08-06, cached input")]
    assert (cached.model, cached.token_type, cached.cost_nanos, cached.project_id) == (
        "gpt-4o-2024-08-06",
        "cache_read",
        50_000_000,
        "proj_search",
    )
    read = rows[("anthropic-costs", "Claude Sonnet 4.5 Usage - Input Tokens, Cache Hit")]
    assert (read.cost_nanos, read.amount_text, read.token_type) == (73_728_000, "7.3728 USD cents", "cache_read")
    web = rows[("anthropic-costs", "Web Search")]
    assert (web.model, web.token_type, web.cost_nanos) == (None, None, 200_000_000)  # "20" cents is $0.20


def test_usage_lines_follow_the_ledger_token_convention(recon_ledger):
    import_for_ledger(recon_ledger, "anthropic-usage", FIXTURES / "anthropic_usage.json")
    import_for_ledger(recon_ledger, "openai-usage", FIXTURES / "openai_usage.json")
    sonnet = next(r for r in _stored(recon_ledger, "anthropic-usage") if r.model.startswith("claude-sonnet"))
    # input = uncached + cache reads + both cache writes
    assert sonnet.input_tokens == 18430 + 245760 + 20480 + 30720
    assert (sonnet.cache_read_tokens, sonnet.cache_write_tokens, sonnet.cache_write_1h_tokens) == (245760, 51200, 30720)
    assert (sonnet.web_search_requests, sonnet.requests, sonnet.workspace_id) == (
        20,
        None,
        "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
    )
    gpt = [r for r in _stored(recon_ledger, "openai-usage") if r.requests == 40][0]
    assert (gpt.input_tokens, gpt.cache_read_tokens, gpt.api_key_id, gpt.has_usage, gpt.cost_nanos) == (
        120000,
        40000,
        "key_search01",
        1,
        None,
    )


def test_restated_export_updates_the_line_in_place(recon_ledger, tmp_path: Path):
    page = json.loads((FIXTURES / "openai_costs.json").read_text())
    import_for_ledger(recon_ledger, "openai-costs", page)
    page["data"][1]["results"][0]["amount"]["value"] = Decimal("0.21")
    restated = import_for_ledger(recon_ledger, "openai-costs", page)
    assert (restated.inserted, restated.updated, restated.unchanged) == (0, 1, 6)
    assert {r.cost_nanos for r in _stored(recon_ledger) if r.description == "gpt-4o-2024-08-06, input"} == {
        25_000_000,
        210_000_000,
    }


def test_open_buckets_wait_until_they_close(recon_ledger, clock):
    from datetime import datetime, timedelta

    clock.now = datetime.fromisoformat("2026-10-14T18:00:00+00:00")
    items = dict(read_lines("anthropic-usage", FIXTURES / "anthropic_usage.json", now=clock.now))
    assert str(items["anthropic_usage.json:data[0]"]) == (
        "bucket ending 2026-10-15T00:00:00+00:00 is still open; import it after it closes"
    )
    clock.now += timedelta(days=1)
    closed = read_lines("anthropic-usage", FIXTURES / "anthropic_usage.json", now=clock.now)
    assert isinstance(closed[0][1], dict) and closed[0][0] == "anthropic_usage.json:data[0].results[0]"


def test_invoice_identical_rows_are_two_lines_and_the_token_type_can_come_from_the_description(tmp_path):
    csv_text = (
        "date,provider,model,key,description,quantity,amount\n"
        "2026-10-14,openai,gpt-4o,key_a,GPT-4o output tokens,1000,0.01\n"
        "2026-10-14,openai,gpt-4o,key_a,GPT-4o output tokens,1000,0.01\n"
        "2026-10-14T23:30:00-02:00,openai,,key_a,Platform fee,,-5\n"
    )
    items = read_lines("invoice-csv", csv_text.encode())
    lines = [item for _, item in items]
    assert not any(isinstance(item, InvalidEvent) for item in lines)
    assert lines[0]["identity"] != lines[1]["identity"]
    assert (lines[0]["token_type"], lines[0]["output_tokens"], lines[0]["api_key_id"]) == ("output", 1000, "key_a")
    fee = lines[2]
    assert (fee["model"], fee["cost_usd"], fee["has_usage"], fee["start"].date().isoformat()) == (
        None,
        Decimal("-5"),
        False,
        "2026-10-15",  # 23:30 at -02:00 is the next UTC day
    )


def test_an_amount_too_large_to_store_is_a_rejected_line_not_a_failed_import(recon_ledger):
    csv_text = (
        "date,provider,model,amount\n"
        "2026-10-14,openai,gpt-4o,1.5\n"
        "2026-10-14,openai,gpt-4o,1e30\n"  # was a decimal.InvalidOperation: the whole import failed (a 500)
        "2026-10-14,openai,gpt-4o-mini,-99999999999\n"  # nanos past the 64-bit column
        "2026-10-14,openai,o3,1000000000\n"
    )
    result = import_for_ledger(recon_ledger, "invoice-csv", csv_text.encode())
    assert (result.inserted, result.rejected, result.cost_nanos) == (2, 2, 1_000_000_001_500_000_000)
    assert [(r["location"], "out of range" in r["reason"]) for r in result.rejections] == [
        ("body:3", True),
        ("body:4", True),
    ]
    assert sorted(r.cost_nanos for r in _stored(recon_ledger)) == [1_500_000_000, 1_000_000_000_000_000_000]


@pytest.mark.parametrize(
    ("kind", "content", "message"),
    [
        ("openai-costs", b'{"object": "list"}', "not a Costs API page"),
        ("anthropic-costs", b"[1, 2", "not a JSON cost report"),
        ("invoice-csv", b"day,model\n2026-10-14,x\n", "no provider, amount column"),
        ("openai-usage", b'{"data": "nope"}', "not a Usage API page"),
        ("nonsense", b"{}", "not an export kind"),
    ],
)
def test_unreadable_exports_raise_invalid_input(kind, content, message):
    with pytest.raises(InvalidInput, match=message):
        read_lines(kind, content)


def test_line_items_name_model_token_type_and_tier():
    assert parse_line_item("gpt-4o-2024-08-06, cached input") == ("gpt-4o-2024-08-06", "cache_read", None)
    assert parse_line_item("gpt-4o-mini-2024-07-18, batch output") == ("gpt-4o-mini-2024-07-18", "output", "batch")
    assert parse_line_item("gpt-image-1") == ("gpt-image-1", None, None)
    assert parse_line_item("web search tool calls") == (None, None, None)
