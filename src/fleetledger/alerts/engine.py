"""The alert engine: channels and rules, firing with cooldown and escalation, history.

Why one object: the CLI, the REST API and the budgets engine (through the event bus) all create,
fire and list alerts the same way. :meth:`AlertEngine.fire` is where "tell people once" is decided:
in one write transaction it looks for an alert with the same ``dedup_key`` inside the rule's
cooldown (24 h by default). One at the same or a higher severity suppresses the new one; a higher
severity (``info < warning < critical < exceeded``) is an escalation and fires anyway. A fired
alert is stored with one outbox row per channel in that same transaction, and only after it
commits is ``alert.fired`` published on the bus. Delivery is the outbox's job
(:mod:`fleetledger.alerts.outbox`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from sqlalchemy import Connection, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from fleetledger.alerts.channels import validate_channel_config
from fleetledger.alerts.outbox import FAILED, PENDING, DeliveryOutcome, DeliveryReport, deliver_due
from fleetledger.alerts.records import (
    Alert,
    AlertChannel,
    Delivery,
    alert_from_row,
    channel_from_row,
    load_deliveries,
    rule_from_row,
)
from fleetledger.alerts.registry import RuleRegistry
from fleetledger.alerts.rules import (
    BUDGET_LEVELS,
    SEVERITY_RANK,
    Evaluator,
    Rule,
    usd_text,
    validate_kind,
    validate_params,
    validate_scope,
    validate_severity,
)
from fleetledger.alerts.tables import alert_channels, alert_outbox, alert_rules, alerts
from fleetledger.core.bus import ALERT_FIRED, BUDGET_CRITICAL, BUDGET_EXCEEDED, BUDGET_WARNING, EventBus
from fleetledger.core.errors import Conflict, InvalidInput, NotFound, StorageUnavailable
from fleetledger.core.time import from_us, parse_moment, to_us
from fleetledger.storage.store import Store

__all__ = ["AlertEngine", "Alert", "AlertChannel", "Delivery", "DEFAULT_COOLDOWN_S"]

log = logging.getLogger(__name__)

DEFAULT_COOLDOWN_S = 86_400
Clock = Callable[[], datetime]


def _name(value: Any, field_name: str = "name") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{field_name}: required, a non-empty name")
    if len(value.strip()) > 128:
        raise InvalidInput(f"{field_name}: at most 128 characters")
    return value.strip()


def _jsonable(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """Decimals and datetimes become strings, as everywhere in our JSON."""
    return json.loads(json.dumps(dict(data or {}), default=str))


def _usd(value: Any) -> str:
    try:
        return usd_text(Decimal(str(value)))
    except InvalidOperation:
        return str(value)


def _lock_key(dedup_key: str) -> int:
    return int.from_bytes(hashlib.sha256(dedup_key.encode()).digest()[:8], "big", signed=True)


def _scope_covers(rule_scope: Mapping[str, list[str]], budget_scope: Mapping[str, Any]) -> bool:
    """A budget rule's scope narrows which budgets it listens to: every key must overlap."""
    for key, wanted in rule_scope.items():
        have = budget_scope.get(key)
        have_values = [have] if isinstance(have, str) else list(have or [])
        if not set(wanted) & set(have_values):
            return False
    return True


class AlertEngine:
    """Channels, rules, firing, evaluation and history over one :class:`Store`.

    With a ``bus``, the engine listens to ``budget.warning|critical|exceeded`` and publishes
    ``alert.fired``. ``http`` is used by :meth:`test_channel` and :meth:`deliver` (a default
    client is created, and closed by :meth:`close`, when none is given). ``registry`` holds the
    evaluators of the scheduled rule kinds (default: a new one with the built-in kinds).
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock,
        bus: EventBus | None = None,
        http: httpx.Client | None = None,
        registry: RuleRegistry | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.bus = bus
        self._http = http
        self._owns_http = http is None
        self.registry = registry if registry is not None else RuleRegistry()
        self._unsubscribe: list[Callable[[], None]] = []
        if bus is not None:
            for topic in (BUDGET_WARNING, BUDGET_CRITICAL, BUDGET_EXCEEDED):
                self._unsubscribe.append(bus.subscribe(topic, self.on_budget_event))

    def close(self) -> None:
        for undo in self._unsubscribe:
            undo()
        self._unsubscribe.clear()
        if self._owns_http and self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> AlertEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client()
        return self._http

    # -- channels --------------------------------------------------------------------------------

    def add_channel(self, name: str, kind: str, config: Mapping[str, Any]) -> AlertChannel:
        name = _name(name)
        config = validate_channel_config(kind, config)
        now_us = to_us(self.clock())
        try:
            with self.store.write() as conn:
                if conn.execute(select(alert_channels.c.id).where(alert_channels.c.name == name)).first():
                    raise Conflict(f"name: a channel named {name!r} already exists")
                conn.execute(insert(alert_channels).values(name=name, kind=kind, config=config, created_us=now_us))
        except IntegrityError:
            raise Conflict(f"name: a channel named {name!r} already exists") from None
        return self.get_channel(name)

    def list_channels(self) -> list[AlertChannel]:
        with self.store.read() as conn:
            rows = conn.execute(select(alert_channels).order_by(alert_channels.c.name)).all()
        return [channel_from_row(row) for row in rows]

    def get_channel(self, name: str) -> AlertChannel:
        with self.store.read() as conn:
            row = conn.execute(select(alert_channels).where(alert_channels.c.name == name)).first()
        if row is None:
            raise NotFound(f"channel {name!r} does not exist; see `fleetledger alerts channels`")
        return channel_from_row(row)

    def delete_channel(self, name: str) -> None:
        """Delete a channel no rule uses; its undelivered notifications are marked failed."""
        channel = self.get_channel(name)
        with self.store.write() as conn:
            users = [r.name for r in self._rule_rows(conn) if channel.name in (r.channels or [])]
            if users:
                raise Conflict(f"channel {name!r} is used by rule(s) {', '.join(users)}; remove it from them first")
            conn.execute(
                update(alert_outbox)
                .where(alert_outbox.c.channel_id == channel.id, alert_outbox.c.status.in_([PENDING, "sending"]))
                .values(status=FAILED, last_error="channel was deleted", lease_until_us=None)
            )
            conn.execute(delete(alert_channels).where(alert_channels.c.id == channel.id))

    # -- rules -----------------------------------------------------------------------------------

    def add_rule(
        self,
        name: str,
        kind: str,
        scope: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        channels: Sequence[str] = (),
        cooldown_s: int = DEFAULT_COOLDOWN_S,
        *,
        enabled: bool = True,
    ) -> Rule:
        name = _name(name)
        kind = validate_kind(kind)
        clean_scope = validate_scope(scope)
        clean_params = validate_params(kind, params)
        if isinstance(channels, str) or not all(isinstance(c, str) for c in channels):
            raise InvalidInput("channels: a list of channel names")
        channel_names = list(dict.fromkeys(c.strip() for c in channels))
        if isinstance(cooldown_s, bool) or not isinstance(cooldown_s, int) or cooldown_s < 0:
            raise InvalidInput(f"cooldown_s: {cooldown_s!r} must be a whole number of seconds, 0 or more")
        now_us = to_us(self.clock())
        try:
            with self.store.write() as conn:
                known = set(
                    conn.execute(
                        select(alert_channels.c.name).where(alert_channels.c.name.in_(channel_names))
                    ).scalars()
                )
                for channel in channel_names:
                    if channel not in known:
                        raise InvalidInput(
                            f"channels: unknown channel {channel!r}; add it with `fleetledger alerts channel-add`"
                        )
                if conn.execute(select(alert_rules.c.id).where(alert_rules.c.name == name)).first():
                    raise Conflict(f"name: a rule named {name!r} already exists")
                conn.execute(
                    insert(alert_rules).values(
                        name=name,
                        kind=kind,
                        scope=clean_scope,
                        params=clean_params,
                        channels=channel_names,
                        cooldown_s=cooldown_s,
                        enabled=bool(enabled),
                        created_us=now_us,
                    )
                )
        except IntegrityError:
            raise Conflict(f"name: a rule named {name!r} already exists") from None
        return self.get_rule(name)

    def list_rules(self, *, kind: str | None = None, enabled_only: bool = False) -> list[Rule]:
        with self.store.read() as conn:
            rules = self._rule_rows(conn)
        return [r for r in rules if (kind is None or r.kind == kind) and (r.enabled or not enabled_only)]

    def get_rule(self, rule: str | int) -> Rule:
        column = alert_rules.c.id if isinstance(rule, int) else alert_rules.c.name
        with self.store.read() as conn:
            row = conn.execute(select(alert_rules).where(column == rule)).first()
        if row is None:
            raise NotFound(f"alert rule {rule!r} does not exist; see `fleetledger alerts list`")
        return rule_from_row(row)

    def set_enabled(self, rule: str | int, enabled: bool) -> Rule:
        found = self.get_rule(rule)
        with self.store.write() as conn:
            conn.execute(update(alert_rules).where(alert_rules.c.id == found.id).values(enabled=bool(enabled)))
        return self.get_rule(found.id)

    def delete_rule(self, rule: str | int) -> None:
        """Delete a rule; the alerts it fired stay in the history."""
        found = self.get_rule(rule)
        with self.store.write() as conn:
            conn.execute(update(alerts).where(alerts.c.rule_id == found.id).values(rule_id=None))
            conn.execute(delete(alert_rules).where(alert_rules.c.id == found.id))

    def _rule_rows(self, conn: Connection) -> list[Rule]:
        return [rule_from_row(row) for row in conn.execute(select(alert_rules).order_by(alert_rules.c.name))]

    # -- firing ----------------------------------------------------------------------------------

    def fire(
        self,
        *,
        rule: Rule | str | int | None,
        severity: str,
        dedup_key: str,
        title: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        channels: Sequence[str] | None = None,
        cooldown_s: int | None = None,
        now: datetime | None = None,
    ) -> Alert | None:
        """Record an alert and queue its deliveries, unless the cooldown suppresses it (-> None).

        ``channels`` and ``cooldown_s`` default to the rule's (none and 24 h without a rule).
        """
        severity = validate_severity(severity)
        if not isinstance(dedup_key, str) or not dedup_key or len(dedup_key) > 512:
            raise InvalidInput("dedup_key: required, at most 512 characters")
        found = rule if isinstance(rule, Rule) or rule is None else self.get_rule(rule)
        names = list(channels if channels is not None else (found.channels if found else []))
        cooldown = cooldown_s if cooldown_s is not None else (found.cooldown_s if found else DEFAULT_COOLDOWN_S)
        now = now or self.clock()
        now_us = to_us(now)
        rank = SEVERITY_RANK[severity]
        data = _jsonable(data)
        with self.store.write() as conn:
            if self.store.dialect == "postgresql":
                # Two processes firing the same key at once must not both pass the cooldown check.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(dedup_key)})
            recent = conn.execute(
                select(alerts.c.severity).where(
                    alerts.c.dedup_key == dedup_key, alerts.c.fired_us > now_us - cooldown * 1_000_000
                )
            ).scalars()
            if any(SEVERITY_RANK.get(s, 0) >= rank for s in recent):
                return None
            targets = {
                row.name: row.id
                for row in conn.execute(
                    select(alert_channels.c.id, alert_channels.c.name).where(alert_channels.c.name.in_(names))
                )
            }
            missing = [n for n in names if n not in targets]
            if missing:
                raise InvalidInput(f"channels: unknown channel {missing[0]!r}")
            alert = self._insert_alert(
                conn,
                rule=found,
                severity=severity,
                dedup_key=dedup_key,
                title=title,
                message=message,
                data=data,
                now_us=now_us,
                channels=[(n, targets[n]) for n in names],
            )
        if self.bus is not None:
            self.bus.publish(ALERT_FIRED, alert.to_dict())
        return alert

    def _insert_alert(
        self,
        conn: Connection,
        *,
        rule: Rule | None,
        severity: str,
        dedup_key: str,
        title: str,
        message: str,
        data: dict[str, Any],
        now_us: int,
        channels: list[tuple[str, int]],
        test: bool = False,
    ) -> Alert:
        alert_id = conn.execute(
            insert(alerts)
            .returning(alerts.c.id)
            .values(
                rule_id=rule.id if rule else None,
                dedup_key=dedup_key,
                severity=severity,
                title=title,
                message=message,
                data=data,
                fired_us=now_us,
            )
        ).scalar_one()
        fired_at = from_us(now_us)
        payload = {
            "alert_id": alert_id,
            "rule": rule.name if rule else None,
            "severity": severity,
            "dedup_key": dedup_key,
            "title": title,
            "message": message,
            "data": data,
            "fired_at": fired_at.isoformat(),
        }
        if test:
            payload["test"] = True
        deliveries = []
        for name, channel_id in channels:
            digest = hashlib.sha256(f"{dedup_key}|{now_us}|{channel_id}".encode()).hexdigest()[:16]
            conn.execute(
                insert(alert_outbox).values(
                    alert_id=alert_id,
                    channel_id=channel_id,
                    idempotency_key=f"tla-{alert_id}-{channel_id}-{digest}",
                    payload=payload,
                    status=PENDING,
                    attempts=0,
                    next_attempt_us=now_us,
                    created_us=now_us,
                )
            )
            deliveries.append(Delivery(name, PENDING, 0, None, None, fired_at))
        return Alert(
            id=int(alert_id),
            rule_id=rule.id if rule else None,
            rule=rule.name if rule else None,
            severity=severity,
            dedup_key=dedup_key,
            title=title,
            message=message,
            data=data,
            fired_at=fired_at,
            deliveries=deliveries,
        )

    def on_budget_event(self, payload: Mapping[str, Any]) -> list[Alert]:
        """Fire the enabled ``budget`` rules that match a ``budget.*`` bus event."""
        level = payload.get("level")
        if level not in BUDGET_LEVELS:
            log.warning("ignoring budget event with level %r", level)
            return []
        name = str(payload.get("name", ""))
        try:
            used = Decimal(str(payload.get("percent_used", "0")))
        except InvalidOperation:
            used = Decimal(0)
        fired = []
        for rule in self.list_rules(kind="budget", enabled_only=True):
            if rule.params.get("budget", "*") not in ("*", name) or level not in rule.params.get("levels", ()):
                continue
            if "percent" in rule.params and used < Decimal(rule.params["percent"]):
                continue
            if rule.scope and not _scope_covers(rule.scope, payload.get("scope") or {}):
                continue
            alert = self.fire(
                rule=rule,
                severity=level,
                dedup_key=f"budget:{payload.get('budget_id')}:{payload.get('period_start')}:{rule.id}",
                title=f"Budget {name} {level}: {payload.get('percent_used')}% used",
                message=(
                    f"Budget {name} has spent {_usd(payload.get('spent_usd'))} of {_usd(payload.get('limit_usd'))} "
                    f"({payload.get('percent_used')}%) in the period {payload.get('period_start')} "
                    f"to {payload.get('period_end')}."
                ),
                data=dict(payload),
            )
            if alert is not None:
                fired.append(alert)
        return fired

    # -- evaluation ------------------------------------------------------------------------------

    def register_evaluator(self, kind: str, evaluator: Evaluator) -> None:
        """Plug in the evaluator of a rule kind, e.g. ``forecast_overrun`` (see :class:`RuleRegistry`)."""
        self.registry.register(kind, evaluator)

    def evaluate(self, now: datetime | None = None) -> list[Alert]:
        """Check every enabled scheduled rule against the ledger; returns the alerts that fired."""
        now = now or self.clock()
        fired = []
        for rule in self.list_rules(enabled_only=True):
            try:
                evaluator = self.registry.evaluator(rule.kind)
            except InvalidInput as exc:  # a kind this release does not know (a newer one wrote it)
                log.warning("alert rule %s skipped: %s", rule.name, exc)
                continue
            if evaluator is None:
                continue  # budget rules react to events; plug-in kinds wait for their evaluator
            try:
                findings = list(evaluator(rule, now, self.store))
            except StorageUnavailable:
                raise
            except Exception:  # one broken rule must not hide the others
                log.exception("alert rule %s (%s) failed to evaluate", rule.name, rule.kind)
                continue
            for finding in findings:
                alert = self.fire(
                    rule=rule,
                    severity=finding.severity,
                    dedup_key=finding.dedup_key,
                    title=finding.title,
                    message=finding.message,
                    data=finding.data,
                    now=now,
                )
                if alert is not None:
                    fired.append(alert)
        return fired

    # -- delivery and history ------------------------------------------------------------------

    def deliver(self, **options: Any) -> DeliveryReport:
        """Run the outbox once now (see :func:`fleetledger.alerts.outbox.deliver_due`)."""
        return deliver_due(self.store, now=self.clock(), http=self.http, **options)

    def test_channel(self, name: str) -> DeliveryOutcome:
        """Send a test alert to one channel now, through the outbox, and report what happened.

        A failed test is not retried later: nobody wants a test message hours after the test.
        """
        channel = self.get_channel(name)
        now = self.clock()
        now_us = to_us(now)
        with self.store.write() as conn:
            alert = self._insert_alert(
                conn,
                rule=None,
                severity="info",
                dedup_key=f"test:{channel.id}:{now_us}:{secrets.token_hex(4)}",
                title=f"Test alert for channel {channel.name}",
                message=f"This is a test of the {channel.kind} channel {channel.name!r}. No action is needed.",
                data={"test": True, "channel": channel.name},
                now_us=now_us,
                channels=[(channel.name, channel.id)],
                test=True,
            )
            outbox_id = conn.execute(select(alert_outbox.c.id).where(alert_outbox.c.alert_id == alert.id)).scalar_one()
        report = deliver_due(self.store, now=now, http=self.http, outbox_ids=[outbox_id], max_attempts=1)
        if not report.outcomes:  # a running outbox worker claimed it first
            return DeliveryOutcome(outbox_id, alert.id, channel.name, "sending", 1, "picked up by the outbox worker")
        return report.outcomes[0]

    def history(
        self,
        since: datetime | str | None = None,
        rule: str | int | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Fired alerts, newest first, each with its delivery status per channel."""
        query = (
            select(alerts, alert_rules.c.name.label("rule_name"))
            .select_from(alerts.outerjoin(alert_rules, alerts.c.rule_id == alert_rules.c.id))
            .order_by(alerts.c.fired_us.desc(), alerts.c.id.desc())
            .limit(max(1, int(limit)))
        )
        if since is not None:
            moment = parse_moment(since, now=self.clock(), field="since")
            query = query.where(alerts.c.fired_us >= to_us(moment))
        if rule is not None:
            query = query.where(alerts.c.rule_id == self.get_rule(rule).id)
        with self.store.read() as conn:
            rows = conn.execute(query).all()
            deliveries = load_deliveries(conn, [row.id for row in rows])
        return [alert_from_row(row, deliveries.get(row.id, [])) for row in rows]
