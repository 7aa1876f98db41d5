"""``fleetledger budget set|list|status|adjust|request-overage|approve|decline|history|approvals``."""

from __future__ import annotations

import json
import sys

import typer

from fleetledger.cli._common import OutputFormat, console, emit, handle_errors, open_ledger
from fleetledger.core.time import parse_moment

budget_app = typer.Typer(help="Budgets: limits checked before spend, with approvals and history.", no_args_is_help=True)

_STATUS_COLUMNS = (
    "name",
    "scope",
    "period",
    "limit_usd",
    "spent_usd",
    "reserved_usd",
    "remaining_usd",
    "percent_used",
    "status",
    "burn_rate_daily_usd",
    "days_until_depletion",
)
_COLORS = {"green": "green", "yellow": "yellow", "red": "red"}


def _print(value: object, output: OutputFormat, message: str) -> None:
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    else:
        console.print(message)


@budget_app.command("set")
def set_(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name"),
    amount: str = typer.Option(..., "--amount", help="Limit per period, e.g. 500 or 1250.50."),
    scope: list[str] = typer.Option([], "--scope", help="department=research (repeatable; none = whole org)."),
    period: str = typer.Option(
        "monthly", "--period", help="daily, weekly, monthly, quarterly, annual, custom, rolling."
    ),
    currency: str = typer.Option("USD", "--currency"),
    timezone: str = typer.Option("UTC", "--timezone", help="Calendar periods reset at local midnight here."),
    warning: str = typer.Option("80", "--warning", help="Warning threshold, percent."),
    critical: str = typer.Option("95", "--critical", help="Critical threshold, percent."),
    action: str = typer.Option("notify", "--action", help="At 100%: block, downgrade, throttle or notify."),
    downgrade_model: str = typer.Option(None, "--downgrade-model"),
    throttle_rpm: int = typer.Option(None, "--throttle-rpm"),
    fail_mode: str = typer.Option(None, "--fail-mode", help="closed or open [default: closed for block]."),
    parent: str = typer.Option(None, "--parent", help="Parent budget name or id."),
    window_days: int = typer.Option(None, "--window-days", help="For --period rolling."),
    starts: str = typer.Option(None, "--starts", help="For --period custom."),
    ends: str = typer.Option(None, "--ends", help="For --period custom."),
    force: bool = typer.Option(False, "--force", help="Allocate beyond the parent's amount (audited)."),
    actor: str = typer.Option(None, "--actor", help="Who is making the change [default: $USER]."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Create a budget, e.g. --name research-monthly --scope department=research --amount 500 --action block."""
    with open_ledger(ctx) as ledger, handle_errors():
        now = ledger.clock()
        budget = ledger.budgets.create(
            name=name,
            amount=amount,
            scope=scope,
            period=period,
            currency=currency,
            timezone=timezone,
            warning_pct=warning,
            critical_pct=critical,
            action=action,
            downgrade_model=downgrade_model,
            throttle_rpm=throttle_rpm,
            fail_mode=fail_mode,
            parent=parent,
            window_days=window_days,
            starts=parse_moment(starts, now=now, field="--starts") if starts else None,
            ends=parse_moment(ends, now=now, field="--ends") if ends else None,
            force=force,
            actor=actor or _user(),
        )
    _print(
        budget.summary(),
        output,
        f"Budget [bold]{budget.name}[/] (#{budget.id}) set: {budget.amount} "
        f"{budget.currency} {budget.period}, action {budget.action} at 100%.",
    )


@budget_app.command("list")
def list_(ctx: typer.Context, output: OutputFormat = typer.Option(OutputFormat.table, "--format")) -> None:
    """Every budget and its settings."""
    with open_ledger(ctx) as ledger, handle_errors():
        rows = [b.summary() for b in ledger.budgets.list()]
    emit(
        rows,
        output,
        columns=(
            "budget_id",
            "name",
            "scope",
            "period",
            "amount",
            "currency",
            "action",
            "warning_pct",
            "critical_pct",
            "parent_id",
            "active",
        ),
    )


@budget_app.command("status")
def status(
    ctx: typer.Context,
    names: list[str] = typer.Argument(None, help="Budget names or ids [default: all active]."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Spent, reserved, remaining, percent used, burn rate and days until depletion."""
    with open_ledger(ctx) as ledger, handle_errors():
        rows = ledger.budgets.status(names or None)
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    emit(
        rows,
        output,
        columns=_STATUS_COLUMNS,
        title="Budget status",
        style=lambda col, value: f"[{_COLORS[value]}]{value}[/]" if col == "status" else _cell(value),
    )


def _cell(value: object) -> str:
    if value is None:
        return ""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _user() -> str | None:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return None


@budget_app.command("adjust")
def adjust(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Budget name or id."),
    amount: str = typer.Option(..., "--amount", help="The new amount."),
    justification: str = typer.Option(..., "--justification", "--why", help="Why (required, kept in history)."),
    force: bool = typer.Option(False, "--force", help="Allocate beyond the parent's amount (audited)."),
    actor: str = typer.Option(None, "--actor"),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Change a budget's amount mid-period (above the approval limit this files a request)."""
    with open_ledger(ctx) as ledger, handle_errors():
        result = ledger.budgets.adjust(name, amount, justification=justification, actor=actor or _user(), force=force)
    if result["status"] == "pending_approval":
        message = f"Above the approval limit: filed approval request #{result['approval_id']} for {name}."
    else:
        message = f"Budget {name}: {result['old_amount']} -> {result['new_amount']}."
    _print(result, output, message)


@budget_app.command("request-overage")
def request_overage(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Budget name or id."),
    amount: str = typer.Option(..., "--amount", help="How much above the limit."),
    justification: str = typer.Option(..., "--justification", "--why"),
    deadline: str = typer.Option(None, "--deadline", help="Until when [default: end of the period]."),
    actor: str = typer.Option(None, "--actor"),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Ask for an overage; a finops or admin approves or declines it."""
    with open_ledger(ctx) as ledger, handle_errors():
        until = parse_moment(deadline, now=ledger.clock(), field="--deadline") if deadline else None
        approval_id = ledger.budgets.request_overage(
            name, amount, justification=justification, actor=actor or _user(), deadline=until
        )
    _print({"approval_id": approval_id, "status": "pending"}, output, f"Overage request #{approval_id} filed.")


def _decide(
    ctx: typer.Context,
    approval_id: int,
    approve: bool,
    note: str | None,
    amount: str | None,
    deadline: str | None,
    actor: str | None,
    output: OutputFormat,
) -> None:
    with open_ledger(ctx) as ledger, handle_errors():
        until = parse_moment(deadline, now=ledger.clock(), field="--deadline") if deadline else None
        result = ledger.budgets.decide(
            approval_id, approve=approve, actor=actor or _user(), note=note, amount=amount, deadline=until
        )
    _print(result, output, f"Request #{approval_id} {result['status']} ({result['kind']} on {result['budget']}).")


@budget_app.command("approve")
def approve(
    ctx: typer.Context,
    approval_id: int = typer.Argument(..., help="The request id."),
    amount: str = typer.Option(None, "--amount", help="Approve a different amount."),
    deadline: str = typer.Option(None, "--deadline", help="Set or change the overage deadline."),
    note: str = typer.Option(None, "--note"),
    actor: str = typer.Option(None, "--actor"),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Approve a budget increase or overage request."""
    _decide(ctx, approval_id, True, note, amount, deadline, actor, output)


@budget_app.command("decline")
def decline(
    ctx: typer.Context,
    approval_id: int = typer.Argument(..., help="The request id."),
    note: str = typer.Option(None, "--note"),
    actor: str = typer.Option(None, "--actor"),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Decline a budget increase or overage request."""
    _decide(ctx, approval_id, False, note, None, None, actor, output)


@budget_app.command("approvals")
def approvals_(
    ctx: typer.Context,
    status_filter: str = typer.Option(None, "--status", help="pending, approved or declined."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Increase and overage requests."""
    with open_ledger(ctx) as ledger, handle_errors():
        rows = ledger.budgets.approvals(status_filter)
    emit(
        rows,
        output,
        columns=(
            "approval_id",
            "budget",
            "kind",
            "requested_amount",
            "status",
            "approved_amount",
            "deadline",
            "requested_by",
            "decided_by",
            "justification",
        ),
    )


@budget_app.command("history")
def history(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Budget name or id."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Who changed the budget, when, from what to what, and why."""
    with open_ledger(ctx) as ledger, handle_errors():
        rows = ledger.budgets.history(name)
    emit(rows, output, columns=("at", "kind", "old_amount", "new_amount", "actor", "justification", "approval_id"))


def register(app: typer.Typer) -> None:
    app.add_typer(budget_app, name="budget")
