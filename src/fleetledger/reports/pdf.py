"""PDF reports (reportlab): a title page with the headline figures, charts drawn with
reportlab.graphics (spend by department, daily trend, token types) and the tables.

The figures are the dataset's cents (largest remainder: each table's lines sum to its total).
Chart geometry is drawn from floats -- pixels, not money; every amount printed is a Decimal.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from reportlab.graphics.charts.barcharts import HorizontalBarChart
from reportlab.graphics.charts.linecharts import HorizontalLineChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from fleetledger.reports.data import Breakdown, ReportData

__all__ = ["render_pdf", "money", "MAX_PDF_LINES"]

#: Detailed tables longer than this are cut in the PDF (the CSV and Excel files carry every line).
MAX_PDF_LINES = 500
_STYLES = getSampleStyleSheet()
_ACCENT = colors.HexColor("#2F5D8A")


def money(value: Decimal | None) -> str:
    if value is None:
        return ""
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def _label(value: Any) -> str:
    if value is None:
        return "(none)"
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _table(rows: list[list[Any]], widths: Sequence[float] | None = None, *, total: bool = True) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1)
    style = [
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8),
        ("FONT", (0, 1), (-1, -1), "Helvetica", 8),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DDE4EE")),
        ("ALIGN", (1, 1), (-1, -1), "RIGHT"),
        ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
    ]
    if total and len(rows) > 1:
        style += [
            ("FONT", (0, -1), (-1, -1), "Helvetica-Bold", 8),
            ("LINEABOVE", (0, -1), (-1, -1), 0.5, colors.grey),
        ]
    table.setStyle(TableStyle(style))
    return table


def _breakdown_table(breakdown: Breakdown, *, limit: int | None = None, requests: bool = True) -> list[Any]:
    heads = [*breakdown.headings, "Spend", "Share", *(["Requests"] if requests else [])]
    rows: list[list[Any]] = [heads]
    lines = breakdown.lines if limit is None else breakdown.lines[:limit]
    for line in lines:
        rows.append(
            [
                *(_label(k) for k in line.keys),
                money(line.display),
                f"{line.share_pct}%",
                *([f"{line.measure('requests'):,}"] if requests else []),
            ]
        )
    total_requests = sum(line.measure("requests") for line in breakdown.lines)
    rows.append(
        [
            "Total",
            *([""] * (len(breakdown.keys) - 1)),
            money(breakdown.display_total),
            "100.00%" if breakdown.lines else "",
            *([f"{total_requests:,}"] if requests else []),
        ]
    )
    out: list[Any] = [_table(rows)]
    if limit is not None and len(breakdown.lines) > limit:
        out.append(
            Paragraph(
                f"The first {limit:,} of {len(breakdown.lines):,} lines are shown; the total covers every line. "
                "The CSV and Excel reports list them all.",
                _STYLES["Italic"],
            )
        )
    return out


def _bar_chart(title: str, labels: list[str], values: list[Decimal], width: float = 170 * mm) -> Drawing:
    height = max(60 * mm, (len(labels) * 7 + 25) * mm / 2.2)
    drawing = Drawing(width, height)
    drawing.add(String(0, height - 12, title, fontName="Helvetica-Bold", fontSize=10))
    chart = HorizontalBarChart()
    chart.x, chart.y = 45 * mm, 8 * mm
    chart.width, chart.height = width - 60 * mm, height - 25 * mm
    chart.data = [[float(v) for v in reversed(values)]]  # geometry only
    chart.categoryAxis.categoryNames = [label[:28] for label in reversed(labels)]
    chart.categoryAxis.labels.fontSize = 7
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    chart.valueAxis.labelTextFormat = lambda v: f"${v:,.0f}" if v >= 10 else f"${v:,.2f}"
    chart.bars[0].fillColor = _ACCENT
    drawing.add(chart)
    return drawing


def _line_chart(title: str, labels: list[str], values: list[Decimal], width: float = 170 * mm) -> Drawing:
    height = 70 * mm
    drawing = Drawing(width, height)
    drawing.add(String(0, height - 12, title, fontName="Helvetica-Bold", fontSize=10))
    chart = HorizontalLineChart()
    chart.x, chart.y = 18 * mm, 12 * mm
    chart.width, chart.height = width - 25 * mm, height - 28 * mm
    chart.data = [[float(v) for v in values]]  # geometry only
    step = max(1, len(labels) // 8)
    chart.categoryAxis.categoryNames = [label[5:] if i % step == 0 else "" for i, label in enumerate(labels)]
    chart.categoryAxis.labels.fontSize = 7
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    chart.valueAxis.labelTextFormat = lambda v: f"${v:,.0f}" if v >= 10 else f"${v:,.2f}"
    chart.lines[0].strokeColor = _ACCENT
    chart.lines[0].strokeWidth = 1.5
    drawing.add(chart)
    return drawing


def _title_page(data: ReportData) -> list[Any]:
    state = "complete" if data.complete else f"partial: up to {data.until.isoformat(timespec='minutes')}"
    story: list[Any] = [
        Spacer(1, 30 * mm),
        Paragraph(data.title, _STYLES["Title"]),
        Paragraph(f"Period {data.period.label} ({data.period_text}, {state})", _STYLES["Heading3"]),
        Paragraph(f"Scope: {data.scope_text}", _STYLES["Normal"]),
        Paragraph(f"Generated {data.generated_at.isoformat(timespec='seconds')} by fleetledger", _STYLES["Normal"]),
        Spacer(1, 10 * mm),
    ]
    requests = data.measure("requests")
    per_request = (data.total / requests).quantize(Decimal("0.000001")) if requests else None
    headline = [
        ["Figure", "Value"],
        ["Total spend (USD)", money(data.display_total)],
        ["Exact total (USD)", f"${data.total:f}"],
        ["Requests", f"{requests:,}"],
        ["Input tokens", f"{data.measure('input_tokens'):,}"],
        ["Output tokens", f"{data.measure('output_tokens'):,}"],
        ["Cost per request", f"${per_request:f}" if per_request is not None else "n/a"],
        ["Unpriced requests", f"{data.measure('unpriced'):,}"],
    ]
    story.append(_table(headline, [70 * mm, 60 * mm], total=False))
    story.append(Spacer(1, 8 * mm))
    top = data.breakdowns["by_department"].lines[:5]
    if top:
        story.append(Paragraph("Largest departments", _STYLES["Heading4"]))
        rows = [["Department", "Spend", "Share"]] + [
            [_label(line.keys[0]), money(line.display), f"{line.share_pct}%"] for line in top
        ]
        story.append(_table(rows, [70 * mm, 40 * mm, 25 * mm], total=False))
    story.append(PageBreak())
    return story


def render_pdf(data: ReportData) -> bytes:
    buffer = io.BytesIO()
    document = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        title=f"{data.title} {data.period.label}",
        author="fleetledger",
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=16 * mm,
    )
    story = _title_page(data)
    departments = data.breakdowns["by_department"].lines
    if departments:
        shown = departments[:20]
        title = "Spend by department" + (
            f" (largest {len(shown)} of {len(departments)})" if len(departments) > 20 else ""
        )
        story.append(_bar_chart(title, [_label(line.keys[0]) for line in shown], [line.display for line in shown]))
        story.append(Spacer(1, 6 * mm))
    daily = data.breakdowns["daily"].lines
    if daily:
        story.append(
            _line_chart("Daily spend (USD)", [_label(line.keys[0]) for line in daily], [line.display for line in daily])
        )
        story.append(Spacer(1, 6 * mm))
    story.append(Paragraph("Spend by department", _STYLES["Heading3"]))
    story += _breakdown_table(data.breakdowns["by_department"])
    story.append(Paragraph("Spend by model", _STYLES["Heading3"]))
    story += _breakdown_table(data.breakdowns["by_model"])
    story.append(Paragraph("Spend by token type", _STYLES["Heading3"]))
    rows: list[list[Any]] = [["Token type", "Spend", "Tokens"]]
    rows += [[t["token_type"], money(t["display"]), f"{t['tokens']:,}"] for t in data.token_types]
    rows.append(["Total", money(sum((t["display"] for t in data.token_types), Decimal(0))), ""])
    story.append(_table(rows, [50 * mm, 40 * mm, 40 * mm]))
    if data.chargeback:
        story.append(Paragraph("Chargeback by cost center", _STYLES["Heading3"]))
        rows = [["Cost center", "Direct", "Shared allocated", "Charge", "Share"]]
        rows += [
            [
                _label(r["cost_center"]),
                money(r["direct"].quantize(Decimal("0.01"))),
                money(r["shared_allocated"].quantize(Decimal("0.01"))),
                money(r["charge_display"]),
                f"{r['allocation_share_pct']}%",
            ]
            for r in data.chargeback
        ]
        rows.append(["Total", "", "", money(sum((r["charge_display"] for r in data.chargeback), Decimal(0))), ""])
        story.append(_table(rows))
        story.append(
            Paragraph(
                "Charge = direct spend + a share of the shared infrastructure and storage line items, "
                "spread in proportion to direct spend. Direct and shared columns are rounded each on its own.",
                _STYLES["Italic"],
            )
        )
    if data.budgets:
        story.append(Paragraph("Budgets", _STYLES["Heading3"]))
        rows = [["Budget", "Scope", "Limit", "Spent in period", "Status now"]]
        rows += [
            [
                b["name"],
                b["scope"][:40],
                money(b["limit"]),
                money(b["spent_in_report"].quantize(Decimal("0.01")) if b["spent_in_report"] is not None else None),
                f"{b['status'] or ''} ({b['percent_used']}%)" if b["percent_used"] is not None else "",
            ]
            for b in data.budgets
        ]
        story.append(_table(rows, total=False))
    if data.kind in ("detailed", "chargeback"):
        story.append(PageBreak())
        heading = "Detailed lines" if data.kind == "detailed" else "Spend by cost center, department and project"
        story.append(Paragraph(heading, _STYLES["Heading3"]))
        story += _breakdown_table(data.detail, limit=MAX_PDF_LINES)
    document.build(story)
    return buffer.getvalue()
