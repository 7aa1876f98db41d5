"""Each channel against a real local receiver: the wire format, the signature, the email."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from fleetledger.alerts.channels import (
    EmailChannel,
    PagerDutyChannel,
    sign,
    validate_channel_config,
    verify_signature,
)
from fleetledger.alerts.outbox import deliver_due
from fleetledger.core.errors import InvalidInput


def fire(engine, channel: str, severity: str = "warning", key: str = "k1"):
    alert = engine.fire(
        rule=None,
        severity=severity,
        dedup_key=key,
        title="Research spend $512.00 today",
        message="Spend is above the $500 daily threshold.",
        data={"spent_usd": "512.000000000"},
        channels=[channel],
    )
    assert alert is not None
    return alert


def test_webhook_is_signed_and_verifiable(engine, store, clock, http, receiver):
    engine.add_channel("hook", "webhook", {"url": f"{receiver.url}/alerts", "secret": "s3cret"})
    alert = fire(engine, "hook", severity="critical")
    report = deliver_due(store, now=clock(), http=http)
    assert (report.delivered, report.retrying, report.failed) == (1, 0, 0)

    [request] = receiver.requests
    assert request.path == "/alerts"
    assert request.headers["Content-Type"] == "application/json"
    timestamp = request.headers["X-FleetLedger-Timestamp"]
    signature = request.headers["X-FleetLedger-Signature"]
    assert timestamp == str(int(clock().timestamp()))
    assert signature.startswith("sha256=")
    assert verify_signature("s3cret", timestamp, request.body, signature, now=clock())
    # The body is exactly what was signed: any change, another secret or a stale replay fails.
    assert not verify_signature("s3cret", timestamp, request.body + b" ", signature, now=clock())
    assert not verify_signature("other", timestamp, request.body, signature, now=clock())
    assert not verify_signature("s3cret", timestamp, request.body, signature, now=clock() + timedelta(minutes=6))
    assert not verify_signature("s3cret", "not-a-number", request.body, signature, now=clock())

    body = json.loads(request.body)
    assert body["event"] == "alert.fired"
    assert body["idempotency_key"] == request.headers["Idempotency-Key"]
    assert body["alert_id"] == alert.id
    assert body["severity"] == "critical"
    assert body["title"] == "Research spend $512.00 today"
    assert body["data"] == {"spent_usd": "512.000000000"}
    assert body["fired_at"] == clock().isoformat()


def test_sign_is_hmac_sha256_over_timestamp_dot_body():
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign("k", 1700000000, b"{}") == f"sha256={expected}"


def test_slack_message_shape(engine, store, clock, http, receiver):
    engine.add_channel("slack", "slack", {"url": f"{receiver.url}/services/T000/B000/XXX"})
    fire(engine, "slack", severity="exceeded")
    assert deliver_due(store, now=clock(), http=http).delivered == 1
    [request] = receiver.requests
    assert request.path == "/services/T000/B000/XXX"
    body = json.loads(request.body)
    assert body["text"] == "[EXCEEDED] Research spend $512.00 today: Spend is above the $500 daily threshold."
    assert [block["type"] for block in body["blocks"]] == ["header", "section", "context"]
    assert body["blocks"][0]["text"] == {"type": "plain_text", "text": "[EXCEEDED] Research spend $512.00 today"}
    assert body["blocks"][1]["text"]["type"] == "mrkdwn"


@pytest.mark.parametrize(
    ("ours", "theirs"), [("exceeded", "critical"), ("critical", "error"), ("warning", "warning"), ("info", "info")]
)
def test_pagerduty_severity_mapping(ours, theirs):
    channel = PagerDutyChannel(validate_channel_config("pagerduty", {"routing_key": "k"}))
    assert channel.document({"severity": ours, "title": "t"}, "key-1")["payload"]["severity"] == theirs


def test_pagerduty_events_v2_shape(engine, store, clock, http, receiver):
    ours, theirs = "exceeded", "critical"
    engine.add_channel("pd", "pagerduty", {"routing_key": "R0UTINGKEY", "events_url": f"{receiver.url}/v2/enqueue"})
    alert = fire(engine, "pd", severity=ours)
    assert deliver_due(store, now=clock(), http=http).delivered == 1
    [request] = receiver.requests
    assert request.path == "/v2/enqueue"
    body = json.loads(request.body)
    assert body["routing_key"] == "R0UTINGKEY"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"].startswith(f"tla-{alert.id}-")
    assert body["payload"]["severity"] == theirs
    assert body["payload"]["source"] == "fleetledger"
    assert body["payload"]["summary"] == f"[{ours.upper()}] Research spend $512.00 today"
    assert body["payload"]["custom_details"]["message"] == "Spend is above the $500 daily threshold."
    assert body["payload"]["custom_details"]["data"] == {"spent_usd": "512.000000000"}


def test_pagerduty_default_events_url():
    config = validate_channel_config("pagerduty", {"routing_key": "abc"})
    assert config["events_url"] == "https://events.pagerduty.com/v2/enqueue"


def test_email_through_a_real_smtp_server(engine, store, clock, http, smtp_server):
    mailbox, port = smtp_server
    engine.add_channel(
        "finance-mail",
        "email",
        {
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "from": "alerts@example.com",
            "to": ["cfo@example.com", "ops@example.com"],
        },
    )
    alert = fire(engine, "finance-mail", severity="critical")
    report = deliver_due(store, now=clock(), http=http)
    assert report.delivered == 1, report.to_dict()

    [(sender, recipients, _)] = mailbox.envelopes
    assert sender == "alerts@example.com"
    assert recipients == ["cfo@example.com", "ops@example.com"]
    [message] = mailbox.messages()
    assert message["Subject"] == "[FleetLedger] [CRITICAL] Research spend $512.00 today"
    assert message["To"] == "cfo@example.com, ops@example.com"
    body = message.get_payload(decode=True).decode()
    assert "Spend is above the $500 daily threshold." in body
    assert '"spent_usd": "512.000000000"' in body
    # The Message-ID comes from the idempotency key: a resend is recognisably the same email.
    [delivery] = engine.history()[0].deliveries
    assert delivery.status == "delivered"
    key = f"tla-{alert.id}-"
    assert message["Message-ID"].endswith("@fleetledger.alerts>")
    with store.read() as conn:
        from sqlalchemy import select

        from fleetledger.alerts.tables import alert_outbox

        stored_key = conn.execute(select(alert_outbox.c.idempotency_key)).scalar_one()
    assert stored_key.startswith(key)
    resent = EmailChannel(validate_channel_config("email", {"smtp_host": "h", "from": "a@b.c", "to": "d@e.f"}))
    assert resent.message({"title": "t"}, stored_key, clock())["Message-ID"] == message["Message-ID"]


def test_email_server_down_is_retried_and_missing_password_is_permanent(engine, store, clock, http, monkeypatch):
    from .conftest import free_port

    engine.add_channel(
        "down",
        "email",
        {"smtp_host": "127.0.0.1", "smtp_port": free_port(), "from": "a@example.com", "to": "b@example.com"},
    )
    engine.add_channel(
        "nopass",
        "email",
        {
            "smtp_host": "127.0.0.1",
            "smtp_port": free_port(),
            "from": "a@example.com",
            "to": "b@example.com",
            "username": "alerts",
            "password_env": "FLEETLEDGER_TEST_SMTP_PASSWORD",
        },
    )
    monkeypatch.delenv("FLEETLEDGER_TEST_SMTP_PASSWORD", raising=False)
    fire(engine, "down", key="a")
    fire(engine, "nopass", key="b")
    outcomes = {o.channel: o for o in deliver_due(store, now=clock(), http=http).outcomes}
    assert outcomes["down"].status == "pending"
    assert outcomes["nopass"].status == "failed"
    assert "FLEETLEDGER_TEST_SMTP_PASSWORD" in outcomes["nopass"].detail


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        ("webhook", {"url": "ftp://example.com/hook"}, "url"),
        ("webhook", {"url": "example.com/hook"}, "url"),
        ("webhook", {}, "url"),
        ("webhook", {"url": "https://x.test", "token": "t"}, "token"),
        ("slack", {"url": "file:///etc/passwd"}, "url"),
        ("pagerduty", {}, "routing_key"),
        ("pagerduty", {"routing_key": "k", "events_url": "gopher://x"}, "events_url"),
        ("email", {"smtp_host": "h", "from": "a@b.c", "to": ["not-an-email"]}, "to"),
        ("email", {"smtp_host": "h", "from": "nope", "to": ["a@b.c"]}, "from"),
        ("email", {"smtp_host": "h", "smtp_port": 70000, "from": "a@b.c", "to": ["a@b.c"]}, "smtp_port"),
        ("email", {"from": "a@b.c", "to": ["a@b.c"]}, "smtp_host"),
        ("email", {"smtp_host": "h", "from": "a@b.c", "to": ["a@b.c"], "password": "hunter2"}, "password"),
        ("email", {"smtp_host": "h", "from": "a@b.c", "to": [], "username": "u"}, "to"),
        ("teams", {"url": "https://x.test"}, "kind"),
    ],
)
def test_channel_config_errors_name_the_field(kind, config, field):
    with pytest.raises(InvalidInput) as info:
        validate_channel_config(kind, config)
    assert info.value.message.startswith(f"{field}:"), info.value.message


def test_email_config_is_normalised():
    config = validate_channel_config(
        "email",
        {"smtp_host": " mail ", "from": "a@b.c", "to": "x@y.z, w@y.z", "username": "u", "password_env": "SMTP_PW"},
    )
    assert config == {
        "smtp_host": "mail",
        "smtp_port": 25,
        "from": "a@b.c",
        "to": ["x@y.z", "w@y.z"],
        "starttls": False,
        "username": "u",
        "password_env": "SMTP_PW",
    }
    assert PagerDutyChannel.kind == "pagerduty"
