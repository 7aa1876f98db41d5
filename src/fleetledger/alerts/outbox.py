"""The durable alert outbox: every notification reaches its channel once, even across crashes.

Why an outbox: an alert is recorded in the same transaction as one ``alert_outbox`` row per
channel, so an alert can never be recorded without its deliveries (or the reverse). Delivery then
happens outside any transaction, in three steps:

1. **claim** -- in a short write transaction, due rows (``pending`` with ``next_attempt_us <= now``,
   or ``sending`` whose lease ran out because a sender crashed) are marked ``sending`` with a lease
   and their ``attempts`` incremented. PostgreSQL reads them ``FOR UPDATE SKIP LOCKED`` so several
   workers share the queue without waiting on each other; SQLite's ``BEGIN IMMEDIATE`` serialises
   claimers.
2. **send** -- over the network, holding no lock. A slow receiver blocks nobody.
3. **settle** -- ``delivered``; or ``pending`` again after ``base * 2**(attempts-1)`` seconds
   (capped; a receiver's ``Retry-After`` is honoured); or ``failed`` after a permanent error or
   ``max_attempts``. The update only applies if the row still carries this claim (its
   ``attempts``), so a sender whose lease was taken over cannot overwrite the newer result.

Delivered rows are never selected again. A crash between send and settle means the receiver may
see the request twice, with the same ``Idempotency-Key`` (and PagerDuty ``dedup_key``, email
``Message-ID``), which is how receivers collapse it to one: at-least-once on the wire, exactly once
for people.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import and_, or_, select, update

from fleetledger.alerts.channels import DeliveryResult, channel_for
from fleetledger.alerts.tables import alert_channels, alert_outbox
from fleetledger.core.time import from_us, to_us
from fleetledger.storage.store import Store

__all__ = [
    "Claim",
    "DeliveryOutcome",
    "DeliveryReport",
    "OutboxWorker",
    "claim_due",
    "send_claim",
    "settle",
    "deliver_due",
    "backoff_s",
    "PENDING",
    "SENDING",
    "DELIVERED",
    "FAILED",
]

log = logging.getLogger(__name__)

PENDING, SENDING, DELIVERED, FAILED = "pending", "sending", "delivered", "failed"
#: Longer than any single send can take (HTTP and SMTP time out after 10 s), so a live sender's
#: lease never expires under it.
DEFAULT_LEASE_S = 120


@dataclass(frozen=True, slots=True)
class Claim:
    """One outbox row this worker now owns until ``lease_until_us``."""

    outbox_id: int
    alert_id: int
    channel_id: int
    channel_name: str | None
    channel_kind: str | None
    channel_config: dict[str, Any] | None
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int
    lease_until_us: int


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    outbox_id: int
    alert_id: int
    channel: str | None
    status: str
    attempts: int
    detail: str
    next_attempt: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "outbox_id": self.outbox_id,
            "alert_id": self.alert_id,
            "channel": self.channel,
            "status": self.status,
            "attempts": self.attempts,
            "detail": self.detail,
            "next_attempt": self.next_attempt.isoformat() if self.next_attempt else None,
        }


@dataclass(slots=True)
class DeliveryReport:
    outcomes: list[DeliveryOutcome] = field(default_factory=list)

    def _count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def claimed(self) -> int:
        return len(self.outcomes)

    @property
    def delivered(self) -> int:
        return self._count(DELIVERED)

    @property
    def retrying(self) -> int:
        return self._count(PENDING)

    @property
    def failed(self) -> int:
        return self._count(FAILED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "delivered": self.delivered,
            "retrying": self.retrying,
            "failed": self.failed,
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


def backoff_s(attempts: int, *, base_s: float, max_s: float) -> float:
    """Wait before the next try after ``attempts`` tries: base, 2*base, 4*base... capped at max."""
    return float(min(max_s, base_s * 2 ** max(0, attempts - 1)))


def claim_due(
    store: Store,
    *,
    now: datetime,
    limit: int = 100,
    lease_s: float = DEFAULT_LEASE_S,
    outbox_ids: Sequence[int] | None = None,
) -> list[Claim]:
    """Mark up to ``limit`` due rows ``sending`` with a lease, atomically, and return them."""
    now_us = to_us(now)
    lease_until = now_us + int(lease_s * 1_000_000)
    o = alert_outbox.c
    due = or_(
        and_(o.status == PENDING, o.next_attempt_us <= now_us),
        and_(o.status == SENDING, o.lease_until_us <= now_us),
    )
    query = select(o.id, o.alert_id, o.channel_id, o.idempotency_key, o.payload, o.attempts).where(due)
    if outbox_ids is not None:
        query = query.where(o.id.in_(list(outbox_ids)))
    query = query.order_by(o.next_attempt_us, o.id).limit(limit)
    if store.dialect == "postgresql":
        query = query.with_for_update(skip_locked=True)
    with store.write() as conn:
        rows = conn.execute(query).all()
        if not rows:
            return []
        channel_ids = {row.channel_id for row in rows}
        channels = {
            c.id: c
            for c in conn.execute(
                select(
                    alert_channels.c.id, alert_channels.c.name, alert_channels.c.kind, alert_channels.c.config
                ).where(alert_channels.c.id.in_(channel_ids))
            )
        }
        conn.execute(
            update(alert_outbox)
            .where(o.id.in_([row.id for row in rows]))
            .values(status=SENDING, attempts=o.attempts + 1, lease_until_us=lease_until)
        )
        claims = []
        for row in rows:
            attempts = row.attempts + 1
            channel = channels.get(row.channel_id)
            claims.append(
                Claim(
                    outbox_id=row.id,
                    alert_id=row.alert_id,
                    channel_id=row.channel_id,
                    channel_name=channel.name if channel else None,
                    channel_kind=channel.kind if channel else None,
                    channel_config=dict(channel.config) if channel else None,
                    idempotency_key=row.idempotency_key,
                    payload=dict(row.payload),
                    attempts=attempts,
                    lease_until_us=lease_until,
                )
            )
    return claims


def send_claim(claim: Claim, *, http: httpx.Client, now: datetime) -> DeliveryResult:
    """Send one claimed row. Never raises: a channel's bug becomes a retryable failure."""
    if claim.channel_kind is None or claim.channel_config is None:
        return DeliveryResult(ok=False, retryable=False, detail="channel was deleted")
    try:
        channel = channel_for(claim.channel_kind, claim.channel_config)
        return channel.send(claim.payload, claim.idempotency_key, http=http, now=now)
    except Exception as exc:
        log.exception("alert channel %s failed to send outbox row %s", claim.channel_name, claim.outbox_id)
        return DeliveryResult(ok=False, retryable=True, detail=f"{type(exc).__name__}: {exc}")


def settle(
    store: Store,
    claim: Claim,
    result: DeliveryResult,
    *,
    now: datetime,
    max_attempts: int = 8,
    base_backoff_s: float = 5,
    max_backoff_s: float = 3600,
) -> DeliveryOutcome:
    """Record what happened to a claimed row: delivered, retry later, or failed for good."""
    now_us = to_us(now)
    next_attempt = None
    values: dict[str, Any] = {"lease_until_us": None, "last_error": None if result.ok else result.detail}
    if result.ok:
        status = DELIVERED
        values["delivered_us"] = now_us
    elif result.retryable and claim.attempts < max_attempts:
        status = PENDING
        wait = backoff_s(claim.attempts, base_s=base_backoff_s, max_s=max_backoff_s)
        if result.retry_after_s is not None:
            wait = min(max_backoff_s, max(wait, result.retry_after_s))
        next_attempt_us = now_us + int(wait * 1_000_000)
        values["next_attempt_us"] = next_attempt_us
        next_attempt = from_us(next_attempt_us)
    else:
        status = FAILED
    values["status"] = status
    o = alert_outbox.c
    with store.write() as conn:
        changed = conn.execute(
            update(alert_outbox)
            .where(o.id == claim.outbox_id, o.status == SENDING, o.attempts == claim.attempts)
            .values(**values)
        ).rowcount
    if not changed:
        log.warning("outbox row %s was re-claimed after its lease expired; keeping the newer claim", claim.outbox_id)
    return DeliveryOutcome(
        outbox_id=claim.outbox_id,
        alert_id=claim.alert_id,
        channel=claim.channel_name,
        status=status,
        attempts=claim.attempts,
        detail=result.detail,
        next_attempt=next_attempt,
    )


def deliver_due(
    store: Store,
    *,
    now: datetime,
    http: httpx.Client,
    limit: int = 100,
    max_attempts: int = 8,
    base_backoff_s: float = 5,
    max_backoff_s: float = 3600,
    lease_s: float = DEFAULT_LEASE_S,
    outbox_ids: Sequence[int] | None = None,
) -> DeliveryReport:
    """Claim, send and settle the due outbox rows (``outbox_ids`` narrows it to those rows)."""
    report = DeliveryReport()
    for claim in claim_due(store, now=now, limit=limit, lease_s=lease_s, outbox_ids=outbox_ids):
        result = send_claim(claim, http=http, now=now)
        report.outcomes.append(
            settle(
                store,
                claim,
                result,
                now=now,
                max_attempts=max_attempts,
                base_backoff_s=base_backoff_s,
                max_backoff_s=max_backoff_s,
            )
        )
    return report


class OutboxWorker:
    """A daemon thread that runs :func:`deliver_due` every ``interval_s`` seconds."""

    def __init__(
        self,
        store: Store,
        http: httpx.Client,
        clock: Callable[[], datetime],
        interval_s: float = 5.0,
        **options: Any,
    ) -> None:
        self.store = store
        self.http = http
        self.clock = clock
        self.interval_s = interval_s
        self.options = options
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> DeliveryReport:
        return deliver_due(self.store, now=self.clock(), http=self.http, **self.options)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = self.run_once()
            except Exception:  # the database may be away for a moment; try again next tick
                log.exception("alert outbox delivery failed")
                report = DeliveryReport()
            # A full batch means more are due: go again at once.
            if report.claimed < self.options.get("limit", 100):
                self._stop.wait(self.interval_s)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fleetledger-alert-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
