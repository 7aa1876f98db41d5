"""Notification channels: a generic signed webhook, Slack, email (SMTP) and PagerDuty Events API v2.

Why one class per kind: each kind has its own configuration to check when a channel is added (so a
typo fails at ``alerts channel-add``, not at 3 a.m. when a budget is exceeded) and its own wire
format. Every ``send`` gets the alert payload, the outbox row's idempotency key and the injected
``httpx.Client`` (tests pass a client aimed at a local server; nothing here opens its own), and
returns a :class:`DeliveryResult` instead of raising, so the outbox can decide between "done",
"retry later" and "give up":

* a 2xx answer is delivered;
* 408, 429, 5xx, timeouts and connection errors are retried with backoff;
* any other answer (a 4xx: bad URL, revoked key, malformed payload) is permanent: retrying would
  only repeat it.

Receivers of the generic webhook check :func:`verify_signature`: the body is signed with
HMAC-SHA256 over ``f"{timestamp}.{body}"``, so a replayed or altered request is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from fleetledger.core.errors import InvalidInput

__all__ = [
    "Channel",
    "WebhookChannel",
    "SlackChannel",
    "EmailChannel",
    "PagerDutyChannel",
    "DeliveryResult",
    "CHANNEL_KINDS",
    "channel_for",
    "validate_channel_config",
    "sign",
    "verify_signature",
    "redact_config",
    "PAGERDUTY_EVENTS_URL",
]

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SIGNATURE_HEADER = "X-FleetLedger-Signature"
TIMESTAMP_HEADER = "X-FleetLedger-Timestamp"
_TIMEOUT = httpx.Timeout(10.0)
_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SEVERITY_LABEL = {"info": "INFO", "warning": "WARNING", "critical": "CRITICAL", "exceeded": "EXCEEDED"}


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one attempt achieved. ``retryable`` only matters when ``ok`` is false."""

    ok: bool
    retryable: bool = False
    detail: str = ""
    status_code: int | None = None
    #: Seconds the receiver asked us to wait (``Retry-After`` on 429/503), if any.
    retry_after_s: float | None = None

    @classmethod
    def from_response(cls, response: httpx.Response) -> DeliveryResult:
        code = response.status_code
        if 200 <= code < 300:
            return cls(ok=True, detail=f"HTTP {code}", status_code=code)
        text = response.text[:200].strip()
        detail = f"HTTP {code}" + (f": {text}" if text else "")
        retryable = code in (408, 429) or code >= 500
        return cls(
            ok=False,
            retryable=retryable,
            detail=detail,
            status_code=code,
            retry_after_s=_retry_after(response) if retryable else None,
        )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # the HTTP-date form is rare for webhooks; our own backoff applies


# -- configuration checks ------------------------------------------------------------------------


def _check_keys(config: Mapping[str, Any], allowed: set[str], kind: str) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise InvalidInput(f"{unknown[0]}: not a {kind} channel setting; use {', '.join(sorted(allowed))}")


def _url(config: Mapping[str, Any], field: str, *, required: bool = True, default: str | None = None) -> str:
    value = config.get(field, default)
    if value in (None, ""):
        if required:
            raise InvalidInput(f"{field}: required, e.g. https://hooks.example.com/fleetledger")
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: must be a URL string")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(f"{field}: {value!r} is not an http(s) URL")
    if not parts.hostname:
        raise InvalidInput(f"{field}: {value!r} has no host")
    return value.strip()


def _text(config: Mapping[str, Any], field: str, *, required: bool) -> str | None:
    value = config.get(field)
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{field}: required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field}: must be a non-empty string")
    return value.strip()


def _email_address(value: Any, field: str) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value.strip()):
        raise InvalidInput(f"{field}: {value!r} is not an email address")
    return value.strip()


class Channel:
    """A way to reach people. Subclasses set ``kind`` and implement ``validate`` and ``send``."""

    kind: ClassVar[str] = ""
    #: Config keys shown as "***" in listings.
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)

    @classmethod
    def validate(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The normalised config, or :class:`InvalidInput` naming the bad field."""
        raise NotImplementedError

    def send(
        self, payload: Mapping[str, Any], idempotency_key: str, *, http: httpx.Client, now: datetime
    ) -> DeliveryResult:
        raise NotImplementedError

    def _post(self, http: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> DeliveryResult:
        try:
            response = http.post(url, content=body, headers=headers, timeout=_TIMEOUT)
        except httpx.TransportError as exc:  # connection refused, DNS, timeouts: the receiver may come back
            return DeliveryResult(ok=False, retryable=True, detail=f"{type(exc).__name__}: {exc}")
        return DeliveryResult.from_response(response)


def _summary(payload: Mapping[str, Any]) -> str:
    label = _SEVERITY_LABEL.get(str(payload.get("severity")), str(payload.get("severity", "")).upper())
    return f"[{label}] {payload.get('title', '')}"


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True, default=str).encode()


# -- generic webhook ---------------------------------------------------------------------------


def sign(secret: str, timestamp: str | int, body: bytes | str) -> str:
    """``sha256=<hex>``: HMAC-SHA256 keyed by ``secret`` over ``f"{timestamp}.{body}"``."""
    raw = body if isinstance(body, bytes) else body.encode()
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes | str,
    signature: str,
    *,
    now: datetime,
    tolerance_s: int = 300,
) -> bool:
    """For receivers: is this request signed with ``secret`` and recent (anti-replay)?

    Compares in constant time. ``timestamp`` and ``signature`` are the ``X-FleetLedger-Timestamp``
    and ``X-FleetLedger-Signature`` headers; ``body`` is the raw request body, unparsed.
    """
    try:
        sent = int(str(timestamp).strip())
    except ValueError:
        return False
    if abs(int(now.timestamp()) - sent) > tolerance_s:
        return False
    expected = sign(secret, sent, body)
    return hmac.compare_digest(expected.encode(), str(signature).strip().encode())


class WebhookChannel(Channel):
    """POST the alert as JSON to any URL, signed when a secret is configured."""

    kind = "webhook"
    secret_fields = ("secret",)

    @classmethod
    def validate(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        _check_keys(config, {"url", "secret"}, cls.kind)
        out: dict[str, Any] = {"url": _url(config, "url")}
        secret = _text(config, "secret", required=False)
        if secret is not None:
            out["secret"] = secret
        return out

    def send(
        self, payload: Mapping[str, Any], idempotency_key: str, *, http: httpx.Client, now: datetime
    ) -> DeliveryResult:
        body = _json_bytes({"event": "alert.fired", "idempotency_key": idempotency_key, **payload})
        timestamp = str(int(now.timestamp()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "fleetledger-alerts",
            "Idempotency-Key": idempotency_key,
            TIMESTAMP_HEADER: timestamp,
        }
        if self.config.get("secret"):
            headers[SIGNATURE_HEADER] = sign(self.config["secret"], timestamp, body)
        return self._post(http, self.config["url"], body, headers)


# -- Slack -------------------------------------------------------------------------------------


class SlackChannel(Channel):
    """A Slack incoming webhook: ``text`` for notifications, ``blocks`` for the message itself."""

    kind = "slack"
    secret_fields = ("url",)  # the incoming-webhook URL is itself the credential

    @classmethod
    def validate(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        _check_keys(config, {"url"}, cls.kind)
        return {"url": _url(config, "url")}

    def send(
        self, payload: Mapping[str, Any], idempotency_key: str, *, http: httpx.Client, now: datetime
    ) -> DeliveryResult:
        summary = _summary(payload)
        context = f"fleetledger · {payload.get('rule') or 'alert'} · {payload.get('fired_at', '')}"
        document = {
            "text": f"{summary}: {payload.get('message', '')}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": summary[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": str(payload.get("message", ""))[:3000]}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
            ],
        }
        headers = {"Content-Type": "application/json", "User-Agent": "fleetledger-alerts"}
        return self._post(http, self.config["url"], _json_bytes(document), headers)


# -- email -------------------------------------------------------------------------------------


class EmailChannel(Channel):
    """Plain-text email through an SMTP server; the password comes from an environment variable."""

    kind = "email"

    @classmethod
    def validate(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        if "password" in config:
            raise InvalidInput("password: not stored; put it in an environment variable and set password_env")
        allowed = {"smtp_host", "smtp_port", "from", "to", "starttls", "username", "password_env"}
        _check_keys(config, allowed, cls.kind)
        host = _text(config, "smtp_host", required=True)
        port = config.get("smtp_port", 25)
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise InvalidInput(f"smtp_port: {port!r} is not a port number") from None
        if not 1 <= port <= 65535:
            raise InvalidInput(f"smtp_port: {port} is outside 1-65535")
        sender = _email_address(config.get("from"), "from")
        recipients = config.get("to")
        if isinstance(recipients, str):
            recipients = [r for r in (part.strip() for part in recipients.split(",")) if r]
        if not recipients or not isinstance(recipients, list | tuple):
            raise InvalidInput("to: at least one recipient address is required")
        out: dict[str, Any] = {
            "smtp_host": host,
            "smtp_port": port,
            "from": sender,
            "to": [_email_address(r, "to") for r in recipients],
            "starttls": bool(config.get("starttls", False)),
        }
        username = _text(config, "username", required=False)
        password_env = _text(config, "password_env", required=False)
        if password_env is not None and not _ENV_NAME.match(password_env):
            raise InvalidInput(f"password_env: {password_env!r} is not an environment variable name")
        if (username is None) != (password_env is None):
            raise InvalidInput("password_env: username and password_env go together (SMTP login needs both)")
        if username is not None:
            out["username"] = username
            out["password_env"] = password_env
        return out

    def message(self, payload: Mapping[str, Any], idempotency_key: str, now: datetime) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = f"[FleetLedger] {_summary(payload)}"
        message["From"] = self.config["from"]
        message["To"] = ", ".join(self.config["to"])
        message["Date"] = format_datetime(now)
        # The same key gives the same Message-ID, so a resent email threads and dedupes as one.
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
        message["Message-ID"] = f"<{digest}@fleetledger.alerts>"
        lines = [str(payload.get("message", "")), ""]
        for label, key in (("Severity", "severity"), ("Rule", "rule"), ("Fired at", "fired_at")):
            if payload.get(key):
                lines.append(f"{label}: {payload[key]}")
        if payload.get("data"):
            lines += ["", "Details:", json.dumps(payload["data"], indent=2, sort_keys=True, default=str)]
        message.set_content("\n".join(lines) + "\n")
        return message

    def send(
        self, payload: Mapping[str, Any], idempotency_key: str, *, http: httpx.Client, now: datetime
    ) -> DeliveryResult:
        password = None
        if self.config.get("username"):
            password = os.environ.get(self.config["password_env"])
            if password is None:
                detail = f"environment variable {self.config['password_env']} (SMTP password) is not set"
                return DeliveryResult(ok=False, retryable=False, detail=detail)
        message = self.message(payload, idempotency_key, now)
        try:
            with smtplib.SMTP(self.config["smtp_host"], self.config["smtp_port"], timeout=10) as smtp:
                if self.config.get("starttls"):
                    smtp.starttls(context=ssl.create_default_context())
                if password is not None:
                    smtp.login(self.config["username"], password)
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            return DeliveryResult(ok=False, retryable=False, detail=f"all recipients refused: {exc.recipients}")
        except smtplib.SMTPResponseException as exc:
            # 4yz is a transient refusal (greylisting, full mailbox); 5yz is final.
            detail = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"
            return DeliveryResult(ok=False, retryable=400 <= exc.smtp_code < 500, detail=detail)
        except (smtplib.SMTPException, OSError) as exc:
            return DeliveryResult(ok=False, retryable=True, detail=f"{type(exc).__name__}: {exc}")
        detail = "accepted" + (f"; refused: {sorted(refused)}" if refused else "")
        return DeliveryResult(ok=True, detail=detail)


# -- PagerDuty ---------------------------------------------------------------------------------

_PAGERDUTY_SEVERITY = {"exceeded": "critical", "critical": "error", "warning": "warning", "info": "info"}


class PagerDutyChannel(Channel):
    """PagerDuty Events API v2 ``trigger`` events; the idempotency key is the incident dedup key."""

    kind = "pagerduty"
    secret_fields = ("routing_key",)

    @classmethod
    def validate(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        _check_keys(config, {"routing_key", "events_url"}, cls.kind)
        key = config.get("routing_key")
        if not isinstance(key, str) or not key.strip():
            raise InvalidInput("routing_key: required (the integration key of a PagerDuty Events API v2 service)")
        return {
            "routing_key": key.strip(),
            "events_url": _url(config, "events_url", default=PAGERDUTY_EVENTS_URL),
        }

    def document(self, payload: Mapping[str, Any], idempotency_key: str) -> dict[str, Any]:
        details = {k: payload[k] for k in ("message", "rule", "dedup_key", "alert_id") if payload.get(k) is not None}
        if payload.get("data"):
            details["data"] = payload["data"]
        body: dict[str, Any] = {
            "summary": _summary(payload)[:1024],
            "severity": _PAGERDUTY_SEVERITY.get(str(payload.get("severity")), "warning"),
            "source": "fleetledger",
            "custom_details": details,
        }
        if payload.get("fired_at"):
            body["timestamp"] = payload["fired_at"]
        return {
            "routing_key": self.config["routing_key"],
            "event_action": "trigger",
            "dedup_key": idempotency_key[:255],
            "payload": body,
        }

    def send(
        self, payload: Mapping[str, Any], idempotency_key: str, *, http: httpx.Client, now: datetime
    ) -> DeliveryResult:
        headers = {"Content-Type": "application/json", "User-Agent": "fleetledger-alerts"}
        body = _json_bytes(self.document(payload, idempotency_key))
        return self._post(http, self.config["events_url"], body, headers)


CHANNEL_KINDS: dict[str, type[Channel]] = {
    cls.kind: cls for cls in (WebhookChannel, SlackChannel, EmailChannel, PagerDutyChannel)
}


def _channel_class(kind: str) -> type[Channel]:
    try:
        return CHANNEL_KINDS[kind]
    except KeyError:
        raise InvalidInput(f"kind: {kind!r} is not a channel kind; use one of {', '.join(CHANNEL_KINDS)}") from None


def validate_channel_config(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        raise InvalidInput("config: must be an object of channel settings")
    return _channel_class(kind).validate(config)


def channel_for(kind: str, config: Mapping[str, Any]) -> Channel:
    return _channel_class(kind)(config)


def redact_config(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The config for listings: secrets replaced by ``"***"`` plus their last four characters."""
    secrets = _channel_class(kind).secret_fields
    return {k: (f"***{str(v)[-4:]}" if k in secrets and v else v) for k, v in config.items()}
