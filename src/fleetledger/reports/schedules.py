"""Scheduled reports: weekly, monthly or quarterly, written to a folder and sent through the alert
channels (email with the file attached; webhook and Slack with a summary and the file's path).

What "once" means here. Every schedule has at most one ``report_runs`` row per period (unique key),
so a period's report is sent once however often ``run-due`` runs:

1. **claim** -- in one write transaction the run row is created, or taken over when it is
   ``pending`` (a retry) or ``running`` with an expired lease (its runner crashed); it is marked
   ``running`` with a lease and its ``attempts`` incremented. A run that is ``done`` or ``failed``,
   or ``running`` under a live lease, is left alone: a second ``run-due`` at the same moment finds
   nothing to do.
2. **write** the file (to a temporary name, then renamed: never a half-written report).
3. **send** to each channel not yet delivered, recording each delivery as soon as it succeeds, in a
   write guarded by the claim's ``attempts`` (a runner whose lease was taken over cannot record).
   A runner that crashes half-way leaves the delivered channels recorded; the next claim sends only
   to the others.

A crash between a channel accepting the report and the delivery being recorded can repeat that one
message; it carries the same idempotency key (email ``Message-ID``, webhook ``Idempotency-Key``),
which is how receivers collapse it -- the guarantee of the alert outbox too.

Retries: a failed send that may succeed later (SMTP 4xx, 5xx HTTP answers, timeouts) leaves the run
``pending`` with a backoff (30 s doubling, at most an hour); after ``max_attempts`` it is
``failed``. A permanent refusal (4xx HTTP, SMTP 5xx) marks that channel failed at once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from fleetledger.alerts.channels import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryResult,
    EmailChannel,
    SlackChannel,
    sign,
)
from fleetledger.alerts.tables import alert_channels
from fleetledger.core.errors import Conflict, InvalidInput, NotFound
from fleetledger.core.time import from_us, to_us
from fleetledger.core.urls import database_path
from fleetledger.reports.data import FORMATS, KINDS
from fleetledger.reports.periods import RECURRENCES, Period, last_complete_period
from fleetledger.reports.tables import report_runs, report_schedules
from fleetledger.storage.store import Store

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = [
    "Schedule",
    "add_schedule",
    "list_schedules",
    "get_schedule",
    "delete_schedule",
    "list_runs",
    "claim_run",
    "run_due",
    "default_folder",
    "ReportScheduleWorker",
    "CHANNEL_KINDS",
]

log = logging.getLogger(__name__)

#: Alert channel kinds a report can go to (PagerDuty pages people; a report is not an incident).
CHANNEL_KINDS = ("email", "webhook", "slack")
DEFAULT_LEASE_S = 600.0
MAX_ATTEMPTS = 10
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,199}$")


@dataclass(frozen=True)
class Schedule:
    id: int
    name: str
    recurrence: str
    format: str
    kind: str
    departments: tuple[str, ...]
    cost_centers: tuple[str, ...]
    channels: tuple[str, ...]
    folder: str
    enabled: bool
    created_us: int
    created_by: str | None

    @classmethod
    def from_row(cls, row: Any) -> Schedule:
        return cls(
            id=int(row.id),
            name=row.name,
            recurrence=row.recurrence,
            format=row.format,
            kind=row.kind,
            departments=tuple(row.departments or ()),
            cost_centers=tuple(row.cost_centers or ()),
            channels=tuple(row.channels or ()),
            folder=row.folder,
            enabled=bool(row.enabled),
            created_us=int(row.created_us),
            created_by=row.created_by,
        )

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.name).strip("-") or f"schedule-{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "recurrence": self.recurrence,
            "format": self.format,
            "kind": self.kind,
            "departments": list(self.departments),
            "cost_centers": list(self.cost_centers),
            "channels": list(self.channels),
            "folder": self.folder,
            "enabled": self.enabled,
            "created_at": from_us(self.created_us).isoformat(),
            "created_by": self.created_by,
        }


def default_folder(ledger: Ledger) -> str:
    """``reports/`` beside a SQLite database file, else ``~/.local/state/fleetledger/reports``."""
    path = database_path(ledger.settings.database_url)
    if path is not None:
        return str(Path(path).resolve().parent / "reports")
    return str(Path.home() / ".local" / "state" / "fleetledger" / "reports")


def _names(values: Any, field: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list | tuple):
        raise InvalidInput(f"{field}: give a list of names")
    out = []
    for value in values:
        if not isinstance(value, str) or not value.strip() or len(value) > 256:
            raise InvalidInput(f"{field}: {value!r} is not a name")
        out.append(value.strip())
    return tuple(dict.fromkeys(out))


def add_schedule(
    ledger: Ledger,
    *,
    name: str,
    recurrence: str,
    format: str = "xlsx",
    kind: str = "summary",
    departments: Sequence[str] | None = None,
    cost_centers: Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
    folder: str | None = None,
    created_by: str | None = None,
    within: str | None = None,
) -> Schedule:
    """Create a schedule; every field is checked first (a typo fails now, not at month end).

    ``within``: the folder must be a relative path inside this directory. The REST API passes the
    server's reports folder, so a remote caller can pick a subfolder but never write elsewhere on
    the server's disk; the CLI, run by the machine's own operator, takes any path.
    """
    if not isinstance(name, str) or not _NAME.match(name.strip()):
        raise InvalidInput("name: 1-200 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit")
    name = name.strip()
    if recurrence not in RECURRENCES:
        raise InvalidInput(f"recurrence: {recurrence!r} must be one of {', '.join(RECURRENCES)}")
    if format not in FORMATS:
        raise InvalidInput(f"format: {format!r} must be one of {', '.join(FORMATS)}")
    if kind not in KINDS:
        raise InvalidInput(f"kind: {kind!r} must be one of {', '.join(KINDS)}")
    channel_names = _names(channels, "channels")
    if channel_names:
        with ledger.store.read() as conn:
            found = {
                row.name: row.kind
                for row in conn.execute(
                    select(alert_channels.c.name, alert_channels.c.kind).where(alert_channels.c.name.in_(channel_names))
                )
            }
        for channel in channel_names:
            if channel not in found:
                raise InvalidInput(f"channels: no alert channel named {channel!r}; see `fleetledger alerts channels`")
            if found[channel] not in CHANNEL_KINDS:
                raise InvalidInput(
                    f"channels: {channel!r} is a {found[channel]} channel; reports go to {', '.join(CHANNEL_KINDS)}"
                )
    if folder is not None and (not isinstance(folder, str) or not folder.strip()):
        raise InvalidInput("folder: give a directory path")
    if within is not None:
        root = Path(within).resolve()
        relative = Path(folder.strip()) if folder else Path()
        if relative.is_absolute() or ".." in relative.parts or folder and folder.strip().startswith("~"):
            raise InvalidInput(
                f"folder: {folder!r} must be a subfolder of the server's reports folder (relative, no '..')"
            )
        target = root / relative
    else:
        target = Path(folder.strip()).expanduser() if folder else Path(default_folder(ledger))
    try:
        if target.exists() and not target.is_dir():
            raise InvalidInput(f"folder: {target} exists and is not a directory")
    except OSError as exc:  # a name too long for the file system, a permission denied...
        raise InvalidInput(f"folder: {folder!r} cannot be used: {exc.strerror}") from None
    values = {
        "name": name,
        "recurrence": recurrence,
        "format": format,
        "kind": kind,
        "departments": list(_names(departments, "departments")),
        "cost_centers": list(_names(cost_centers, "cost_centers")),
        "channels": list(channel_names),
        "folder": str(target),
        "enabled": True,
        "created_us": to_us(ledger.clock()),
        "created_by": created_by,
    }
    try:
        with ledger.store.write() as conn:
            if conn.execute(select(report_schedules.c.id).where(report_schedules.c.name == name)).first():
                raise Conflict(f"name: a report schedule named {name!r} already exists")
            conn.execute(insert(report_schedules).values(**values))
    except IntegrityError:
        raise Conflict(f"name: a report schedule named {name!r} already exists") from None
    return get_schedule(ledger.store, name)


def list_schedules(store: Store) -> list[Schedule]:
    with store.read() as conn:
        rows = conn.execute(select(report_schedules).order_by(report_schedules.c.id)).all()
    return [Schedule.from_row(r) for r in rows]


def get_schedule(store: Store, key: int | str) -> Schedule:
    column = report_schedules.c.id if isinstance(key, int) or str(key).isdigit() else report_schedules.c.name
    value = int(key) if column is report_schedules.c.id else str(key)
    with store.read() as conn:
        row = conn.execute(select(report_schedules).where(column == value)).first()
    if row is None:
        raise NotFound(f"report schedule {key!r} does not exist; see `fleetledger report schedule list`")
    return Schedule.from_row(row)


def delete_schedule(store: Store, key: int | str) -> None:
    schedule = get_schedule(store, key)
    with store.write() as conn:
        conn.execute(delete(report_runs).where(report_runs.c.schedule_id == schedule.id))
        conn.execute(delete(report_schedules).where(report_schedules.c.id == schedule.id))


def list_runs(store: Store, schedule: int | str | None = None) -> list[dict[str, Any]]:
    query = select(report_runs).order_by(report_runs.c.id)
    if schedule is not None:
        query = query.where(report_runs.c.schedule_id == get_schedule(store, schedule).id)
    with store.read() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "id": r.id,
            "schedule_id": r.schedule_id,
            "period": r.period,
            "status": r.status,
            "attempts": r.attempts,
            "path": r.path,
            "total_usd": r.total_usd,
            "deliveries": r.deliveries or {},
            "detail": r.detail,
            "updated_at": from_us(r.updated_us).isoformat(),
        }
        for r in rows
    ]


# -- running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    run_id: int
    attempts: int
    deliveries: dict[str, dict[str, Any]]


def claim_run(
    store: Store,
    schedule: Schedule,
    period: Period,
    *,
    now: datetime,
    lease_s: float = DEFAULT_LEASE_S,
    max_attempts: int = MAX_ATTEMPTS,
) -> Claim | None:
    """Take the run of ``schedule`` for ``period`` if it is due; None when done or being run."""
    now_us = to_us(now)
    lease = now_us + int(lease_s * 1_000_000)
    r = report_runs.c
    query = select(report_runs).where(r.schedule_id == schedule.id, r.period == period.label)
    if store.dialect == "postgresql":
        query = query.with_for_update()
    try:
        with store.write() as conn:
            row = conn.execute(query).first()
            if row is None:
                result = conn.execute(
                    insert(report_runs).values(
                        schedule_id=schedule.id,
                        period=period.label,
                        status="running",
                        attempts=1,
                        lease_until_us=lease,
                        deliveries={},
                        created_us=now_us,
                        updated_us=now_us,
                    )
                )
                key = result.inserted_primary_key
                assert key is not None
                return Claim(int(key[0]), 1, {})
            if row.status in ("done", "failed"):
                return None
            if row.lease_until_us is not None and row.lease_until_us > now_us:
                return None  # running under a live lease, or pending until its backoff ends
            if row.attempts >= max_attempts:
                conn.execute(
                    update(report_runs)
                    .where(r.id == row.id)
                    .values(status="failed", updated_us=now_us, detail=f"gave up after {row.attempts} attempts")
                )
                return None
            changed = conn.execute(
                update(report_runs)
                .where(r.id == row.id, r.attempts == row.attempts)
                .values(status="running", attempts=row.attempts + 1, lease_until_us=lease, updated_us=now_us)
            ).rowcount
            if not changed:
                return None
            return Claim(int(row.id), row.attempts + 1, dict(row.deliveries or {}))
    except IntegrityError:  # another runner inserted the row first
        return None


def _record(store: Store, claim: Claim, now: datetime, **values: Any) -> bool:
    """Update the claimed run, only while this claim is still the current one."""
    with store.write() as conn:
        return bool(
            conn.execute(
                update(report_runs)
                .where(report_runs.c.id == claim.run_id, report_runs.c.attempts == claim.attempts)
                .values(updated_us=to_us(now), **values)
            ).rowcount
        )


class _ReportEmail(EmailChannel):
    """The email channel, with the report attached."""

    def __init__(self, config: Mapping[str, Any], attachment: tuple[bytes, str, str]) -> None:
        super().__init__(config)
        self.attachment = attachment

    def message(self, payload: Mapping[str, Any], idempotency_key: str, now: datetime) -> Any:
        message = super().message(payload, idempotency_key, now)
        message.replace_header("Subject", f"[FleetLedger] {payload.get('title', 'Cost report')}")
        content, filename, media_type = self.attachment
        maintype, _, subtype = media_type.split(";")[0].partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
        return message


def _post_webhook(
    http: httpx.Client, config: Mapping[str, Any], document: Mapping[str, Any], key: str, now: datetime
) -> DeliveryResult:
    body = json.dumps(document, separators=(",", ":"), sort_keys=True, default=str).encode()
    timestamp = str(int(now.timestamp()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "fleetledger-reports",
        "Idempotency-Key": key,
        TIMESTAMP_HEADER: timestamp,
    }
    if config.get("secret"):
        headers[SIGNATURE_HEADER] = sign(config["secret"], timestamp, body)
    try:
        response = http.post(config["url"], content=body, headers=headers, timeout=10.0)
    except httpx.TransportError as exc:
        return DeliveryResult(ok=False, retryable=True, detail=f"{type(exc).__name__}: {exc}")
    return DeliveryResult.from_response(response)


def _send(
    kind: str,
    config: Mapping[str, Any],
    *,
    payload: dict[str, Any],
    attachment: tuple[bytes, str, str],
    key: str,
    http: httpx.Client,
    now: datetime,
) -> DeliveryResult:
    if kind == "email":
        return _ReportEmail(config, attachment).send(payload, key, http=http, now=now)
    if kind == "slack":
        return SlackChannel(config).send(payload, key, http=http, now=now)
    if kind == "webhook":
        document = {"event": "report.ready", "idempotency_key": key, **payload}
        return _post_webhook(http, config, document, key, now)
    return DeliveryResult(ok=False, retryable=False, detail=f"{kind} channels do not take reports")


def _write_atomically(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(content)
    os.replace(partial, path)


def _backoff_s(attempts: int) -> float:
    return min(30.0 * 2 ** max(attempts - 1, 0), 3600.0)


def _run(ledger: Ledger, schedule: Schedule, period: Period, claim: Claim, http: httpx.Client) -> dict[str, Any]:
    from fleetledger.reports import export

    store = ledger.store
    outcome: dict[str, Any] = {"schedule": schedule.name, "period": period.label, "attempt": claim.attempts}
    try:
        made = export(
            ledger,
            period,
            fmt=schedule.format,
            kind=schedule.kind,
            departments=list(schedule.departments) or None,
            cost_centers=list(schedule.cost_centers) or None,
        )
        path = Path(schedule.folder) / f"{schedule.slug}-{made.filename}"
        _write_atomically(path, made.content)
    except Exception as exc:  # a full disk, a bad folder, the database away: retried with backoff
        log.exception("report schedule %s: building %s failed", schedule.name, period.label)
        now = ledger.clock()
        _record(
            store,
            claim,
            now,
            status="pending",
            lease_until_us=to_us(now) + int(_backoff_s(claim.attempts) * 1e6),
            detail=f"{type(exc).__name__}: {exc}",
        )
        return {**outcome, "status": "pending", "detail": str(exc)}
    now = ledger.clock()
    if not _record(store, claim, now, path=str(path), total_usd=made.total_usd):
        return {**outcome, "status": "superseded"}
    data = made.data
    assert data is not None
    top = ", ".join(
        f"{line.keys[0] or '(none)'} ${line.display:,.2f}" for line in data.breakdowns["by_department"].lines[:3]
    )
    message = (
        f"{data.title} for {period.label} ({data.period_text}; {data.scope_text}): total ${data.display_total:,.2f} "
        f"over {data.measure('requests'):,} requests." + (f" Largest: {top}." if top else "") + f" File: {path}"
    )
    payload = {
        "title": f"Cost report {schedule.name}: {period.label}",
        "severity": "info",
        "message": message,
        "rule": f"report schedule {schedule.name}",
        "fired_at": now.isoformat(),
        "schedule": schedule.name,
        "period": period.label,
        "format": schedule.format,
        "kind": schedule.kind,
        "file": str(path),
        "filename": path.name,
        "total_usd": made.total_usd,
    }
    deliveries = dict(claim.deliveries)
    with store.read() as conn:
        channels = {
            row.name: (row.kind, dict(row.config))
            for row in conn.execute(
                select(alert_channels.c.name, alert_channels.c.kind, alert_channels.c.config).where(
                    alert_channels.c.name.in_(list(schedule.channels) or [""])
                )
            )
        }
    for name in schedule.channels:
        if deliveries.get(name, {}).get("status") in ("delivered", "failed"):
            continue
        key = f"report-{schedule.id}-{period.label}-{name}"
        if name not in channels:
            result = DeliveryResult(ok=False, retryable=False, detail="channel was deleted")
        else:
            kind, config = channels[name]
            try:
                result = _send(
                    kind,
                    config,
                    payload=payload,
                    attachment=(made.content, path.name, made.media_type),
                    key=key,
                    http=http,
                    now=now,
                )
            except Exception as exc:  # a channel's bug: retry later rather than lose the report
                log.exception("report schedule %s: channel %s failed", schedule.name, name)
                result = DeliveryResult(ok=False, retryable=True, detail=f"{type(exc).__name__}: {exc}")
        status = "delivered" if result.ok else ("retrying" if result.retryable else "failed")
        deliveries[name] = {"status": status, "detail": result.detail, "at": ledger.clock().isoformat()}
        if not _record(store, claim, ledger.clock(), deliveries=deliveries):
            return {**outcome, "status": "superseded", "deliveries": deliveries}
    retrying = [n for n, d in deliveries.items() if d["status"] == "retrying"]
    failed = [n for n, d in deliveries.items() if d["status"] == "failed"]
    now = ledger.clock()
    lease_until: int | None
    detail: str | None
    if retrying:
        status = "pending"
        lease_until = to_us(now) + int(_backoff_s(claim.attempts) * 1e6)
        detail = f"will retry {', '.join(retrying)}"
    else:
        status = "failed" if failed else "done"
        lease_until = None
        detail = f"not delivered to {', '.join(failed)}" if failed else None
    _record(store, claim, now, status=status, lease_until_us=lease_until, detail=detail)
    return {**outcome, "status": status, "path": str(path), "total_usd": made.total_usd, "deliveries": deliveries}


def run_due(
    ledger: Ledger,
    *,
    http: httpx.Client | None = None,
    lease_s: float = DEFAULT_LEASE_S,
    max_attempts: int = MAX_ATTEMPTS,
) -> list[dict[str, Any]]:
    """Run every enabled schedule's latest complete period that has not gone out yet.

    A schedule's first report is for the first period that ends after it was created. Returns one
    outcome per run attempted (none when everything is up to date)."""
    client = http or ledger.alerts.http
    outcomes = []
    for schedule in list_schedules(ledger.store):
        if not schedule.enabled:
            continue
        now = ledger.clock()
        period = last_complete_period(schedule.recurrence, now)
        if to_us(period.end) <= schedule.created_us:
            continue
        claim = claim_run(ledger.store, schedule, period, now=now, lease_s=lease_s, max_attempts=max_attempts)
        if claim is None:
            continue
        outcomes.append(_run(ledger, schedule, period, claim, client))
    return outcomes


class ReportScheduleWorker:
    """A daemon thread that calls :func:`run_due` every ``interval_s`` seconds (``fleetledger serve``)."""

    def __init__(self, ledger: Ledger, interval_s: float = 60.0) -> None:
        self.ledger = ledger
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[dict[str, Any]]:
        return run_due(self.ledger)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the database may be away for a moment; try again next tick
                log.exception("scheduled reports failed")
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="fleetledger-report-schedules", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
