"""``fleetledger alerts ...`` round trip, on a local Typer app built like the real one."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import typer
from typer.testing import CliRunner

from fleetledger.alerts import verify_signature
from fleetledger.cli._common import State
from fleetledger.cli.alerts import register

runner = CliRunner()


def make_app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def _root(ctx: typer.Context, db: str = typer.Option(None, "--db")) -> None:
        ctx.obj = State(db=db)

    register(app)
    return app


@pytest.fixture
def cli(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("FLEETLEDGER_SPOOL_DIR", str(tmp_path / "spool"))
    app = make_app()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, ["--db", db_url, "alerts", *args])
        assert result.exit_code == code, result.output
        return result.output

    return run


def test_alerts_round_trip(cli, receiver):
    out = cli("channel-add", "hook", "--kind", "webhook", "--url", f"{receiver.url}/in", "--secret", "s3cret")
    assert "Added webhook channel 'hook'" in out
    cli("channel-add", "pd", "--kind", "pagerduty", "--routing-key", "KEY123456", "--events-url", receiver.url)
    channels = json.loads(cli("channels", "--format", "json"))
    assert [(c["name"], c["kind"]) for c in channels] == [("hook", "webhook"), ("pd", "pagerduty")]
    assert channels[0]["config"]["secret"] == "***cret" and channels[1]["config"]["routing_key"] == "***3456"

    rule = json.loads(
        cli(
            "add", "research-daily", "--kind", "absolute_spend", "--scope", "department=research",
            "--amount", "500", "--period", "day", "--channel", "hook", "--channel", "pd", "--cooldown", "12h",
            "--format", "json",
        )
    )  # fmt: skip
    assert rule["scope"] == {"department": ["research"]}
    assert rule["params"] == {"amount_usd": "500", "period": "day", "severity": "warning"}
    assert rule["cooldown_s"] == 43_200 and rule["channels"] == ["hook", "pd"]
    cli("add", "budgets", "--kind", "budget", "--budget", "*", "--levels", "critical,exceeded", "--channel", "hook")
    listed = json.loads(cli("list", "--format", "json"))
    assert [r["name"] for r in listed] == ["budgets", "research-daily"]
    assert "research-daily" in cli("list")

    out = cli("test", "hook")
    assert "Test alert delivered to 'hook'" in out
    [request] = receiver.requests
    assert request.path == "/in"
    assert verify_signature(
        "s3cret",
        request.headers["X-FleetLedger-Timestamp"],
        request.body,
        request.headers["X-FleetLedger-Signature"],
        now=datetime.now(UTC),
    )

    history = json.loads(cli("history", "--since", "7d", "--format", "json"))
    assert len(history) == 1
    assert history[0]["data"] == {"test": True, "channel": "hook"}
    assert history[0]["deliveries"][0]["channel"] == "hook"
    assert history[0]["deliveries"][0]["status"] == "delivered"
    assert "Test alert for channel hook" in cli("history")

    assert "No rule fired." in cli("evaluate")
    assert "0 delivered" in cli("deliver")
    cli("disable", "budgets")
    assert [r["enabled"] for r in json.loads(cli("list", "--format", "json"))] == [False, True]


def test_cli_errors_name_the_field(cli, receiver):
    assert "url:" in cli("channel-add", "x", "--kind", "webhook", "--url", "ftp://nope", code=2)
    assert "percent:" in cli("add", "r", "--kind", "percent_increase", "--percent", "12000", code=2)
    assert "scope:" in cli("add", "r", "--kind", "absolute_spend", "--amount", "5", "--scope", "region=eu", code=2)
    assert "channels:" in cli("add", "r", "--kind", "absolute_spend", "--amount", "5", "--channel", "nope", code=2)
    assert "kind:" in cli("add", "r", "--kind", "absolute_spned", "--amount", "5", code=2)
    assert "--cooldown" in cli("add", "r", "--kind", "budget", "--cooldown", "soon", code=2)
    assert json.loads(cli("list", "--format", "json")) == []
    receiver.responses = [404]
    cli("channel-add", "hook", "--kind", "webhook", "--url", receiver.url)
    assert "not delivered: HTTP 404" in cli("test", "hook", code=1)
