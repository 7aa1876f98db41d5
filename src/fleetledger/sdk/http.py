"""The SDK's HTTP mode: record in any process, price and store on a fleetledger server.

::

    from fleetledger.sdk.http import HttpLedger

    ledger = HttpLedger("http://fleetledger.internal:8000", api_key="tl_...")   # or fleetledger.connect(url, ...)
    with ledger.attribute(department="research", agent="summarizer"):
        ledger.record(provider="openai", model="gpt-4o", input_tokens=1200, output_tokens=300)
    ledger.record_response(openai_response, project="search")
    ledger.close()          # also run at interpreter exit

The promise: **events recorded while the server is down are kept on disk and sent when it is
back, exactly once.** The design follows the local writer (:mod:`fleetledger.ingest.writer`, ADR 0003):

* ``record()`` validates the event in the caller's thread (bad input raises
  :class:`~fleetledger.core.errors.InvalidEvent` at once and nothing is written), gives it an
  ``event_id`` (a random per-client prefix plus a counter), appends it to this process's
  :class:`~fleetledger.ingest.writer.Journal` in the spool directory (written through to the operating
  system, so a killed process keeps it) and queues it. It never waits for the network.
* A background thread POSTs batches to ``/api/v1/events``. Connection errors, timeouts, 408, 429
  and 5xx keep the batch and retry with exponential backoff (``Retry-After`` honoured); 401/403
  and other refusals of the whole request log an error and retry slowly (an operator may fix the
  key); nothing is ever dropped. An item the server rejects on its own (HTTP 200, status
  ``rejected``) can never succeed: it is appended to ``<spool>/rejected.jsonl`` with the reason,
  counted in :attr:`HttpLedger.rejected`, and not retried.
* When everything journaled has been answered, the journal is emptied; ``close()`` removes it.
  A journal left by a process that died (or closed while the server was unreachable) is replayed
  by the next ``HttpLedger`` on the same spool directory, before its own events; each such file is
  deleted only once the server has answered every event in it.
* Exactly once: the server stores an ``event_id`` once and answers ``duplicate`` for a repeat, so
  resending after a lost response, a crash or a replay never charges twice.

The cost is computed by the server, so :class:`RecordedEvent` carries no price. The client does
not reuse :class:`~fleetledger.ingest.writer.BatchWriter`: an HTTP sender must honour ``Retry-After``,
retry refusals slowly, split a batch the server finds too large, and stop within ``close()``'s
timeout when the server cannot be reached (the journal keeps what was not sent).
"""

from __future__ import annotations

import atexit
import email.utils
import hashlib
import itertools
import json
import logging
import os
import secrets
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from fleetledger.core import attribution
from fleetledger.core.environment import env
from fleetledger.core.errors import InvalidInput
from fleetledger.core.usage import UsageEvent, parse_event
from fleetledger.core.version import VERSION
from fleetledger.ingest.writer import Journal, recover_journals

__all__ = ["HttpLedger", "RecordedEvent", "default_spool_dir"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: The server refuses larger requests (413); see ``fleetledger.server.routes.ingest.MAX_ITEMS``.
MAX_BATCH = 10_000
EVENTS_PATH = "/api/v1/events"
REJECTED_FILE = "rejected.jsonl"
_MAX_RETRY_AFTER_S = 300.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _base_url(url: str) -> str:
    base = url.strip().rstrip("/")
    return base[: -len(EVENTS_PATH)] if base.endswith(EVENTS_PATH) else base


def default_spool_dir(url: str) -> Path:
    """``~/.local/state/fleetledger/http-spool-<sha256(url)[:12]>`` (under ``FLEETLEDGER_SPOOL_DIR``
    when that is set): one spool per server, apart from the local ledger's journals."""
    digest = hashlib.sha256(_base_url(url).encode()).hexdigest()[:12]
    root = env("SPOOL_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".local" / "state" / "fleetledger"
    return base / f"http-spool-{digest}"


@dataclass(slots=True, frozen=True)
class RecordedEvent:
    """An event accepted by the client and spooled for the server (which prices it)."""

    event: UsageEvent
    event_id: str

    def to_dict(self) -> dict[str, Any]:
        data = self.event.canonical_dict()
        data["event_id"] = self.event_id
        return data


class _Retry(Exception):
    """The batch was not answered; keep it and try again after ``delay`` (None: backoff)."""

    def __init__(self, message: str, *, delay: float | None = None, refused: bool = False) -> None:
        super().__init__(message)
        self.delay = delay
        self.refused = refused


class _TooLarge(Exception):
    """413: send fewer events per request."""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except Exception:  # not our JSON error shape (a proxy, a load balancer...)
        return response.text[:200] or response.reason_phrase


class HttpLedger:
    """Records usage events and delivers them to a fleetledger server. Thread-safe; share one.

    ``api_key`` defaults to ``FLEETLEDGER_API_KEY``. ``spool_dir`` holds the journals and
    ``rejected.jsonl`` (default :func:`default_spool_dir`). Up to ``queue_size`` undelivered
    events are held in memory; beyond that ``record()`` waits (back-pressure, never a drop).
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        batch_size: int = 500,
        flush_interval_s: float = 0.5,
        timeout_s: float = 10,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
        queue_size: int = 200_000,
        max_backoff_s: float = 5.0,
        refused_retry_s: float = 30.0,
        close_timeout_s: float = 5.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidInput(f"url: {url!r} is not an http:// or https:// address of a fleetledger server")
        if not 1 <= batch_size <= MAX_BATCH:
            raise InvalidInput(f"batch_size: must be 1..{MAX_BATCH}, got {batch_size}")
        self.url = _base_url(url)
        self.clock: Clock = clock or _utcnow
        self.spool_dir = Path(spool_dir) if spool_dir is not None else default_spool_dir(self.url)
        self.rejected_path = self.spool_dir / REJECTED_FILE
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._timeout_s = timeout_s
        self._queue_size = max(queue_size, batch_size)
        self._max_backoff = max_backoff_s
        self._refused_retry = refused_retry_s
        self._close_timeout = close_timeout_s
        self._id_prefix = secrets.token_hex(8)
        self._id_counter = itertools.count(1)

        self._cond = threading.Condition()
        self._queue: list[str] = []  # event JSON documents, in record() order
        self._oldest = 0.0  # monotonic time the oldest queued event arrived
        self._recovered: deque[tuple[Path, list[str]]] = deque()
        self._submitted = 0
        self._answered = 0  # accepted, duplicate or rejected by the server
        self._live_answered = 0  # of this process's own journal
        self._flushing = 0
        self._closed = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        #: Events the server rejected for good (see ``rejected.jsonl``).
        self.rejected = 0
        #: Why the last delivery failed (None after a success).
        self.last_error: str | None = None

        self._recover()
        self._journal = Journal(self.spool_dir)
        key = api_key if api_key is not None else env("API_KEY")
        headers = {"Content-Type": "application/json", "User-Agent": f"fleetledger-python/{VERSION}"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s, transport=transport)
        self._thread = threading.Thread(target=self._run, name="fleetledger-http-sender", daemon=True)
        self._thread.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> HttpLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HttpLedger({self.url!r}, pending={self.pending}, spool_dir={str(self.spool_dir)!r})"

    @property
    def pending(self) -> int:
        """Events recorded (or replayed) and not yet answered by the server."""
        return self._submitted - self._answered

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the server has answered every event recorded so far. False on timeout.

        Without a timeout this waits as long as the server is unreachable.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._answered < target:
                    if self._stop.is_set():
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(0.05 if remaining is None else min(0.05, remaining))
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is pending (for up to ``timeout``, default ``close_timeout_s``), then stop.

        What the server did not answer stays in the spool directory; the next ``HttpLedger`` on
        it sends it.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._wake.set()  # one immediate attempt, even in the middle of a backoff
        if not self.flush(self._close_timeout if timeout is None else timeout):
            log.warning(
                "fleetledger: %d event(s) not delivered to %s; kept in %s for the next start",
                self.pending,
                self.url,
                self.spool_dir,
            )
        self._stop.set()
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(self._timeout_s * 3 + 5)
        if self._thread.is_alive():  # pragma: no cover - a request stuck past its timeouts
            log.warning("fleetledger: the HTTP sender is still waiting for %s; it will stop after it", self.url)

    # -- recording -----------------------------------------------------------------------------

    def attribute(self, **dimensions: Any) -> AbstractContextManager[None]:
        """Default dimensions for events recorded inside the block (nests; thread/task local)."""
        return attribution.attribute(**dimensions)

    def record(self, **fields: Any) -> RecordedEvent:
        """Validate, spool and queue one event for the server. Raises InvalidEvent at once."""
        fields = attribution.with_defaults(fields)
        if fields.get("timestamp") is None:
            fields["timestamp"] = self.clock()
        return self.record_event(parse_event(fields))

    def record_event(self, event: UsageEvent) -> RecordedEvent:
        """Spool and queue an already validated event."""
        if event.event_id is None:
            object.__setattr__(event, "event_id", f"ev-{self._id_prefix}-{next(self._id_counter):x}")
        document = event.model_dump_json(exclude_none=True)
        self._submit(document)
        return RecordedEvent(event=event, event_id=event.event_id)  # type: ignore[arg-type]

    def record_response(self, response: Any, *, provider: str | None = None, **dimensions: Any) -> RecordedEvent:
        """Record the usage reported in a provider SDK response object or its raw JSON."""
        from fleetledger.ingest.responses import extract_usage

        extracted = extract_usage(response, provider=provider)
        return self.record(**{**extracted.as_event_fields(), **dimensions})

    def _submit(self, document: str) -> None:
        with self._cond:
            while len(self._queue) >= self._queue_size and not self._closed:
                self._cond.wait(0.05)  # back-pressure, never drop
            if self._closed:
                raise RuntimeError("the ledger is closed")
            # Under the lock, so the journal and the queue hold the events in the same order.
            self._journal.append(f'{{"event":{document}}}')
            if not self._queue:
                self._oldest = time.monotonic()
                self._cond.notify_all()
            self._queue.append(document)
            self._submitted += 1
            if len(self._queue) == self._batch_size:
                self._cond.notify_all()

    # -- replay --------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Load the journals of dead processes; they are sent first, each deleted once answered."""
        for path, records in recover_journals(self.spool_dir):
            documents = []
            for record in records:
                event = record.get("event") if isinstance(record, dict) else None
                if isinstance(event, dict):
                    documents.append(json.dumps(event, separators=(",", ":")))
                else:
                    self._write_rejected(json.dumps(record), f"{path.name}: not a journal record")
            if documents:
                self._recovered.append((path, documents))
                self._submitted += len(documents)
                log.info("fleetledger: replaying %d event(s) from %s", len(documents), path)
            else:
                path.unlink(missing_ok=True)

    # -- sending (the background thread) -------------------------------------------------------

    def _next_batch(self, size: int) -> tuple[list[str], Path | None] | None:
        """The next batch to send and the journal it comes from (None: this process's)."""
        with self._cond:
            while not self._stop.is_set():
                if self._recovered:
                    path, documents = self._recovered[0]
                    return documents[:size], path
                if self._queue:
                    age = time.monotonic() - self._oldest
                    if len(self._queue) >= size or self._flushing or self._closed or age >= self._interval:
                        return self._queue[:size], None
                    self._cond.wait(self._interval - age)
                else:
                    self._cond.wait(1.0)
        return None

    def _run(self) -> None:
        backoff = 0.0
        size = self._batch_size
        failing = False
        try:
            while True:
                taken = self._next_batch(size)
                if taken is None:
                    return
                batch, origin = taken
                try:
                    try:
                        outcomes = self._post(batch)
                        for index, reason in outcomes.items():
                            self._write_rejected(batch[index], reason)
                    except (_Retry, _TooLarge):
                        raise
                    except Exception as exc:  # a bug or a full disk must not stop delivery: retry
                        log.exception("fleetledger: unexpected error sending to %s", self.url)
                        raise _Retry(f"unexpected error: {exc!r}") from None
                except _TooLarge:
                    size = max(1, len(batch) // 2)
                    log.warning("fleetledger: the server refused %d events as too large; sending %d", len(batch), size)
                    continue
                except _Retry as retry:
                    self.last_error = str(retry)
                    backoff = min(max(backoff * 2, 0.1), self._max_backoff)
                    delay = retry.delay if retry.delay is not None else backoff
                    if retry.refused:
                        log.error(
                            "fleetledger: %s; %d event(s) kept in %s; retrying every %.0fs",
                            retry,
                            self.pending,
                            self.spool_dir,
                            delay,
                        )
                    elif not failing:
                        log.warning(
                            "fleetledger: %s; %d event(s) kept in %s; retrying", retry, self.pending, self.spool_dir
                        )
                    else:
                        log.debug("fleetledger: %s; retrying in %.1fs", retry, delay)
                    failing = True
                    self._wake.wait(delay)
                    self._wake.clear()
                    continue
                if failing:
                    log.info("fleetledger: %s answers again; sending the %d pending event(s)", self.url, self.pending)
                failing, backoff, self.last_error = False, 0.0, None
                self._answered_batch(len(batch), origin, len(outcomes))
        finally:
            with self._cond:
                delivered = not self._queue and self._live_answered >= self._journal.appended
            self._journal.close(remove=delivered)
            self._http.close()

    def _post(self, batch: list[str]) -> dict[int, str]:
        """Send one batch; the reasons of the items the server rejected, by position."""
        body = ("[" + ",".join(batch) + "]").encode()
        try:
            response = self._http.post(EVENTS_PATH, content=body)
        except httpx.TransportError as exc:
            raise _Retry(f"cannot reach {self.url} ({type(exc).__name__}: {exc})") from None
        status = response.status_code
        if status == 200:
            return self._outcomes(response, len(batch))
        message = f"{self.url}{EVENTS_PATH} answered {status}: {_error_message(response)}"
        if status == 413:
            if len(batch) > 1:
                raise _TooLarge(message)
            return {0: message}
        if status in (408, 429) or status >= 500:
            raise _Retry(message, delay=_retry_after(response))
        # 401/403 (a wrong, revoked or under-privileged key), 404 (not a fleetledger server)...:
        # a refusal of the whole request that an operator can fix. Never drop; retry slowly.
        hint = " (check the API key: it needs the admin, finops or ingest role)" if status in (401, 403) else ""
        raise _Retry(message + hint, delay=max(self._refused_retry, _retry_after(response) or 0), refused=True)

    def _outcomes(self, response: httpx.Response, count: int) -> dict[int, str]:
        try:
            items = response.json()["items"]
            statuses = {int(item["index"]): (item["status"], item.get("reason")) for item in items}
        except Exception:
            raise _Retry(f"{self.url}{EVENTS_PATH} answered 200 without per-item results") from None
        if set(statuses) != set(range(count)):
            raise _Retry(f"{self.url}{EVENTS_PATH} answered {len(statuses)} item(s) for {count}")
        unknown = {status for status, _ in statuses.values()} - {"accepted", "duplicate", "rejected"}
        if unknown:  # only a clear "rejected" lets an event go; anything else is sent again
            raise _Retry(f"{self.url}{EVENTS_PATH} answered unknown item status(es) {sorted(unknown)}")
        return {
            index: str(reason or "rejected by the server")
            for index, (status, reason) in statuses.items()
            if status == "rejected"
        }

    def _answered_batch(self, count: int, origin: Path | None, rejected: int) -> None:
        with self._cond:
            if origin is None:
                del self._queue[:count]
                self._live_answered += count
                if self._queue:
                    self._oldest = time.monotonic()
                else:
                    self._journal.truncate_if(self._live_answered)
            else:
                path, documents = self._recovered[0]
                del documents[:count]
                if not documents:
                    self._recovered.popleft()
                    path.unlink(missing_ok=True)
            self._answered += count
            self.rejected += rejected
            self._cond.notify_all()

    def _write_rejected(self, document: str, reason: str) -> None:
        try:
            event: Any = json.loads(document)
        except json.JSONDecodeError:
            event = document
        line = json.dumps(
            {"rejected_at": _utcnow().isoformat(), "reason": reason, "event": event}, separators=(",", ":")
        )
        log.error("fleetledger: an event was rejected for good (%s); kept in %s", reason, self.rejected_path)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        with open(self.rejected_path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def _close_at_exit(ref: weakref.ref[HttpLedger]) -> None:
    ledger = ref()
    if ledger is not None:
        ledger.close()
