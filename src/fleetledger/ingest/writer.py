"""The background batching writer and its crash journal.

``Ledger.record()`` must cost the caller microseconds, so the database write happens on a
background thread in batches. Two promises hold anyway:

* **Nothing lost on a normal shutdown**: ``close()`` (also run at interpreter exit) drains the
  queue; a full queue makes ``record()`` wait rather than drop.
* **Nothing lost in a crash**: before ``record()`` returns, the event is appended to a journal file
  (written through to the operating system, so a killed process keeps it). When everything
  journaled is committed, the journal is emptied. A later ``Ledger`` on the same database replays
  journals left by dead processes (a held ``flock`` marks a live one). Ingest is idempotent by
  ``event_id``, so a replay never charges an event twice.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["Journal", "BatchWriter", "recover_journals"]

log = logging.getLogger(__name__)


class Journal:
    """An append-only JSONL file owned (flock) by this process until closed."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"journal-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._file = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the lifetime
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock = threading.Lock()
        self.appended = 0

    def append(self, line: str) -> None:
        """Append one JSON record (a line without its newline), through to the operating system."""
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            self.appended += 1

    def truncate_if(self, committed: int) -> None:
        """Empty the journal when every appended record has been committed."""
        with self._lock:
            if committed >= self.appended and self._file.tell():
                self._file.truncate(0)
                self._file.seek(0)

    def close(self, *, remove: bool) -> None:
        with self._lock:
            if self._file.closed:
                return
            if remove:
                self.path.unlink(missing_ok=True)
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()


def recover_journals(directory: Path) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    """Journals left by processes that are gone, with their records. Delete each after ingesting."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("journal-*.jsonl")):
        try:
            handle = open(path, encoding="utf-8")  # noqa: SIM115
        except FileNotFoundError:
            continue
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live process owns it
            records = []
            for number, line in enumerate(handle, 1):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    # Only a torn last line can be partial; record() had not returned for it.
                    log.warning("journal %s line %d is incomplete; skipped", path, number)
            yield path, records


class BatchWriter:
    """Drains submitted items to ``write_batch`` on a daemon thread, in batches."""

    def __init__(
        self,
        write_batch: Callable[[list[Any]], object],
        *,
        batch_size: int = 500,
        interval_s: float = 0.2,
        queue_size: int = 100_000,
        journal: Journal | None = None,
    ) -> None:
        self._write_batch = write_batch
        self._batch_size = batch_size
        self._interval = interval_s
        self._queue_size = queue_size
        self._journal = journal
        self._items: list[Any] = []
        self._cond = threading.Condition()
        self._submitted = 0
        self._committed = 0
        self._closing = False
        self.last_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fleetledger-writer", daemon=True)
        self._thread.start()

    def submit(self, item: Any, journal_line: str | None = None) -> None:
        if self._closing:
            raise RuntimeError("the ledger is closed")
        if self._journal is not None and journal_line is not None:
            self._journal.append(journal_line)
        with self._cond:
            while len(self._items) >= self._queue_size:
                self._cond.wait(0.05)  # back-pressure, never drop
            self._items.append(item)
            self._submitted += 1
            if len(self._items) >= self._batch_size:
                self._cond.notify_all()

    @property
    def pending(self) -> int:
        return self._submitted - self._committed

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is committed. False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            self._cond.notify_all()
            while self._committed < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    def close(self, timeout: float | None = 30.0) -> bool:
        drained = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        if self._journal is not None:
            self._journal.close(remove=drained and self.pending == 0)
        return drained

    def _run(self) -> None:
        backoff = 0.1
        while True:
            with self._cond:
                if not self._items and not self._closing:
                    self._cond.wait(self._interval)
                if not self._items:
                    if self._closing:
                        return
                    continue
                batch = self._items[: self._batch_size]
            try:
                self._write_batch(batch)
            except Exception as exc:  # keep the batch and retry: nothing is dropped
                self.last_error = exc
                log.warning("fleetledger writer: %s; retrying in %.1fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                if self._closing and backoff >= 5.0:
                    return  # the journal keeps the rest for the next start
                continue
            backoff = 0.1
            self.last_error = None
            with self._cond:
                del self._items[: len(batch)]
                self._committed += len(batch)
                self._cond.notify_all()
                if self._journal is not None and not self._items:
                    self._journal.truncate_if(self._committed)
            time.sleep(0)  # hand the GIL to threads that are recording before taking the next batch
