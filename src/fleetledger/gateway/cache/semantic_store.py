"""Where the semantic cache keeps its entries: :class:`SQLiteSemanticStore` and :class:`RedisSemanticStore`.

Split from :mod:`.semantic` (the matching: cache text, embeddings, partitions) along the storage
seam; both names are re-exported there and from :mod:`.cache`. Any object with the methods of
:class:`SemanticStore` can be passed to :class:`~fleetledger.gateway.cache.semantic.SemanticCache` instead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol

from fleetledger.core.errors import InvalidInput
from fleetledger.gateway.cache.backend import Complaints, SQLiteFile
from fleetledger.gateway.cache.store import RedisExactCache, SQLiteExactCache

__all__ = ["SemanticStore", "SQLiteSemanticStore", "RedisSemanticStore", "as_store"]

#: The methods a :class:`SemanticStore` has (what :func:`as_store` checks a custom store for).
_PROTOCOL = ("describe", "added_since", "value", "live_ids", "add", "drop", "close")


class SemanticStore(Protocol):
    """Where a :class:`SemanticCache` keeps its entries; ids only ever grow (new rows: ``id > last``)."""

    def describe(self) -> str: ...

    async def added_since(self, last_id: int) -> list[tuple[int, str, bytes, int]]:
        """(id, partition, float32 vector bytes, expires_us) of entries added after ``last_id``."""
        ...

    async def value(self, entry_id: int, now: int) -> tuple[bytes, int] | None:
        """(encoded response, expires_us), or None when gone; notes the use (for LRU eviction)."""
        ...

    async def live_ids(self) -> set[int]: ...

    async def add(
        self, partition: str, vector: bytes, value: bytes, expires_us: int, now: int, max_entries: int
    ) -> tuple[int, list[int]]: ...

    async def drop(self, entry_id: int) -> None: ...

    async def close(self) -> None: ...


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS semantic_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    partition TEXT NOT NULL,
    vector BLOB NOT NULL,
    value BLOB NOT NULL,
    expires_us INTEGER NOT NULL,
    accessed_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS semantic_entries_accessed ON semantic_entries (accessed_us);
CREATE TABLE IF NOT EXISTS semantic_totals (id INTEGER PRIMARY KEY CHECK (id = 1), entries INTEGER NOT NULL);
INSERT OR IGNORE INTO semantic_totals (id, entries) VALUES (1, (SELECT COUNT(*) FROM semantic_entries));
CREATE TRIGGER IF NOT EXISTS semantic_entries_added AFTER INSERT ON semantic_entries BEGIN
    UPDATE semantic_totals SET entries = entries + 1 WHERE id = 1;
END;
CREATE TRIGGER IF NOT EXISTS semantic_entries_removed AFTER DELETE ON semantic_entries BEGIN
    UPDATE semantic_totals SET entries = entries - 1 WHERE id = 1;
END;
"""


class SQLiteSemanticStore(SQLiteFile):
    """Semantic cache entries in their own SQLite file (WAL), shared by processes.

    Reads on the caller's thread; writes on one background thread (see :class:`SQLiteExactCache`).
    """

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._open(
            _SQLITE_SCHEMA,
            "semantic cache",
            "fleetledger-semantic-writer",
            Complaints(f"semantic cache {self.path}"),
        )

    def describe(self) -> str:
        return str(self.path)

    # reads (caller's thread: indexed lookups of tens of microseconds)

    async def added_since(self, last_id: int) -> list[tuple[int, str, bytes, int]]:
        with self._read_lock:
            return self._reader.execute(
                "SELECT id, partition, vector, expires_us FROM semantic_entries WHERE id > ? ORDER BY id", (last_id,)
            ).fetchall()

    async def value(self, entry_id: int, now: int) -> tuple[bytes, int] | None:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT value, expires_us, accessed_us FROM semantic_entries WHERE id = ?", (entry_id,)
            ).fetchone()
        if row is None:
            return None
        if now - row[2] >= 1_000_000:  # at most one write per entry per second
            self._background(self._execute, "UPDATE semantic_entries SET accessed_us = ? WHERE id = ?", (now, entry_id))
        return row[0], row[1]

    async def live_ids(self) -> set[int]:
        return await asyncio.get_running_loop().run_in_executor(None, self._live_ids_sync)

    def _live_ids_sync(self) -> set[int]:
        with self._read_lock:
            return {row[0] for row in self._reader.execute("SELECT id FROM semantic_entries")}

    # writes (background thread)

    async def add(
        self, partition: str, vector: bytes, value: bytes, expires_us: int, now: int, max_entries: int
    ) -> tuple[int, list[int]]:
        """Store an entry; returns its id and the ids evicted to keep ``max_entries``."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._writer, self._add_sync, partition, vector, value, expires_us, now, max_entries
        )

    def _add_sync(
        self, partition: str, vector: bytes, value: bytes, expires_us: int, now: int, max_entries: int
    ) -> tuple[int, list[int]]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.execute(
                "INSERT INTO semantic_entries (partition, vector, value, expires_us, accessed_us) "
                "VALUES (?, ?, ?, ?, ?)",
                (partition, vector, value, expires_us, now),
            )
            entry_id = int(cursor.lastrowid or 0)
            evicted: list[int] = []
            (count,) = conn.execute("SELECT entries FROM semantic_totals WHERE id = 1").fetchone()
            if count > max_entries:
                # Expired first, then least recently used, down to 90% of the bound.
                evicted = [
                    row[0] for row in conn.execute("SELECT id FROM semantic_entries WHERE expires_us <= ?", (now,))
                ]
                target = count - len(evicted) - int(max_entries * 0.9)
                if target > 0:
                    evicted += [
                        row[0]
                        for row in conn.execute(
                            "SELECT id FROM semantic_entries WHERE expires_us > ? AND id != ? "
                            "ORDER BY accessed_us, id LIMIT ?",
                            (now, entry_id, target),
                        )
                    ]
                conn.executemany("DELETE FROM semantic_entries WHERE id = ?", [(i,) for i in evicted])
            conn.execute("COMMIT")
            return entry_id, evicted
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def drop(self, entry_id: int) -> None:
        self._background(self._execute, "DELETE FROM semantic_entries WHERE id = ?", (entry_id,))

    def _execute(self, sql: str, args: tuple[Any, ...]) -> None:
        self._conn().execute(sql, args)


# Add one entry, forget expired ones (their hashes Redis already dropped, bounded batch), and evict
# the least recently used down to the low-water mark. Returns {id, evicted ids}.
_REDIS_ADD = """
local id = redis.call('INCR', KEYS[1])
local key = ARGV[1] .. id
redis.call('HSET', key, 'p', ARGV[2], 'v', ARGV[3], 'd', ARGV[4], 'x', ARGV[5])
redis.call('EXPIRE', key, ARGV[7])
redis.call('ZADD', KEYS[2], id, id)
redis.call('ZADD', KEYS[3], ARGV[6], id)
redis.call('ZADD', KEYS[4], ARGV[5], id)
local evicted = {}
local function forget(victim)
  redis.call('ZREM', KEYS[2], victim)
  redis.call('ZREM', KEYS[3], victim)
  redis.call('ZREM', KEYS[4], victim)
  redis.call('DEL', ARGV[1] .. victim)
  table.insert(evicted, victim)
end
for _, victim in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[6], 'LIMIT', 0, 1000)) do
  forget(victim)
end
local count = redis.call('ZCARD', KEYS[2])
if count > tonumber(ARGV[8]) then
  for _, victim in ipairs(redis.call('ZRANGE', KEYS[3], 0, count - tonumber(ARGV[9]) - 1)) do
    if victim ~= tostring(id) then forget(victim) end
  end
end
return {id, evicted}
"""


class RedisSemanticStore:
    """Semantic cache entries in Redis, shared by every gateway process pointed at it.

    A :class:`SemanticCache` asks it for entries added by other processes at most every
    ``catch_up_interval_s`` (0.25 s) rather than on every lookup: a round trip saved per lookup,
    for a quarter of a second before another process's answer can be reused here.

    Keys under ``prefix``: ``next`` (id counter), ``e:{id}`` (a hash: partition, vector, response,
    expiry; with ``EXPIRE``), and three sorted sets of ids: ``ids`` (by id, for catching up),
    ``lru`` (by last use) and ``exp`` (by expiry). Needs a single Redis node (the add script
    touches derived keys).
    """

    def __init__(
        self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "fleetledger:cache:sem:", client: Any = None
    ) -> None:
        import redis.asyncio as redis_asyncio

        self.url = url
        self.prefix = prefix
        self._owns_client = client is None
        self.redis: Any = client if client is not None else redis_asyncio.Redis.from_url(url, socket_timeout=2.0)
        self._add_script = self.redis.register_script(_REDIS_ADD)
        self._keys = [f"{prefix}next", f"{prefix}ids", f"{prefix}lru", f"{prefix}exp"]
        self.catch_up_interval_s = 0.25

    def describe(self) -> str:
        return f"redis {self.prefix}"

    def _entry(self, entry_id: int | str) -> str:
        return f"{self.prefix}e:{entry_id}"

    async def added_since(self, last_id: int) -> list[tuple[int, str, bytes, int]]:
        ids = [int(i) for i in await self.redis.zrangebyscore(self._keys[1], f"({last_id}", "+inf")]
        rows: list[tuple[int, str, bytes, int]] = []
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            async with self.redis.pipeline(transaction=False) as pipe:
                for entry_id in chunk:
                    pipe.hmget(self._entry(entry_id), "p", "v", "x")
                fetched = await pipe.execute()
            for entry_id, (partition, vector, expires) in zip(chunk, fetched, strict=True):
                if partition is not None and vector is not None and expires is not None:
                    rows.append((entry_id, partition.decode(), vector, int(expires)))
        return rows

    async def value(self, entry_id: int, now: int) -> tuple[bytes, int] | None:
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.hmget(self._entry(entry_id), "d", "x")
            pipe.zadd(self._keys[2], {str(entry_id): now}, xx=True)
            (value, expires), _ = await pipe.execute()
        if value is None or expires is None:
            return None
        return value, int(expires)

    async def live_ids(self) -> set[int]:
        return {int(i) for i in await self.redis.zrange(self._keys[1], 0, -1)}

    async def add(
        self, partition: str, vector: bytes, value: bytes, expires_us: int, now: int, max_entries: int
    ) -> tuple[int, list[int]]:
        ttl_s = max(1, -(-(expires_us - now) // 1_000_000))
        entry_id, evicted = await self._add_script(
            keys=self._keys,
            args=[
                self._entry(""),
                partition,
                vector,
                value,
                expires_us,
                now,
                ttl_s,
                max_entries,
                int(max_entries * 0.9),
            ],
        )
        return int(entry_id), [int(i) for i in evicted]

    async def drop(self, entry_id: int) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._entry(entry_id))
            for key in self._keys[1:]:
                pipe.zrem(key, entry_id)
            await pipe.execute()

    async def close(self) -> None:
        if self._owns_client:
            await self.redis.aclose()


def as_store(store: Any) -> SemanticStore:
    """A :class:`SemanticStore` for ``store``: a store, an exact cache (its file or Redis), a path."""
    if isinstance(store, SQLiteSemanticStore | RedisSemanticStore):
        return store
    if isinstance(store, SQLiteExactCache):
        return SQLiteSemanticStore(store.path, busy_timeout_s=store.busy_timeout_s)
    if isinstance(store, RedisExactCache):
        return RedisSemanticStore(store.url, prefix=f"{store.prefix}sem:", client=store.redis)
    if isinstance(store, str | Path):
        return SQLiteSemanticStore(store)
    if all(callable(getattr(store, name, None)) for name in _PROTOCOL):
        return store  # type: ignore[no-any-return]
    raise InvalidInput(f"semantic cache: cannot store entries in a {type(store).__name__}")
