"""Stored anomalies: the scan that detects and upserts them, listing, and the review lifecycle.

Status lifecycle (:func:`set_status`)
    ``detected`` -> ``investigating`` | ``resolved`` | ``false_positive`` | ``expected``;
    ``investigating`` -> any other; ``resolved`` -> ``investigating``; ``false_positive`` and
    ``expected`` -> ``detected`` (reopen). Marking an anomaly ``expected`` suppresses similar ones:
    a *new* detection with the same scope and the same first-ranked cause is stored with status
    ``expected`` (its note names the anomaly that suppressed it), so it is kept for the record but
    never alerted on. Re-scans upsert by fingerprint (granularity, level, scope, window start) and
    never change a status or note people set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from fleetledger.analytics.anomalies.anomaly import LEVELS, STATUSES, Anomaly, DetectorConfig, choices
from fleetledger.analytics.anomalies.detector import detect
from fleetledger.analytics.anomalies.tables import anomalies
from fleetledger.core.errors import InvalidInput, NotFound
from fleetledger.core.time import from_us, to_us
from fleetledger.storage.store import Store

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["scan", "scan_store", "list_anomalies", "get_anomaly", "set_status"]

_TRANSITIONS = {
    "detected": {"investigating", "resolved", "false_positive", "expected"},
    "investigating": {"detected", "resolved", "false_positive", "expected"},
    "resolved": {"investigating"},
    "false_positive": {"detected"},
    "expected": {"detected"},
}


def _from_row(row: Any) -> Anomaly:
    return Anomaly(
        id=int(row.id),
        level=row.level,
        granularity=row.granularity,
        scope=dict(row.scope or {}),
        department=row.department,
        start=from_us(row.start_us),
        end=from_us(row.end_us),
        score=float(row.score),
        expected_nanos=int(row.expected_nanos),
        actual_nanos=int(row.actual_nanos),
        causes=list(row.causes or []),
        status=row.status,
        note=row.note,
        detected_at=from_us(row.detected_us),
        updated_at=from_us(row.updated_us),
    )


def _suppress_key(scope: Mapping[str, Any], cause: str | None) -> str:
    return json.dumps([dict(scope), cause], sort_keys=True)


def _store(conn: Connection, found: Sequence[Anomaly], now_us: int) -> list[Anomaly]:
    existing = {}
    fingerprints = [a.fingerprint for a in found]
    for chunk in range(0, len(fingerprints), 500):
        part = fingerprints[chunk : chunk + 500]
        for row in conn.execute(select(anomalies).where(anomalies.c.fingerprint.in_(part))):
            existing[row.fingerprint] = row
    expected_ids = {
        _suppress_key(row.scope or {}, (row.causes or [{}])[0].get("cause")): int(row.id)
        for row in conn.execute(select(anomalies).where(anomalies.c.status == "expected"))
        if not (row.note or "").startswith("suppressed:")
    }
    out = []
    for anomaly in found:
        values = {
            "end_us": to_us(anomaly.end),
            "score": anomaly.score,
            "expected_nanos": anomaly.expected_nanos,
            "actual_nanos": anomaly.actual_nanos,
            "impact_nanos": anomaly.impact_nanos,
            "causes": anomaly.causes,
            "department": anomaly.department,
        }
        stored_row = existing.get(anomaly.fingerprint)
        if stored_row is not None:
            row = stored_row
            changed = {k: v for k, v in values.items() if getattr(row, k) != v}
            if changed:
                conn.execute(update(anomalies).where(anomalies.c.id == row.id).values(**changed, updated_us=now_us))
            stored = _from_row(row)
            out.append(replace(stored, **_fields(values), updated_at=from_us(now_us) if changed else stored.updated_at))
            continue
        status, note = "detected", None
        suppressor = expected_ids.get(_suppress_key(anomaly.scope, anomaly.cause))
        if suppressor is not None:
            status, note = "expected", f"suppressed: matches expected anomaly #{suppressor}"
        new_id = conn.execute(
            insert(anomalies).values(
                level=anomaly.level,
                granularity=anomaly.granularity,
                scope=anomaly.scope,
                start_us=to_us(anomaly.start),
                status=status,
                note=note,
                detected_us=now_us,
                updated_us=now_us,
                fingerprint=anomaly.fingerprint,
                **values,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        out.append(
            replace(
                anomaly,
                id=int(new_id),
                status=status,
                note=note,
                detected_at=from_us(now_us),
                updated_at=from_us(now_us),
            )
        )
    return out


def _fields(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "end": from_us(values["end_us"]),
        "score": values["score"],
        "expected_nanos": values["expected_nanos"],
        "actual_nanos": values["actual_nanos"],
        "causes": values["causes"],
        "department": values["department"],
    }


def scan_store(
    store: Store,
    *,
    now: datetime,
    levels: Sequence[str] = LEVELS,
    since: Any = "90d",
    granularity: str = "day",
    config: DetectorConfig | None = None,
) -> list[Anomaly]:
    """Detect, explain and upsert anomalies; returns them with ids and statuses (idempotent)."""
    found = detect(store, now=now, since=since, levels=levels, granularity=granularity, config=config)
    with store.write() as conn:
        return _store(conn, found, to_us(now))


def scan(
    ledger: Ledger,
    *,
    levels: Sequence[str] = LEVELS,
    since: Any = "90d",
    now: datetime | None = None,
    granularity: str = "day",
    config: DetectorConfig | None = None,
) -> list[Anomaly]:
    """Scan ``ledger`` per level for anomalies since ``since`` (e.g. ``90d``) and store them."""
    return scan_store(
        ledger.store,
        now=now or ledger.clock(),
        levels=levels,
        since=since,
        granularity=granularity,
        config=config,
    )


def list_anomalies(
    store: Store,
    *,
    status: str | None = None,
    level: str | None = None,
    departments: Sequence[str] | None = None,
    since: datetime | None = None,
    limit: int = 500,
) -> list[Anomaly]:
    """Stored anomalies, newest window first; ``departments`` limits to those departments' scopes."""
    statement = select(anomalies)
    if status is not None:
        choices([status], STATUSES, "status")
        statement = statement.where(anomalies.c.status == status)
    if level is not None:
        choices([level], LEVELS, "level")
        statement = statement.where(anomalies.c.level == level)
    if departments is not None:
        statement = statement.where(anomalies.c.department.in_(list(departments)))
    if since is not None:
        statement = statement.where(anomalies.c.end_us > to_us(since))
    statement = statement.order_by(anomalies.c.start_us.desc(), anomalies.c.id.desc()).limit(limit)
    with store.read() as conn:
        return [_from_row(row) for row in conn.execute(statement)]


def get_anomaly(store: Store, anomaly_id: int) -> Anomaly:
    with store.read() as conn:
        row = conn.execute(select(anomalies).where(anomalies.c.id == anomaly_id)).first()
    if row is None:
        raise NotFound(f"anomaly {anomaly_id}: no such anomaly; list them with `fleetledger anomalies list`")
    return _from_row(row)


def set_status(store: Store, anomaly_id: int, status: str, *, note: str | None = None, now: datetime) -> Anomaly:
    """Move an anomaly through its lifecycle (see the module docstring); ``note`` says why."""
    if status not in STATUSES:
        raise InvalidInput(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    if note is not None and len(note) > 2000:
        raise InvalidInput("note: at most 2000 characters")
    with store.write() as conn:
        row = conn.execute(select(anomalies).where(anomalies.c.id == anomaly_id)).first()
        if row is None:
            raise NotFound(f"anomaly {anomaly_id}: no such anomaly; list them with `fleetledger anomalies list`")
        if status != row.status and status not in _TRANSITIONS[row.status]:
            allowed = ", ".join(sorted(_TRANSITIONS[row.status]))
            raise InvalidInput(f"status: a {row.status} anomaly cannot become {status}; use one of {allowed}")
        values: dict[str, Any] = {"status": status, "updated_us": to_us(now)}
        if note is not None:
            values["note"] = note
        conn.execute(update(anomalies).where(anomalies.c.id == anomaly_id).values(**values))
        row = conn.execute(select(anomalies).where(anomalies.c.id == anomaly_id)).one()
    return _from_row(row)
