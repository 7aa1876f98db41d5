"""Reports: one exact dataset per report, rendered as CSV, Excel, PDF or a FOCUS 1.2 export, and
recurring schedules that write them to a folder and send them through the alert channels.

    from fleetledger.reports import export
    content, filename, media_type = export(ledger, "2026-10", fmt="xlsx", kind="summary")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fleetledger.core.errors import InvalidInput
from fleetledger.reports.data import FORMATS, KINDS, ReportData, build_report
from fleetledger.reports.periods import Period, parse_period

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["FORMATS", "KINDS", "MEDIA_TYPES", "Export", "ReportData", "build_report", "export", "render"]

MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "focus": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


@dataclass(frozen=True)
class Export:
    content: bytes
    filename: str
    media_type: str
    total_usd: str  # the exact total of the report's scope and period
    data: ReportData | None = None


def render(data: ReportData, fmt: str) -> bytes:
    """Render a built dataset as ``csv``, ``xlsx`` or ``pdf`` (FOCUS needs its own rows: :func:`export`)."""
    if fmt == "csv":
        from fleetledger.reports.csv import render_csv

        return render_csv(data)
    if fmt == "xlsx":
        from fleetledger.reports.excel import render_xlsx

        return render_xlsx(data)
    if fmt == "pdf":
        from fleetledger.reports.pdf import render_pdf

        return render_pdf(data)
    raise InvalidInput(f"format: {fmt!r} must be one of {', '.join(FORMATS)}")


def export(
    ledger: Ledger,
    period: str | Period,
    *,
    fmt: str = "xlsx",
    kind: str = "summary",
    departments: Sequence[str | None] | None = None,
    cost_centers: Sequence[str | None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Export:
    """Build and render one report. ``progress`` is told each step (for a progress display)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"format: {fmt!r} must be one of {', '.join(FORMATS)}")
    if kind not in KINDS:
        raise InvalidInput(f"kind: {kind!r} must be one of {', '.join(KINDS)}")
    period = period if isinstance(period, Period) else parse_period(period)
    step = progress or (lambda _: None)
    step("reading the ledger")
    data = build_report(ledger, period, kind=kind, departments=departments, cost_centers=cost_centers)
    total = f"{data.total:f}"
    if fmt == "focus":
        from fleetledger.reports.focus import render_focus

        step("writing FOCUS rows")
        content = render_focus(ledger, period, departments=data.departments, cost_centers=data.cost_centers)
    else:
        step(f"rendering {fmt}")
        content = render(data, fmt)
    return Export(content, data.file_name(fmt), MEDIA_TYPES[fmt], total, data)
