"""The gateway's exact response cache: an answer stored under a normalized request hash.

The key and the entry encoding are :mod:`fleetledger.gateway.cache.codec` (:func:`request_key`
says which request fields are ignored, and why).

Exact backends: :class:`SQLiteExactCache` (its own WAL file, shared by any number of processes;
bounded in bytes and entries with least-recently-used eviction) and :class:`RedisExactCache` (TTL via
``EX``; an optional byte bound kept by a Lua script). An expired entry is never served; an entry
that fails to decode is dropped and logged, and the lookup is a miss: a cache never turns a
request into an error. Backend failures (file unreadable, Redis down) are logged (at most once per
10 s per cache) and read as misses; failed writes are logged and dropped.

Design and measurements: ``docs/decisions/0013-gateway-cache.md``; operator view: ``docs/gateway.md``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any, Protocol

from fleetledger.core.errors import InvalidInput
from fleetledger.gateway.cache.backend import Complaints, SQLiteFile
from fleetledger.gateway.cache.codec import (
    CachedResponse,
    Clock,
    CorruptEntry,
    check_ttl,
    decode_entry,
    encode_entry,
    now_us,
)

__all__ = [
    "ExactCache",
    "SQLiteExactCache",
    "RedisExactCache",
    "build_exact_cache",
]

log = logging.getLogger(__name__)


class ExactCache(Protocol):
    async def get(self, key: str) -> CachedResponse | None: ...

    async def put(self, key: str, response: CachedResponse, ttl_s: int) -> None: ...

    async def close(self) -> None: ...


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_entries (
    key TEXT NOT NULL UNIQUE,
    value BLOB NOT NULL,
    size INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    accessed_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_entries_accessed ON cache_entries (accessed_us);
CREATE INDEX IF NOT EXISTS cache_entries_expires ON cache_entries (expires_us);
CREATE TABLE IF NOT EXISTS cache_totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    bytes INTEGER NOT NULL,
    entries INTEGER NOT NULL
);
INSERT OR IGNORE INTO cache_totals (id, bytes, entries) VALUES (1, 0, 0);
CREATE TRIGGER IF NOT EXISTS cache_entries_added AFTER INSERT ON cache_entries BEGIN
    UPDATE cache_totals SET bytes = bytes + new.size, entries = entries + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS cache_entries_removed AFTER DELETE ON cache_entries BEGIN
    UPDATE cache_totals SET bytes = bytes - old.size, entries = entries - 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS cache_entries_resized AFTER UPDATE OF size ON cache_entries BEGIN
    UPDATE cache_totals SET bytes = bytes - old.size + new.size WHERE id = 1;
END;
"""


class SQLiteExactCache(SQLiteFile):
    """Exact cache in its own SQLite file (WAL), safe for several processes sharing the file.

    Bounds: ``max_bytes`` (sum of stored entry sizes) and/or ``max_entries``. A put that crosses a
    bound evicts expired entries, then the least recently used, down to 90% of the bound, so
    eviction runs in batches rather than on every put. Entries bigger than ``max_entry_bytes``
    (default: a quarter of ``max_bytes``) are not stored. "Recently used" is refreshed at most once
    per ``touch_interval_s`` per entry, so a hot entry does not cost a write on every hit.

    Reads run on the caller's thread (a WAL reader never waits for a writer; a hit costs tens of
    microseconds). Writes (put, the access-time refresh, dropping an expired or corrupt entry) run on
    one background thread, so waiting for another process's write lock never blocks an event loop.
    Totals are kept by triggers inside the same transactions, so they stay exact across processes.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int | None = 256 * 1024 * 1024,
        max_entries: int | None = None,
        max_entry_bytes: int | None = None,
        clock: Clock | None = None,
        touch_interval_s: float = 1.0,
        busy_timeout_s: float = 5.0,
    ) -> None:
        for name, bound in (("max_bytes", max_bytes), ("max_entries", max_entries)):
            if bound is not None and (type(bound) is not int or bound <= 0):
                raise InvalidInput(f"SQLite cache {path}: {name} must be a positive integer or None, got {bound!r}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.max_entry_bytes = (
            max_entry_bytes if max_entry_bytes is not None else (max_bytes // 4 if max_bytes else None)
        )
        self.clock = clock
        self.touch_interval_us = int(touch_interval_s * 1_000_000)
        self.busy_timeout_s = busy_timeout_s
        self._last_purge_us = 0
        self._open(_SQLITE_SCHEMA, "SQLite cache", "fleetledger-cache-writer", Complaints(f"SQLite cache {self.path}"))

    # ---- reads (caller's thread)

    async def get(self, key: str) -> CachedResponse | None:
        return self.get_now(key)

    def get_now(self, key: str) -> CachedResponse | None:
        """The synchronous lookup behind :meth:`get` (also usable outside an event loop)."""
        if self._closed:
            return None
        try:
            with self._read_lock:
                row = self._reader.execute(
                    "SELECT value, expires_us, accessed_us FROM cache_entries WHERE key = ?", (key,)
                ).fetchone()
        except sqlite3.Error as exc:
            self._complain("read", exc)
            return None
        if row is None:
            return None
        value, expires_us, accessed_us = row
        now = now_us(self.clock)
        if expires_us <= now:
            self._background(self._drop_sync, key, now)
            return None
        try:
            response, _ = decode_entry(value)
        except CorruptEntry as exc:
            log.warning("SQLite cache %s: dropping corrupt entry %s (%s)", self.path, key, exc)
            self._background(self._drop_sync, key, None)
            return None
        if now - accessed_us >= self.touch_interval_us:
            self._background(self._touch_sync, key, now)
        return response

    # ---- writes (background thread)

    async def put(self, key: str, response: CachedResponse, ttl_s: int) -> None:
        check_ttl(ttl_s)
        if self._closed:
            return
        now = now_us(self.clock)
        value = encode_entry(response, now + ttl_s * 1_000_000)
        if self.max_entry_bytes is not None and len(value) > self.max_entry_bytes:
            log.debug(
                "SQLite cache %s: entry %s (%d bytes) exceeds max_entry_bytes, not stored", self.path, key, len(value)
            )
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer, self._put_sync, key, value, now + ttl_s * 1_000_000, now)
        except (sqlite3.Error, RuntimeError) as exc:
            self._complain("write", exc)

    def put_now(self, key: str, response: CachedResponse, ttl_s: int) -> None:
        """The synchronous store behind :meth:`put` (waits for the write; for scripts and tests)."""
        check_ttl(ttl_s)
        now = now_us(self.clock)
        value = encode_entry(response, now + ttl_s * 1_000_000)
        if self.max_entry_bytes is not None and len(value) > self.max_entry_bytes:
            return
        self._writer.submit(self._put_sync, key, value, now + ttl_s * 1_000_000, now).result()

    def _put_sync(self, key: str, value: bytes, expires_us: int, now: int) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO cache_entries (key, value, size, expires_us, accessed_us) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, size = excluded.size, "
                "expires_us = excluded.expires_us, accessed_us = excluded.accessed_us",
                (key, value, len(value), expires_us, now),
            )
            self._evict(conn, now)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _over(self, conn: sqlite3.Connection, fraction: float) -> tuple[int, int]:
        """How many bytes and entries to free to get below ``fraction`` of the bounds."""
        total_bytes, entries = conn.execute("SELECT bytes, entries FROM cache_totals WHERE id = 1").fetchone()
        free_bytes = total_bytes - int(self.max_bytes * fraction) if self.max_bytes is not None else 0
        free_entries = entries - int(self.max_entries * fraction) if self.max_entries is not None else 0
        return max(free_bytes, 0), max(free_entries, 0)

    def _evict(self, conn: sqlite3.Connection, now: int) -> None:
        purge_due = now - self._last_purge_us >= 60_000_000
        free_bytes, free_entries = self._over(conn, 1.0)
        if not (free_bytes or free_entries or purge_due):
            return
        # Expired first (bounded batch, so one put never does unbounded work)...
        conn.execute(
            "DELETE FROM cache_entries WHERE rowid IN "
            "(SELECT rowid FROM cache_entries WHERE expires_us <= ? ORDER BY expires_us LIMIT 10000)",
            (now,),
        )
        self._last_purge_us = now
        if not (free_bytes or free_entries):
            return
        # ...then least recently used, down to 90% of each bound.
        free_bytes, free_entries = self._over(conn, 0.9)
        victims: list[tuple[int]] = []
        freed = 0
        for rowid, size in conn.execute("SELECT rowid, size FROM cache_entries ORDER BY accessed_us, rowid"):
            if freed >= free_bytes and len(victims) >= free_entries:
                break
            victims.append((rowid,))
            freed += size
        conn.executemany("DELETE FROM cache_entries WHERE rowid = ?", victims)

    def _touch_sync(self, key: str, now: int) -> None:
        self._conn().execute(
            "UPDATE cache_entries SET accessed_us = ? WHERE key = ? AND accessed_us < ?", (now, key, now)
        )

    def _drop_sync(self, key: str, expired_before: int | None) -> None:
        if expired_before is None:
            self._conn().execute("DELETE FROM cache_entries WHERE key = ?", (key,))
        else:
            # Only if still expired: another process may have stored a fresh answer meanwhile.
            self._conn().execute("DELETE FROM cache_entries WHERE key = ? AND expires_us <= ?", (key, expired_before))

    # ---- inspection and lifecycle

    def stats(self) -> dict[str, int]:
        """Stored bytes and entries (expired ones included until evicted)."""
        with self._read_lock:
            total_bytes, entries = self._reader.execute(
                "SELECT bytes, entries FROM cache_totals WHERE id = 1"
            ).fetchone()
        return {"bytes": total_bytes, "entries": entries}


# Bounded put for Redis: store, note the access time and size, and evict the least recently used
# entries down to the low-water mark while the running total exceeds the bound. Entries that Redis
# already expired are still counted until popped here (DEL is then a no-op); they are the oldest, so
# they go first. Victim keys are derived, so this needs a single Redis node (not Redis Cluster).
_REDIS_PUT = """
local size = string.len(ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[3], KEYS[1]) or '0')
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], KEYS[1])
redis.call('HSET', KEYS[3], KEYS[1], size)
local total = redis.call('INCRBY', KEYS[4], size - old)
local evicted = 0
if total > tonumber(ARGV[4]) then
  while total > tonumber(ARGV[5]) do
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)
    if #oldest == 0 or oldest[1] == KEYS[1] then break end
    local victim = oldest[1]
    local victim_size = tonumber(redis.call('HGET', KEYS[3], victim) or '0')
    redis.call('ZREM', KEYS[2], victim)
    redis.call('HDEL', KEYS[3], victim)
    redis.call('DEL', victim)
    total = redis.call('DECRBY', KEYS[4], victim_size)
    evicted = evicted + 1
  end
end
return evicted
"""


class RedisExactCache:
    """Exact cache in Redis, shared by every gateway process pointed at it.

    Each entry is one string key ``{prefix}e:{key}`` with ``EX ttl_s``. Bounds: entries larger than
    ``max_entry_bytes`` (default 8 MiB) are not stored; with ``max_bytes`` set, a Lua script keeps a
    running total (``{prefix}bytes``), an access-time index (``{prefix}lru``) and sizes
    (``{prefix}sizes``) and evicts least recently used entries down to 90% of the bound. Without
    ``max_bytes``, bound the cache with Redis itself (``maxmemory`` + ``volatile-lru``: every entry
    has a TTL).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "fleetledger:cache:",
        max_bytes: int | None = None,
        max_entry_bytes: int | None = 8 * 1024 * 1024,
        clock: Clock | None = None,
        client: Any = None,
    ) -> None:
        import redis.asyncio as redis_asyncio

        if max_bytes is not None and (type(max_bytes) is not int or max_bytes <= 0):
            raise InvalidInput(f"Redis cache: max_bytes must be a positive integer or None, got {max_bytes!r}")
        self.url = url
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self.clock = clock
        self.redis = client if client is not None else redis_asyncio.Redis.from_url(url, socket_timeout=2.0)
        self._put_script = self.redis.register_script(_REDIS_PUT)
        self._index = f"{prefix}lru"
        self._sizes = f"{prefix}sizes"
        self._total = f"{prefix}bytes"
        self._complain = Complaints(f"Redis cache {prefix}")

    def _entry(self, key: str) -> str:
        return f"{self.prefix}e:{key}"

    async def get(self, key: str) -> CachedResponse | None:
        from redis.exceptions import RedisError

        entry = self._entry(key)
        now = now_us(self.clock)
        value: Any
        try:
            if self.max_bytes is None:
                value = await self.redis.get(entry)
            else:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.get(entry)
                    pipe.zadd(self._index, {entry: now // 1000}, xx=True)
                    value, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._complain("read", exc)
            return None
        if value is None:
            return None
        try:
            response, expires_us = decode_entry(value)
        except CorruptEntry as exc:
            log.warning("Redis cache: dropping corrupt entry %s (%s)", entry, exc)
            await self._delete(entry)
            return None
        if expires_us and expires_us <= now:
            return None  # Redis expires it by itself (EX); our clock may run ahead of its.
        return response

    async def _delete(self, entry: str) -> None:
        from redis.exceptions import RedisError

        try:
            await self.redis.delete(entry)
        except (RedisError, OSError) as exc:
            self._complain("delete", exc)

    async def put(self, key: str, response: CachedResponse, ttl_s: int) -> None:
        from redis.exceptions import RedisError

        check_ttl(ttl_s)
        now = now_us(self.clock)
        value = encode_entry(response, now + ttl_s * 1_000_000)
        if self.max_entry_bytes is not None and len(value) > self.max_entry_bytes:
            log.debug("Redis cache: entry %s (%d bytes) exceeds max_entry_bytes, not stored", key, len(value))
            return
        entry = self._entry(key)
        try:
            if self.max_bytes is None:
                await self.redis.set(entry, value, ex=ttl_s)
            else:
                low_water = int(self.max_bytes * 0.9)
                await self._put_script(
                    keys=[entry, self._index, self._sizes, self._total],
                    args=[value, ttl_s, now // 1000, self.max_bytes, low_water],
                )
        except (RedisError, OSError) as exc:
            self._complain("write", exc)

    async def stats(self) -> dict[str, int]:
        """Counted bytes (with ``max_bytes``) and indexed entries."""
        total = await self.redis.get(self._total)
        entries = await self.redis.zcard(self._index)
        return {"bytes": int(total or 0), "entries": int(entries)}

    async def close(self) -> None:
        await self.redis.aclose()


def build_exact_cache(
    url: str | None,
    *,
    path: Path,
    max_bytes: int,
    clock: Clock | None = None,
    max_entries: int | None = None,
    prefix: str = "fleetledger:cache:",
) -> ExactCache:
    """The exact cache a URL names.

    ``None`` or ``sqlite://`` -> a SQLite file at ``path``; ``sqlite:///relative.db`` or
    ``sqlite:////absolute.db`` -> that file; ``redis://``, ``rediss://`` or ``unix://`` -> Redis
    (``max_bytes`` then bounds the cache with the Lua-kept total; keys start with ``prefix``).
    """
    if url is None or url in ("sqlite://", "sqlite:///"):
        return SQLiteExactCache(path, max_bytes=max_bytes, max_entries=max_entries, clock=clock)
    if url.startswith("sqlite:///"):
        return SQLiteExactCache(
            Path(url[len("sqlite:///") :]), max_bytes=max_bytes, max_entries=max_entries, clock=clock
        )
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisExactCache(url, max_bytes=max_bytes, clock=clock, prefix=prefix)
    raise InvalidInput(
        f"cache URL {url!r}: use sqlite:///path/to/cache.db (or leave it unset for the default file) "
        "or redis://host:6379/0"
    )
