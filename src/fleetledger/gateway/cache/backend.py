"""What the cache backends share: the SQLite file base class and the logger of failing backends.

:class:`SQLiteFile` is the base of :class:`~fleetledger.gateway.cache.store.SQLiteExactCache` and
:class:`~fleetledger.gateway.cache.semantic_store.SQLiteSemanticStore`; :class:`Complaints` logs a
failing backend (file unreadable, Redis down) at most once per interval, for every cache.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fleetledger.core.errors import InvalidInput

__all__ = ["Complaints", "SQLiteFile"]

#: The whole cache logs under one name (what operators and tests filter on).
log = logging.getLogger("fleetledger.gateway.cache.store")


class Complaints:
    """Logs a failing backend at most once per ``interval`` seconds per kind of failure."""

    def __init__(self, name: str, interval: float = 10.0) -> None:
        self.name = name
        self.interval = interval
        self._last: dict[str, float] = {}

    def __call__(self, what: str, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last.get(what, -1e18) >= self.interval:
            self._last[what] = now
            log.warning("%s: %s failed, treated as a cache miss (%s: %s)", self.name, what, type(exc).__name__, exc)


class SQLiteFile:
    """A cache's own SQLite file (WAL): reads on the caller's thread, writes on one background thread.

    Shared by the exact cache and the semantic store (see the module docstring): the schema is
    applied once, a reader connection (short busy timeout: a WAL reader does not wait for writers)
    is used under a lock, and every write goes through a one-thread executor with its own
    connection, so waiting for another process's write lock never blocks an event loop.
    """

    path: Path
    busy_timeout_s: float

    def _open(self, schema: str, label: str, thread_name: str, complain: Callable[[str, BaseException], None]) -> None:
        self._complain = complain
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            setup = self._connect(self.busy_timeout_s)
            try:
                setup.execute("PRAGMA journal_mode=WAL")
                setup.executescript(schema)
            finally:
                setup.close()
        except sqlite3.DatabaseError as exc:
            raise InvalidInput(f"{label} {self.path}: not a usable cache file ({exc})") from None
        self._reader = self._connect(0.05)
        self._read_lock = threading.Lock()
        self._writer_conn: sqlite3.Connection | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._closed = False

    def _connect(self, timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        """The writer's connection (background thread only)."""
        if self._writer_conn is None:
            self._writer_conn = self._connect(self.busy_timeout_s)
        return self._writer_conn

    def _background(self, work: Callable[..., None], *args: Any) -> None:
        """Queue a write that nobody waits for; a failure is logged, never raised."""

        def run() -> None:
            try:
                work(*args)
            except sqlite3.Error as exc:
                self._complain("background write", exc)

        try:
            self._writer.submit(run)
        except RuntimeError:  # shut down
            pass

    def flush(self) -> None:
        """Wait until queued background writes are done (tests, shutdown)."""
        if not self._closed:
            self._writer.submit(lambda: None).result()

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close_now)

    def close_now(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close_writer() -> None:
            if self._writer_conn is not None:
                self._writer_conn.close()
                self._writer_conn = None

        self._writer.submit(close_writer)
        self._writer.shutdown(wait=True)
        with self._read_lock:
            self._reader.close()
