"""``fleetledger alerts ...``: channels, rules, test sends, delivery and history.

Thin commands over :class:`fleetledger.alerts.AlertEngine`; every check lives in the library, so a
bad option here fails with the same message as a bad field in the REST API.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from fleetledger.alerts import AlertEngine
from fleetledger.cli._common import OutputFormat, console, emit, fail, handle_errors, open_ledger
from fleetledger.core.errors import InvalidInput

__all__ = ["register", "alerts_app"]

alerts_app = typer.Typer(
    help="Alerts: channels (webhook, Slack, email, PagerDuty), rules, delivery and history.",
    no_args_is_help=True,
)

_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d|w)?$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def _duration_s(text: str, field: str) -> int:
    match = _DURATION.match(text.strip())
    if not match:
        raise InvalidInput(f"{field}: {text!r} is not a duration; use e.g. 0, 30m, 24h, 7d")
    return int(match.group(1)) * _SECONDS[(match.group(2) or "s").lower()]


def _pairs(items: list[str], field: str) -> dict[str, Any]:
    """``key=value`` options; ``a,b`` lists either value."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidInput(f"{field} {item!r}: use key=value, e.g. department=research")
        values = [v.strip() for v in value.split(",") if v.strip()]
        out[key.strip()] = values if len(values) > 1 else values[0]
    return out


@contextmanager
def _engine(ctx: typer.Context) -> Iterator[AlertEngine]:
    with open_ledger(ctx) as ledger, handle_errors():
        engine = AlertEngine(ledger.store, clock=ledger.clock)
        try:
            yield engine
        finally:
            engine.close()


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


@alerts_app.command("channel-add")
def channel_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A name rules refer to, e.g. finance-slack."),
    kind: str = typer.Option(..., "--kind", help="webhook, slack, email or pagerduty."),
    url: str = typer.Option(None, "--url", help="webhook/slack: the URL to POST to (http or https)."),
    secret: str = typer.Option(None, "--secret", help="webhook: HMAC-SHA256 signing secret."),
    smtp_host: str = typer.Option(None, "--smtp-host", help="email: SMTP server host."),
    smtp_port: int = typer.Option(None, "--smtp-port", help="email: SMTP port [default: 25]."),
    sender: str = typer.Option(None, "--from", help="email: sender address."),
    to: list[str] = typer.Option([], "--to", help="email: recipient address (repeatable)."),
    starttls: bool = typer.Option(False, "--starttls", help="email: upgrade the connection with STARTTLS."),
    username: str = typer.Option(None, "--username", help="email: SMTP login user."),
    password_env: str = typer.Option(
        None, "--password-env", help="email: name of the environment variable holding the SMTP password."
    ),
    routing_key: str = typer.Option(None, "--routing-key", help="pagerduty: Events API v2 integration key."),
    events_url: str = typer.Option(None, "--events-url", help="pagerduty: Events API URL [default: PagerDuty's]."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Add a notification channel."""
    options = {
        "url": url,
        "secret": secret,
        "smtp_host": smtp_host,
        "smtp_port": smtp_port,
        "from": sender,
        "to": to or None,
        "starttls": starttls or None,
        "username": username,
        "password_env": password_env,
        "routing_key": routing_key,
        "events_url": events_url,
    }
    config = {key: value for key, value in options.items() if value is not None}
    with _engine(ctx) as engine:
        channel = engine.add_channel(name, kind, config)
    if output == OutputFormat.json:
        _print_json(channel.to_dict())
    else:
        console.print(f"Added {channel.kind} channel {channel.name!r}. Try it: fleetledger alerts test {channel.name}")


@alerts_app.command("channels")
def channels(ctx: typer.Context, output: OutputFormat = typer.Option(OutputFormat.table, "--format")) -> None:
    """The notification channels (secrets masked)."""
    with _engine(ctx) as engine:
        rows = [c.to_dict() for c in engine.list_channels()]
    if output != OutputFormat.json:
        for row in rows:
            row["config"] = ", ".join(f"{k}={v}" for k, v in row["config"].items())
    emit(rows, output, columns=("id", "name", "kind", "config", "created_at"))


@alerts_app.command("channel-delete")
def channel_delete(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Delete a channel that no rule uses."""
    with _engine(ctx) as engine:
        engine.delete_channel(name)
    console.print(f"Deleted channel {name!r}.")


@alerts_app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A name for the rule."),
    kind: str = typer.Option(
        ...,
        "--kind",
        help="budget, absolute_spend, percent_increase, cost_per_request, forecast_overrun, anomaly or "
        "reconciliation_drift.",
    ),
    scope: list[str] = typer.Option([], "--scope", help="Dimension filter key=value, e.g. department=research."),
    budget: str = typer.Option(None, "--budget", help="budget: the budget's name, or * for all [default: *]."),
    levels: str = typer.Option(None, "--levels", help="budget: warning,critical,exceeded [default: all]."),
    amount: str = typer.Option(None, "--amount", help="absolute_spend / cost_per_request: threshold in USD."),
    percent: str = typer.Option(
        None,
        "--percent",
        help="percent_increase: increase in percent (e.g. 50, or 150 for more than doubled); budget: 0-100.",
    ),
    period: str = typer.Option(None, "--period", help="absolute_spend / percent_increase: day, week or month."),
    window: str = typer.Option(None, "--window", help="cost_per_request: 1h or 24h."),
    severity: str = typer.Option(None, "--severity", help="Severity of spend alerts [default: warning]."),
    param: list[str] = typer.Option(
        [], "--param", help="Other rule parameter key=value (forecast, anomaly, reconciliation_drift)."
    ),
    channel: list[str] = typer.Option([], "--channel", help="Channel to notify (repeatable)."),
    cooldown: str = typer.Option("24h", "--cooldown", help="Do not repeat the same alert within this long."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Add an alert rule."""
    with _engine(ctx) as engine:
        params = _pairs(param, "--param")
        given = {
            "budget": budget,
            "levels": levels,
            "amount_usd": amount,
            "percent": percent,
            "period": period,
            "window": window,
            "severity": severity,
        }
        params.update({key: value for key, value in given.items() if value is not None})
        rule = engine.add_rule(
            name,
            kind,
            scope=_pairs(scope, "--scope"),
            params=params,
            channels=channel,
            cooldown_s=_duration_s(cooldown, "--cooldown"),
        )
    if output == OutputFormat.json:
        _print_json(rule.to_dict())
    else:
        console.print(f"Added {rule.kind} rule {rule.name!r} (#{rule.id}).")


@alerts_app.command("list")
def list_(ctx: typer.Context, output: OutputFormat = typer.Option(OutputFormat.table, "--format")) -> None:
    """The alert rules."""
    with _engine(ctx) as engine:
        rows = [r.to_dict() for r in engine.list_rules()]
    if output != OutputFormat.json:
        for row in rows:
            row["scope"] = ", ".join(f"{k}={'|'.join(v)}" for k, v in row["scope"].items())
            row["params"] = ", ".join(f"{k}={v}" for k, v in row["params"].items())
            row["channels"] = ", ".join(row["channels"])
    emit(rows, output, columns=("id", "name", "kind", "scope", "params", "channels", "cooldown_s", "enabled"))


def _set_enabled(ctx: typer.Context, name: str, enabled: bool) -> None:
    with _engine(ctx) as engine:
        engine.set_enabled(name, enabled)
    console.print(f"Rule {name!r} {'enabled' if enabled else 'disabled'}.")


@alerts_app.command("enable")
def enable(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Enable a rule."""
    _set_enabled(ctx, name, True)


@alerts_app.command("disable")
def disable(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Disable a rule (it stays configured)."""
    _set_enabled(ctx, name, False)


@alerts_app.command("delete")
def delete(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Delete a rule; the alerts it fired stay in the history."""
    with _engine(ctx) as engine:
        engine.delete_rule(name)
    console.print(f"Deleted rule {name!r}.")


@alerts_app.command("test")
def test(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="The channel to send a test alert to."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Send a test alert through a channel now and show what the receiver answered."""
    with _engine(ctx) as engine:
        outcome = engine.test_channel(channel)
    if output == OutputFormat.json:
        _print_json(outcome.to_dict())
    elif outcome.status == "delivered":
        console.print(f"Test alert delivered to {channel!r} ({outcome.detail}).")
    if outcome.status != "delivered":
        fail(f"test alert to {channel!r} was not delivered: {outcome.detail}", code=1)


@alerts_app.command("history")
def history(
    ctx: typer.Context,
    since: str = typer.Option("7d", "--since", help="30d, 24h, MTD, today or 2026-01-01."),
    rule: str = typer.Option(None, "--rule", help="Only alerts of this rule."),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Fired alerts, newest first, with their delivery status per channel."""
    with _engine(ctx) as engine:
        fired = [a.to_dict() for a in engine.history(since=since, rule=rule, limit=limit)]
    if output == OutputFormat.json:
        _print_json(fired)
        return
    rows = [
        {
            "id": a["alert_id"],
            "fired_at": a["fired_at"],
            "severity": a["severity"],
            "rule": a["rule"],
            "title": a["title"],
            "deliveries": ", ".join(f"{d['channel']}: {d['status']}" for d in a["deliveries"]),
        }
        for a in fired
    ]
    emit(rows, output, columns=("id", "fired_at", "severity", "rule", "title", "deliveries"))


@alerts_app.command("deliver")
def deliver(
    ctx: typer.Context,
    watch: bool = typer.Option(False, "--watch", help="Keep delivering every few seconds until Ctrl-C."),
    interval: float = typer.Option(5.0, "--interval", min=0.5, help="Seconds between runs with --watch."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Send the due notifications in the outbox (retries included)."""
    with _engine(ctx) as engine:
        try:
            while True:
                report = engine.deliver()
                if output == OutputFormat.json:
                    _print_json(report.to_dict())
                elif report.claimed or not watch:
                    console.print(
                        f"{report.delivered} delivered, {report.retrying} to retry, {report.failed} failed "
                        f"(of {report.claimed} due)."
                    )
                if not watch:
                    break
                time.sleep(interval)
        except KeyboardInterrupt:  # Ctrl-C ends --watch; a claimed row's lease makes it due again
            pass


@alerts_app.command("evaluate")
def evaluate(ctx: typer.Context, output: OutputFormat = typer.Option(OutputFormat.table, "--format")) -> None:
    """Check the scheduled rules against the ledger now; fired alerts go to the outbox."""
    # The ledger's own engine: it has the forecast, anomaly and reconciliation evaluators plugged in.
    with open_ledger(ctx) as ledger, handle_errors():
        fired = [a.to_dict() for a in ledger.alerts.evaluate()]
    if output == OutputFormat.json:
        _print_json(fired)
        return
    if not fired:
        console.print("No rule fired.")
        return
    emit(fired, output, columns=("alert_id", "severity", "rule", "title"))


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
