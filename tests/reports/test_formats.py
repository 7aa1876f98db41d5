"""Every report format, built from a small known ledger and opened again: totals exact to the cent
(display) and to the nano-dollar (exact columns), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from fleetledger.core.errors import InvalidInput
from fleetledger.core.money import nanos_to_usd
from fleetledger.reports import export
from fleetledger.reports.data import build_report
from fleetledger.reports.excel import CURRENCY_FORMAT
from fleetledger.reports.focus import FOCUS_COLUMNS

from .conftest import EVENTS_PER_DAY, october_total_nanos

CENT = Decimal("0.01")


def _d(value) -> Decimal:
    return Decimal(str(value))


def _department_nanos(ledger, department: str) -> int:
    return int(
        ledger.costs(
            since=datetime(2026, 10, 1, tzinfo=UTC),
            until=datetime(2026, 11, 1, tzinfo=UTC),
            where={"department": [department]},
        ).total["cost_nanos"]
    )


@pytest.mark.parametrize("kind", ["summary", "detailed", "chargeback"])
def test_every_breakdown_sums_to_the_total(known, kind):
    data = build_report(known, "2026-10", kind=kind)
    total = october_total_nanos(known)
    assert total > 0 and data.total_nanos == total  # the November event is outside the period
    assert data.complete and data.display_total == nanos_to_usd(total).quantize(CENT)
    for name, breakdown in data.breakdowns.items():
        assert sum(line.cost for line in breakdown.lines) == data.total, name
        assert sum(line.display for line in breakdown.lines) == data.display_total, name
        assert all(abs(line.display - line.cost) < CENT for line in breakdown.lines), name
    assert sum(t["cost"] for t in data.token_types) == data.total
    assert sum(t["display"] for t in data.token_types) == data.display_total
    assert sum(r["charge"] for r in data.chargeback) == data.total
    assert sum(r["charge_display"] for r in data.chargeback) == data.display_total
    assert len(data.breakdowns["daily"].lines) == 31  # every day of October, spend or not
    assert {line.keys[0] for line in data.breakdowns["by_department"].lines} == {"research", "support", "platform"}


def test_department_and_cost_center_scope(known):
    data = build_report(known, "2026-10", departments=["research"])
    assert data.total_nanos == _department_nanos(known, "research")
    assert [line.keys[0] for line in data.breakdowns["by_department"].lines] == ["research"]
    by_cc = build_report(known, "2026-10", cost_centers=["CC-200"])
    assert by_cc.total_nanos == _department_nanos(known, "support")
    assert [r["cost_center"] for r in by_cc.chargeback] == ["CC-200"]
    assert build_report(known, "2026-10", cost_centers=[" "]).total_nanos == october_total_nanos(
        known
    )  # blank: no filter
    unattributed = build_report(known, "2026-10", departments=["(none)"])
    assert unattributed.departments == (None,) and unattributed.total_nanos == 0


def test_xlsx_sheets_formats_and_exact_totals(known):
    known.budgets.create(name="research-monthly", amount="50", scope={"department": "research"}, period="monthly")
    made = export(known, "2026-10", fmt="xlsx", kind="summary")
    assert made.filename == "fleetledger-2026-10.xlsx"
    workbook = load_workbook(io.BytesIO(made.content))
    assert workbook.sheetnames == ["Summary", "Detailed", "Chart data", "Budgets"]
    total = nanos_to_usd(october_total_nanos(known))

    summary = workbook["Summary"]
    figures = {row[0].value: row[1] for row in summary.iter_rows(min_col=1, max_col=2) if row[0].value}
    assert _d(figures["Total spend"].value) == total.quantize(CENT)
    assert figures["Total spend"].number_format == CURRENCY_FORMAT
    assert _d(figures["Total spend (exact)"].value) == total
    assert summary.freeze_panes == "A8" and summary["A7"].value == "Metric"

    detailed = workbook["Detailed"]
    assert detailed.freeze_panes == "A2"
    header = [c.value for c in detailed[1]]
    money = header.index("Spend (USD)")
    exact = header.index("Exact cost (USD)")
    rows = list(detailed.iter_rows(min_row=2, values_only=True))
    lines, total_row = rows[:-1], rows[-1]
    assert total_row[0] == "Total"
    assert sum(_d(r[money]) for r in lines) == _d(total_row[money]) == total.quantize(CENT)
    assert sum(_d(r[exact]) for r in lines) == _d(total_row[exact]) == total
    assert total_row[-1] == f"=SUM(E2:E{len(lines) + 1})"  # the check formula over the money column
    assert detailed.cell(row=2, column=money + 1).number_format == CURRENCY_FORMAT
    assert detailed.column_dimensions["A"].width > 10

    # the department table's Total line equals the sum of its lines
    cells = list(summary.iter_rows(values_only=True))
    start = next(i for i, r in enumerate(cells) if r[0] == "Spend by department") + 2
    end = next(i for i in range(start, len(cells)) if cells[i][0] == "Total")
    assert sum(_d(r[1]) for r in cells[start:end]) == _d(cells[end][1]) == total.quantize(CENT)

    chart_data = workbook["Chart data"]
    days = [r for r in chart_data.iter_rows(min_row=2, max_col=2, values_only=True) if r[0] is not None]
    assert len(days) == 31 and sum(_d(r[1]) for r in days) == total.quantize(CENT)
    with zipfile.ZipFile(io.BytesIO(made.content)) as archive:
        charts = [n for n in archive.namelist() if n.startswith("xl/charts/chart")]
        assert len(charts) == 2
        kinds = "".join(archive.read(n).decode() for n in charts)
        assert "lineChart" in kinds and "barChart" in kinds

    budgets = list(workbook["Budgets"].iter_rows(min_row=2, values_only=True))
    assert budgets[0][0] == "research-monthly"
    assert _d(budgets[0][4]) == nanos_to_usd(_department_nanos(known, "research")).quantize(Decimal("0.000000001"))


def test_xlsx_detailed_kind_has_days_projects_and_agents(known):
    workbook = load_workbook(io.BytesIO(export(known, "2026-10", fmt="xlsx", kind="detailed").content))
    header = [c.value for c in workbook["Detailed"][1]]
    assert header[:7] == ["Day", "Department", "Cost center", "Project", "Agent", "Provider", "Model"]
    rows = list(workbook["Detailed"].iter_rows(min_row=2, values_only=True))[:-1]
    assert len(rows) == 10 * (len(EVENTS_PER_DAY) + 1)  # one line per day x agent/model, plus the line item


def _pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


@pytest.mark.parametrize("kind", ["summary", "detailed", "chargeback"])
def test_pdf_shows_the_total_charts_and_tables(known, kind):
    made = export(known, "2026-10", fmt="pdf", kind=kind)
    assert made.content.startswith(b"%PDF")
    text = _pdf_text(made.content)
    total = nanos_to_usd(october_total_nanos(known))
    assert f"${total.quantize(CENT):,}" in text
    assert f"${total:f}" in text  # the exact total on the title page
    for heading in ("Spend by department", "Daily spend (USD)", "Spend by model", "Chargeback by cost center"):
        assert heading in text
    if kind == "detailed":
        assert "Detailed lines" in text and "summarizer" in text


def test_pdf_of_one_department(known):
    text = _pdf_text(export(known, "2026-10", fmt="pdf", departments=["research"]).content)
    research = nanos_to_usd(_department_nanos(known, "research")).quantize(CENT)
    assert f"${research:,}" in text and "departments research" in text
    assert "support" not in text and "claude" not in text


@pytest.mark.parametrize("kind", ["summary", "detailed"])
def test_csv_cents_and_exact_amounts_sum_to_the_total(known, kind):
    rows = list(csv.DictReader(io.StringIO(export(known, "2026-10", fmt="csv", kind=kind).content.decode())))
    total = nanos_to_usd(october_total_nanos(known))
    assert sum(Decimal(r["cost_usd"]) for r in rows) == total.quantize(CENT)
    assert sum(Decimal(r["cost_usd_exact"]) for r in rows) == total
    assert ("day" in rows[0]) == (kind == "detailed")


def test_csv_chargeback(known):
    rows = list(csv.DictReader(io.StringIO(export(known, "2026-10", fmt="csv", kind="chargeback").content.decode())))
    total = nanos_to_usd(october_total_nanos(known))
    assert {r["cost_center"] for r in rows} == {"CC-100", "CC-200", "CC-900"}
    assert sum(Decimal(r["charge_usd"]) for r in rows) == total.quantize(CENT)
    assert sum(Decimal(r["charge_usd_exact"]) for r in rows) == total
    # the platform's shared infrastructure is charged to the cost centers that use it
    platform = next(r for r in rows if r["cost_center"] == "CC-900")
    assert Decimal(platform["charge_usd_exact"]) == 0


def test_focus_export(known):
    made = export(known, "2026-10", fmt="focus")
    assert made.filename == "fleetledger-2026-10-focus.csv"
    reader = csv.DictReader(io.StringIO(made.content.decode()))
    rows = list(reader)
    assert tuple(reader.fieldnames or ()) == FOCUS_COLUMNS
    for column in (
        "BilledCost",
        "EffectiveCost",
        "ListCost",
        "ContractedCost",
        "BillingCurrency",
        "ChargePeriodStart",
        "ChargePeriodEnd",
        "BillingPeriodStart",
        "BillingPeriodEnd",
        "ChargeCategory",
        "ChargeClass",
        "ConsumedQuantity",
        "ConsumedUnit",
        "PricingQuantity",
        "PricingUnit",
        "ListUnitPrice",
        "ContractedUnitPrice",
        "ServiceName",
        "ServiceCategory",
        "ServiceSubcategory",
        "ProviderName",
        "PublisherName",
        "InvoiceIssuerName",
        "ResourceId",
        "SkuId",
        "SkuPriceId",
        "Tags",
        "x_TokenType",
    ):
        assert column in FOCUS_COLUMNS
    total = october_total_nanos(known)
    assert sum(Decimal(r["BilledCost"]) for r in rows) == nanos_to_usd(total)
    assert sum(int(r["x_CostExactNanoUSD"]) for r in rows) == total
    for r in rows:
        assert r["BilledCost"] == r["EffectiveCost"] == r["ContractedCost"] == r["ListCost"]
        assert r["ChargeCategory"] == "Usage" and r["BillingCurrency"] == "USD" and r["ChargeClass"] == ""
        assert r["ServiceCategory"] == "AI and Machine Learning"
        assert r["BillingPeriodStart"] == "2026-10-01T00:00:00Z" and r["BillingPeriodEnd"] == "2026-11-01T00:00:00Z"
        if r["x_TokenType"] != "other":
            assert r["ConsumedUnit"] == "Tokens" and r["PricingUnit"] == "1000000 Tokens"
            assert r["ServiceSubcategory"] == "Generative AI"
            assert Decimal(r["PricingQuantity"]) * 1_000_000 == Decimal(r["ConsumedQuantity"])
            assert r["ResourceId"] == r["x_Model"] != ""
    # one row per model x token type x day x attribution
    keys = Counter(
        (r["ChargePeriodStart"], r["ProviderName"], r["x_Model"], r["x_TokenType"], r["Tags"], r["x_ServiceTier"])
        for r in rows
    )
    assert max(keys.values()) == 1
    # per day: gpt-4o input/cache_read/output, o3-mini input/output, claude input/cache_read/cache_write/output,
    # gpt-4o-mini input/output, the infrastructure line item (other)
    assert len(rows) == 10 * (3 + 2 + 4 + 2 + 1)
    claude = [r for r in rows if r["x_Model"].startswith("claude") and r["ChargePeriodStart"].startswith("2026-10-01")]
    assert sorted(r["x_TokenType"] for r in claude) == ["cache_read", "cache_write", "input", "output"]
    tags = json.loads(claude[0]["Tags"])
    assert tags == {
        "agent": "triage",
        "cost_center": "CC-200",
        "department": "support",
        "environment": "production",
        "project": "helpdesk",
    }
    # token-type costs equal the ledger's own per-bucket sums
    by_model = {
        row["model"]: row
        for row in known.costs(
            by=["model"], since=datetime(2026, 10, 1, tzinfo=UTC), until=datetime(2026, 11, 1, tzinfo=UTC)
        ).rows()
    }
    for token_type, column in (("cache_read", "cost_cache_read_usd"), ("output", "cost_output_usd")):
        focus_sum = sum(
            Decimal(r["BilledCost"])
            for r in rows
            if r["x_Model"] == "claude-sonnet-4-20250514" and r["x_TokenType"] == token_type
        )
        assert focus_sum == Decimal(by_model["claude-sonnet-4-20250514"][column]) > 0
    o3 = [r for r in rows if r["x_Model"] == "o3-mini" and r["x_TokenType"] == "output"]
    assert all(int(r["x_ReasoningTokens"]) > 0 for r in o3)


def test_focus_scoped_to_a_department(known):
    rows = list(
        csv.DictReader(io.StringIO(export(known, "2026-10", fmt="focus", departments=["support"]).content.decode()))
    )
    assert rows and {json.loads(r["Tags"])["department"] for r in rows} == {"support"}
    assert sum(Decimal(r["BilledCost"]) for r in rows) == nanos_to_usd(_department_nanos(known, "support"))


def test_empty_and_running_periods(known, clock):
    future = build_report(known, "2027-01")
    assert future.total_nanos == 0 and not future.breakdowns["by_department"].lines
    workbook = load_workbook(io.BytesIO(export(known, "2027-01", fmt="xlsx").content))
    assert workbook.sheetnames == ["Summary", "Detailed", "Chart data", "Budgets"]
    assert export(known, "2027-01", fmt="pdf").content.startswith(b"%PDF")
    assert export(known, "2027-01", fmt="focus").content.decode().count("\n") == 1  # the header only
    clock.now = datetime(2026, 10, 5, 12, tzinfo=UTC)
    running = build_report(known, "2026-10")
    assert not running.complete and running.until == clock.now
    assert len(running.breakdowns["daily"].lines) == 5


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (dict(period="2026-13"), "period"),
        (dict(period="October"), "period"),
        (dict(period="2026-10-09..2026-10-01"), "period"),
        (dict(period="2026-10", fmt="docx"), "format"),
        (dict(period="2026-10", kind="weekly"), "kind"),
    ],
)
def test_bad_input_names_the_parameter(known, call, named):
    with pytest.raises(InvalidInput) as caught:
        export(known, **call)
    assert caught.value.message.startswith(f"{named}:")


def test_day_range_and_quarter(known):
    week = build_report(known, "2026-10-01..2026-10-07")
    assert len(week.breakdowns["daily"].lines) == 7
    assert week.total_nanos == int(
        known.costs(since=datetime(2026, 10, 1, tzinfo=UTC), until=datetime(2026, 10, 8, tzinfo=UTC)).total[
            "cost_nanos"
        ]
    )
    assert build_report(known, "2026-Q4").total_nanos == october_total_nanos(known) + int(
        known.costs(since=datetime(2026, 11, 1, tzinfo=UTC), until=datetime(2026, 11, 2, 8, tzinfo=UTC)).total[
            "cost_nanos"
        ]
    )
