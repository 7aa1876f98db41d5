"""Excel reports (openpyxl, streamed in write-only mode so a month of a large fleet stays fast).

Sheets: **Summary** (headline figures; spend by department, model, token type; chargeback by cost
center), **Detailed** (one line per department x cost center x provider x model, or per day,
project and agent too for ``--kind detailed``), **Chart data** (daily trend and spend by department,
with an Excel line chart and bar chart drawn from those cells) and **Budgets**.

Money cells are numbers with a currency format. Each table's cents are rounded by largest
remainder, so the ``Total`` line -- written as a value -- equals the sum of the lines above it
exactly; a ``Check`` cell beside each total holds ``=SUM(...)`` of the lines for Excel users (it
shows nothing in readers that do not calculate formulas, which is why the total is a value). The
exact nine-place amounts are in the ``Exact cost (USD)`` columns.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter

from fleetledger.reports.data import Breakdown, ReportData

__all__ = ["render_xlsx", "CURRENCY_FORMAT", "EXACT_FORMAT"]

CURRENCY_FORMAT = '"$"#,##0.00;[Red]-"$"#,##0.00'
EXACT_FORMAT = '"$"#,##0.000000000'
_INT_FORMAT = "#,##0"
_PCT_FORMAT = '0.00"%"'
_BOLD = Font(bold=True)
_TITLE = Font(bold=True, size=16)
_HEADER_FILL = PatternFill("solid", fgColor="DDE4EE")
_TOTAL_FILL = PatternFill("solid", fgColor="F2F2F2")


class _Sheet:
    """A write-only worksheet with a row counter and styled-cell helpers."""

    def __init__(self, workbook: Workbook, title: str, widths: Sequence[int]) -> None:
        self.ws = workbook.create_sheet(title)
        for i, width in enumerate(widths, start=1):
            self.ws.column_dimensions[get_column_letter(i)].width = width
        self.row = 0

    def cell(self, value: Any, *, fmt: str | None = None, font: Font | None = None, fill: Any = None) -> Any:
        cell = WriteOnlyCell(self.ws, value=value)
        if fmt:
            cell.number_format = fmt
        if font:
            cell.font = font
        if fill:
            cell.fill = fill
        return cell

    def append(self, values: Sequence[Any]) -> int:
        self.ws.append(list(values))
        self.row += 1
        return self.row

    def header(self, names: Sequence[str]) -> int:
        return self.append([self.cell(n, font=_BOLD, fill=_HEADER_FILL) for n in names])


def _key(value: Any) -> Any:
    return "(none)" if value is None else value


def _table(
    sheet: _Sheet,
    title: str,
    breakdown: Breakdown,
    *,
    volumes: Sequence[tuple[str, str]] = (("Requests", "requests"),),
    exact: bool = False,
) -> tuple[int, int]:
    """A breakdown with a Total line (value) and a Check cell (formula). Returns its line rows."""
    sheet.append([sheet.cell(title, font=_BOLD)])
    heads = [*breakdown.headings, "Spend (USD)", "Share %", *(v[0] for v in volumes)]
    if exact:
        heads.append("Exact cost (USD)")
    sheet.header(heads)
    first = sheet.row + 1
    money_col = get_column_letter(len(breakdown.keys) + 1)
    for line in breakdown.lines:
        values: list[Any] = [_key(k) for k in line.keys]
        values.append(sheet.cell(line.display, fmt=CURRENCY_FORMAT))
        values.append(sheet.cell(line.share_pct, fmt=_PCT_FORMAT))
        values += [sheet.cell(line.measure(m), fmt=_INT_FORMAT) for _, m in volumes]
        if exact:
            values.append(sheet.cell(line.cost, fmt=EXACT_FORMAT))
        sheet.append(values)
    last = sheet.row
    total: list[Any] = [sheet.cell("Total", font=_BOLD, fill=_TOTAL_FILL)]
    total += [sheet.cell(None, fill=_TOTAL_FILL) for _ in breakdown.keys[1:]]
    total.append(sheet.cell(breakdown.display_total, fmt=CURRENCY_FORMAT, font=_BOLD, fill=_TOTAL_FILL))
    total.append(sheet.cell(Decimal("100.00") if breakdown.lines else Decimal("0.00"), fmt=_PCT_FORMAT))
    total += [sheet.cell(sum(line.measure(m) for line in breakdown.lines), fmt=_INT_FORMAT) for _, m in volumes]
    if exact:
        total.append(sheet.cell(breakdown.total, fmt=EXACT_FORMAT))
    total.append(sheet.cell("Check (formula):", font=Font(italic=True, color="808080")))
    formula = f"=SUM({money_col}{first}:{money_col}{last})" if breakdown.lines else "=0"
    total.append(sheet.cell(formula, fmt=CURRENCY_FORMAT, font=Font(italic=True, color="808080")))
    sheet.append(total)
    sheet.append([])
    return first, last


def _summary(workbook: Workbook, data: ReportData) -> None:
    sheet = _Sheet(workbook, "Summary", [30, 22, 12, 16, 16, 18, 22, 16])
    # Frozen under the title block and the headline header (row 7); write-only sheets need it up front.
    sheet.ws.freeze_panes = "A8"
    sheet.append([sheet.cell(data.title, font=_TITLE)])
    state = "complete" if data.complete else f"to {data.until.isoformat()} (period still running)"
    info = [
        ("Period", f"{data.period.label} ({data.period_text}, {state})"),
        ("Scope", data.scope_text),
        ("Generated", data.generated_at.isoformat(timespec="seconds")),
        ("Currency", data.currency),
    ]
    for label, value in info:
        sheet.append([sheet.cell(label, font=_BOLD), value])
    sheet.append([])
    # Headline figures: the header row is frozen under the title block.
    sheet.header(["Metric", "Value"])
    assert sheet.row == 7, "the frozen pane above expects the headline header on row 7"
    requests = data.measure("requests")
    sheet.append(["Total spend", sheet.cell(data.display_total, fmt=CURRENCY_FORMAT, font=_BOLD)])
    sheet.append(["Total spend (exact)", sheet.cell(data.total, fmt=EXACT_FORMAT)])
    sheet.append(["Requests", sheet.cell(requests, fmt=_INT_FORMAT)])
    for label, measure in (
        ("Input tokens", "input_tokens"),
        ("Output tokens", "output_tokens"),
        ("Cache read tokens", "cache_read_tokens"),
        ("Reasoning tokens", "reasoning_tokens"),
        ("Errors", "errors"),
        ("Unpriced requests", "unpriced"),
    ):
        sheet.append([label, sheet.cell(data.measure(measure), fmt=_INT_FORMAT)])
    per_request = (data.total / requests).quantize(Decimal("0.000001")) if requests else None
    sheet.append(["Cost per request", sheet.cell(per_request, fmt='"$"#,##0.000000')])
    sheet.append([])
    _table(sheet, "Spend by department", data.breakdowns["by_department"])
    _table(sheet, "Spend by cost center", data.breakdowns["by_cost_center"])
    _table(
        sheet,
        "Spend by model",
        data.breakdowns["by_model"],
        volumes=(("Requests", "requests"), ("Input tokens", "input_tokens"), ("Output tokens", "output_tokens")),
    )
    _table(sheet, "Spend by agent", data.breakdowns["by_agent"])
    # Token types
    sheet.append([sheet.cell("Spend by token type", font=_BOLD)])
    sheet.header(["Token type", "Spend (USD)", "Tokens", "Exact cost (USD)"])
    first = sheet.row + 1
    for item in data.token_types:
        sheet.append(
            [
                item["token_type"],
                sheet.cell(item["display"], fmt=CURRENCY_FORMAT),
                sheet.cell(item["tokens"], fmt=_INT_FORMAT),
                sheet.cell(item["cost"], fmt=EXACT_FORMAT),
            ]
        )
    sheet.append(
        [
            sheet.cell("Total", font=_BOLD, fill=_TOTAL_FILL),
            sheet.cell(sum((i["display"] for i in data.token_types), Decimal(0)), fmt=CURRENCY_FORMAT, font=_BOLD),
            None,
            sheet.cell(data.total, fmt=EXACT_FORMAT),
            sheet.cell("Check (formula):"),
            sheet.cell(f"=SUM(B{first}:B{sheet.row})", fmt=CURRENCY_FORMAT),
        ]
    )
    sheet.append([])
    # Chargeback
    sheet.append(
        [sheet.cell("Chargeback by cost center (shared infrastructure and storage spread by usage)", font=_BOLD)]
    )
    sheet.header(["Cost center", "Charge (USD)", "Allocation share %", "Direct (USD)", "Shared allocated (USD)"])
    first = sheet.row + 1
    for row in data.chargeback:
        sheet.append(
            [
                _key(row["cost_center"]),
                sheet.cell(row["charge_display"], fmt=CURRENCY_FORMAT),
                sheet.cell(row["allocation_share_pct"], fmt=_PCT_FORMAT),
                sheet.cell(row["direct"], fmt=EXACT_FORMAT),
                sheet.cell(row["shared_allocated"], fmt=EXACT_FORMAT),
            ]
        )
    if data.chargeback:
        sheet.append(
            [
                sheet.cell("Total", font=_BOLD, fill=_TOTAL_FILL),
                sheet.cell(
                    sum((r["charge_display"] for r in data.chargeback), Decimal(0)), fmt=CURRENCY_FORMAT, font=_BOLD
                ),
                None,
                None,
                None,
                sheet.cell("Check (formula):"),
                sheet.cell(f"=SUM(B{first}:B{sheet.row})", fmt=CURRENCY_FORMAT),
            ]
        )


def _detailed(workbook: Workbook, data: ReportData) -> None:
    breakdown = data.detail
    widths = [14 if k == "day" else 22 for k in breakdown.keys] + [14, 10, 12, 14, 14, 14, 14, 14, 20]
    sheet = _Sheet(workbook, "Detailed", widths)
    sheet.ws.freeze_panes = "A2"
    volumes = (
        ("Requests", "requests"),
        ("Input tokens", "input_tokens"),
        ("Cache read tokens", "cache_read_tokens"),
        ("Cache write tokens", "cache_write_tokens"),
        ("Output tokens", "output_tokens"),
        ("Reasoning tokens", "reasoning_tokens"),
    )
    sheet.header([*breakdown.headings, "Spend (USD)", "Share %", *(v[0] for v in volumes), "Exact cost (USD)"])
    money_col = get_column_letter(len(breakdown.keys) + 1)
    for line in breakdown.lines:
        sheet.append(
            [
                *(_key(k) for k in line.keys),
                sheet.cell(line.display, fmt=CURRENCY_FORMAT),
                sheet.cell(line.share_pct, fmt=_PCT_FORMAT),
                *(sheet.cell(line.measure(m), fmt=_INT_FORMAT) for _, m in volumes),
                sheet.cell(line.cost, fmt=EXACT_FORMAT),
            ]
        )
    last = sheet.row
    total: list[Any] = [sheet.cell("Total", font=_BOLD, fill=_TOTAL_FILL)]
    total += [sheet.cell(None, fill=_TOTAL_FILL) for _ in breakdown.keys[1:]]
    total.append(sheet.cell(breakdown.display_total, fmt=CURRENCY_FORMAT, font=_BOLD, fill=_TOTAL_FILL))
    total.append(None)
    total += [sheet.cell(data.measure(m), fmt=_INT_FORMAT) for _, m in volumes]
    total.append(sheet.cell(breakdown.total, fmt=EXACT_FORMAT))
    total.append(sheet.cell("Check (formula):"))
    total.append(sheet.cell(f"=SUM({money_col}2:{money_col}{last})" if last >= 2 else "=0", fmt=CURRENCY_FORMAT))
    sheet.append(total)


def _chart_data(workbook: Workbook, data: ReportData) -> None:
    sheet = _Sheet(workbook, "Chart data", [14, 16, 4, 28, 16])
    sheet.ws.freeze_panes = "A2"
    daily = data.breakdowns["daily"].lines
    departments = data.breakdowns["by_department"].lines
    sheet.header(["Day", "Spend (USD)", "", "Department", "Spend (USD)"])
    for i in range(max(len(daily), len(departments))):
        row: list[Any] = [None, None, None, None, None]
        if i < len(daily):
            row[0] = sheet.cell(daily[i].keys[0], fmt="yyyy-mm-dd")
            row[1] = sheet.cell(daily[i].display, fmt=CURRENCY_FORMAT)
        if i < len(departments):
            row[3] = _key(departments[i].keys[0])
            row[4] = sheet.cell(departments[i].display, fmt=CURRENCY_FORMAT)
        sheet.append(row)
    if daily:
        line = LineChart()
        line.title = "Daily spend (USD)"
        line.y_axis.title = "USD"
        line.y_axis.numFmt = CURRENCY_FORMAT
        line.x_axis.number_format = "yyyy-mm-dd"
        line.add_data(Reference(sheet.ws, min_col=2, min_row=1, max_row=len(daily) + 1), titles_from_data=True)
        line.set_categories(Reference(sheet.ws, min_col=1, min_row=2, max_row=len(daily) + 1))
        line.height, line.width = 8, 18
        sheet.ws.add_chart(line, "G2")
    if departments:
        bar = BarChart()
        bar.type = "bar"
        bar.title = "Spend by department (USD)"
        bar.y_axis.numFmt = CURRENCY_FORMAT
        shown = min(len(departments), 25)
        bar.add_data(Reference(sheet.ws, min_col=5, min_row=1, max_row=shown + 1), titles_from_data=True)
        bar.set_categories(Reference(sheet.ws, min_col=4, min_row=2, max_row=shown + 1))
        bar.height, bar.width = max(8, shown * 0.6), 18
        sheet.ws.add_chart(bar, "G20")


def _budgets(workbook: Workbook, data: ReportData) -> None:
    sheet = _Sheet(workbook, "Budgets", [24, 34, 12, 16, 20, 18, 16, 12, 10, 26])
    sheet.ws.freeze_panes = "A2"
    sheet.header(
        [
            "Budget",
            "Scope",
            "Period",
            "Limit (USD)",
            "Spent in report period",
            "Spent this window",
            "Window limit",
            "% used",
            "Status",
            "Current window",
        ]
    )
    for budget in data.budgets:
        sheet.append(
            [
                budget["name"],
                budget["scope"],
                budget["period"],
                sheet.cell(budget["limit"], fmt=CURRENCY_FORMAT),
                sheet.cell(budget["spent_in_report"], fmt=CURRENCY_FORMAT),
                sheet.cell(budget["window_spent"], fmt=CURRENCY_FORMAT),
                sheet.cell(budget["window_limit"], fmt=CURRENCY_FORMAT),
                sheet.cell(budget["percent_used"], fmt=_PCT_FORMAT),
                budget["status"],
                budget["window"],
            ]
        )
    if not data.budgets:
        sheet.append(["No active budget in this report's scope."])


def render_xlsx(data: ReportData) -> bytes:
    workbook = Workbook(write_only=True)
    _summary(workbook, data)
    _detailed(workbook, data)
    _chart_data(workbook, data)
    _budgets(workbook, data)
    workbook.properties.title = f"{data.title} {data.period.label}"
    workbook.properties.creator = "fleetledger"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
