"""The semantic half of the gateway cache: answer a *similar* question from the cache.

Import these names from :mod:`fleetledger.gateway.cache` (the package exports them).

What is compared (:func:`cache_text`): the text of the **last user turn** only. Everything else in
the request (endpoint, system prompt or ``instructions``, every earlier turn, tools, ``tool_choice``,
``response_format``, ``max_tokens``, ``temperature``, ``seed``...) must match *exactly*: it is hashed
into a scope fingerprint written on the first line of the returned text, and :class:`SemanticCache`
partitions by it (as well as by namespace, model and embedder). Two reasons: a long shared system
prompt or history would otherwise dominate the similarity of any two questions, and an answer is
only reusable for the same instructions, tools and parameters.

The numbers in the last turn are part of the scope too: questions that differ in a number ("refund
order 48213" / "refund order 48214") are near-identical text with different answers, and never
answer each other.

Not cacheable (``cache_text`` returns ``None``):

* endpoints other than chat completions, Anthropic messages, responses and embeddings;
* sampling: ``temperature`` above ``max_temperature`` (default 0). An absent temperature counts as
  1.0, the OpenAI and Anthropic default, so by default only ``temperature: 0`` requests are
  semantically cached: a client that samples asked for variety, and a paraphrase hit would hand it
  someone else's draw. Pass ``max_temperature=None`` to lift the rule (the operator's choice);
* ``n`` > 1 (several choices);
* a last turn that is not a user's text: a tool result (agent loops carry state the text does not
  show), an image, audio or a file, or empty text; token-id inputs to embeddings.

Embeddings (no temperature) compare the input text(s); the number of inputs is part of the scope.

:class:`HashingEmbedder` is the local default: no model, no download, deterministic. Words, word
pairs and character 3-grams (after Unicode NFKC, case folding, and dropping punctuation) are
hashed (CRC-32, signed) into ``dim`` buckets, log-scaled and L2-normalized. It recognises
near-duplicates (case, punctuation, spacing, a word added or swapped), not meaning: with it, keep
the threshold high (0.95 default; around 0.85 admits light rewording). A real embedding model
plugs in through :class:`Embedder`.

:class:`SQLiteSemanticStore` keeps entries (vector as float32 blob, the encoded response, expiry,
last use) in its own SQLite file, shared by processes. Each :class:`SemanticCache` keeps the
vectors in memory per partition, catches up with rows added by other processes on every call (one
indexed query), and drops rows deleted elsewhere every ``resync_s`` seconds; a lookup is one
matrix-vector product (brute-force cosine) over its partition.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import time
import unicodedata
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fleetledger.core.errors import InvalidInput
from fleetledger.gateway.cache.backend import Complaints
from fleetledger.gateway.cache.codec import (
    CachedResponse,
    Clock,
    CorruptEntry,
    canonical_endpoint,
    canonical_json,
    canonical_params,
    check_ttl,
    decode_entry,
    encode_entry,
    now_us,
)
from fleetledger.gateway.cache.semantic_store import RedisSemanticStore, SemanticStore, SQLiteSemanticStore, as_store
from fleetledger.gateway.cache.store import RedisExactCache, SQLiteExactCache

__all__ = [
    "cache_text",
    "split_cache_text",
    "Embedder",
    "HashingEmbedder",
    "SemanticCache",
    "SemanticStore",
    "SQLiteSemanticStore",
    "RedisSemanticStore",
]

log = logging.getLogger("fleetledger.gateway.cache.store")

_SCOPE_OPEN = "[fleetledger-scope "
_CONVERSATION_FIELDS = {
    "/chat/completions": ("messages",),
    "/messages": ("messages", "system"),
    "/responses": ("input", "instructions"),
    "/embeddings": ("input",),
}


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _kind(path: str) -> str | None:
    for suffix in _CONVERSATION_FIELDS:
        if path.endswith(suffix):
            return suffix
    return None


def _plain_text(content: Any) -> str | None:
    """The text of a message's content, or None when it holds anything but text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        parts = []
        for block in content:
            if not (isinstance(block, Mapping) and block.get("type") in ("text", "input_text")):
                return None
            text = block.get("text")
            if not isinstance(text, str):
                return None
            parts.append(text)
        return "\n".join(parts)
    return None


def cache_text(endpoint: str, body: Mapping[str, Any], *, max_temperature: float | None = 0.0) -> str | None:
    """What a semantic cache compares for this request, or ``None`` when it must not be answered
    from a similar request (see the module docstring). Pass the result unchanged to
    :meth:`SemanticCache.lookup` / :meth:`SemanticCache.put`: its first line is the scope."""
    path = canonical_endpoint(endpoint)
    kind = _kind(path)
    if kind is None or not isinstance(body, Mapping):
        return None
    try:
        params = canonical_params(path, body)
    except InvalidInput:
        return None
    if kind != "/embeddings":
        n = params.get("n", 1)
        if type(n) is not int or n != 1:
            return None
        temperature = params.get("temperature", 1.0)
        if max_temperature is not None and (
            not isinstance(temperature, int | float) or isinstance(temperature, bool) or temperature > max_temperature
        ):
            return None
    question, context = _split_conversation(kind, params)
    if question is None or not question.strip():
        return None
    shape = {k: v for k, v in params.items() if k not in _CONVERSATION_FIELDS[kind] and k != "model"}
    try:
        # The numbers in the question must match exactly: "refund order 48213" and "refund order
        # 48214" are near-identical text with different answers.
        numbers = _NUMBER.findall(question)
        fingerprint = canonical_json(
            {"endpoint": path, "params": shape, "context": context, "numbers": numbers}, where="cache text"
        )
    except InvalidInput:
        return None
    scope = hashlib.sha256(fingerprint.encode()).hexdigest()[:32]
    return f"{_SCOPE_OPEN}{scope}]\n{question.strip()}"


def _split_conversation(kind: str, params: Mapping[str, Any]) -> tuple[str | None, Any]:
    """(the last user turn's text, everything before it) for each wire format."""
    if kind == "/embeddings":
        source = params.get("input")
        if isinstance(source, str):
            return source, 1
        if isinstance(source, list) and source and all(isinstance(item, str) for item in source):
            return "\n".join(source), len(source)
        return None, None
    if kind == "/responses":
        source = params.get("input")
        instructions = params.get("instructions")
        if isinstance(source, str):
            return source, [instructions]
        if not isinstance(source, list) or not source:
            return None, None
        last = source[-1]
        if not (isinstance(last, Mapping) and last.get("role") == "user" and last.get("type", "message") == "message"):
            return None, None
        return _plain_text(last.get("content")), [instructions, source[:-1]]
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        return None, None
    last = messages[-1]
    if not (isinstance(last, Mapping) and last.get("role") == "user"):
        return None, None
    return _plain_text(last.get("content")), [params.get("system"), messages[:-1]]


def split_cache_text(text: str) -> tuple[str, str]:
    """(scope, question) of a :func:`cache_text` result; scope "" for text built elsewhere."""
    if text.startswith(_SCOPE_OPEN):
        head, sep, rest = text.partition("\n")
        if sep and head.endswith("]"):
            return head[len(_SCOPE_OPEN) : -1], rest
    return "", text


# --------------------------------------------------------------------------------------------------
# Embedders


@runtime_checkable
class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


_WORD = re.compile(r"\w+")


class HashingEmbedder:
    """Local, deterministic text vectors by the hashing trick (see the module docstring)."""

    def __init__(self, dim: int = 512) -> None:
        if type(dim) is not int or dim < 16:
            raise InvalidInput(f"HashingEmbedder: dim must be an integer >= 16, got {dim!r}")
        self.dim = dim
        self.name = f"hashing-v1-{dim}"

    def _features(self, text: str) -> list[str]:
        words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
        features = [f"w {word}" for word in words]
        features += [f"b {a} {b}" for a, b in zip(words, words[1:], strict=False)]
        joined = f" {' '.join(words)} "
        features += [joined[i : i + 3] for i in range(len(joined) - 2)]
        return features

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            hashes = np.fromiter((zlib.crc32(feature.encode()) for feature in self._features(text)), dtype=np.int64)
            if hashes.size == 0:
                continue
            signs = np.where(hashes & 0x80000000, -1.0, 1.0)
            counts = np.bincount(hashes % self.dim, weights=signs, minlength=self.dim)
            scaled = np.sign(counts) * np.log1p(np.abs(counts))
            norm = float(np.linalg.norm(scaled))
            if norm > 0:
                out[row] = scaled / norm
        return out

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self.embed_array(texts)]


def _embed_one(embedder: Embedder, text: str) -> np.ndarray:
    if isinstance(embedder, HashingEmbedder):
        vector = embedder.embed_array([text])[0]
    else:
        vector = np.asarray(embedder.embed([text])[0], dtype=np.float32)
        norm = float(np.linalg.norm(vector))
        if not math.isfinite(norm) or norm == 0:
            raise ValueError(f"embedder {type(embedder).__name__} returned a zero or non-finite vector")
        vector = vector / norm
    return vector


class _Partition:
    """The vectors of one partition, in growable arrays (rows [0, size) are live)."""

    def __init__(self, dim: int) -> None:
        self.vectors = np.zeros((8, dim), dtype=np.float32)
        self.ids = np.zeros(8, dtype=np.int64)
        self.expires = np.zeros(8, dtype=np.int64)
        self.size = 0
        self.row_of: dict[int, int] = {}

    def add(self, entry_id: int, vector: np.ndarray, expires_us: int) -> None:
        if entry_id in self.row_of:
            return
        if self.size == len(self.ids):
            capacity = 2 * len(self.ids)
            self.vectors = np.resize(self.vectors, (capacity, self.vectors.shape[1]))
            self.ids = np.resize(self.ids, capacity)
            self.expires = np.resize(self.expires, capacity)
        row = self.size
        self.vectors[row], self.ids[row], self.expires[row] = vector, entry_id, expires_us
        self.row_of[entry_id] = row
        self.size += 1

    def remove(self, entry_id: int) -> None:
        row = self.row_of.pop(entry_id, None)
        if row is None:
            return
        last = self.size - 1
        if row != last:  # move the last row into the hole
            moved = int(self.ids[last])
            self.vectors[row], self.ids[row], self.expires[row] = self.vectors[last], moved, self.expires[last]
            self.row_of[moved] = row
        self.size = last

    async def best(self, query: np.ndarray, now: int, threshold: float) -> list[tuple[int, float]]:
        """Unexpired entries at or above ``threshold``, most similar first (at most 3)."""
        size = self.size
        if size == 0:
            return []
        vectors, ids, expires = self.vectors[:size], self.ids[:size].copy(), self.expires[:size].copy()
        if size <= _INLINE_ROWS:
            scores = _cosines(vectors, query)
        else:
            # A big partition is scored on a thread (einsum releases the GIL) so the event loop keeps
            # serving. Rows may be moved meanwhile (remove() fills a hole with the last row): a row
            # then scores another entry's vector under a removed id, and the value lookup of a removed
            # id finds nothing, so a moved row can cause a miss but never a wrong answer.
            scores = await asyncio.get_running_loop().run_in_executor(None, _cosines, vectors, query)
        scores[expires <= now] = -2.0
        count = min(3, size)
        top = np.argpartition(-scores, count - 1)[:count] if size > count else np.arange(size)
        ranked = sorted(((float(scores[i]), int(ids[i])) for i in top), reverse=True)
        return [(entry_id, score) for score, entry_id in ranked if score >= threshold]


#: Partitions up to this many rows are scored inline (~0.1-0.5 ms), bigger ones on a thread.
_INLINE_ROWS = 4096


def _cosines(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    # einsum, not @: the BLAS matrix-vector product goes multi-threaded from ~1,000 rows, and on a
    # busy 2-core machine waking its threads cost 10 ms per lookup (measured); einsum stays on one.
    return np.einsum("ij,j->i", vectors, query)


class SemanticCache:
    """Answers a request from the stored answer to the most similar earlier request, when the cosine
    similarity of their :func:`cache_text` reaches ``threshold``.

    Partitioned by namespace (tenant), model, the request's scope fingerprint and the embedder: an
    answer is never served to another tenant, for another model, or under other instructions, tools
    or parameters. ``store`` is a :class:`SQLiteSemanticStore`, a :class:`RedisSemanticStore`, a
    path for a SQLite store, or an exact cache whose backend is then shared: a
    :class:`~fleetledger.gateway.cache.store.SQLiteExactCache` (its file, a separate table) or a
    :class:`~fleetledger.gateway.cache.store.RedisExactCache` (its client, keys under ``{prefix}sem:``).
    Closing the semantic cache never closes the exact cache. Expired entries
    are never served; a corrupt entry is dropped (logged) and read as a miss; any failure of the
    embedder or the store is logged and read as a miss (or, for ``put``, dropped).
    """

    def __init__(
        self,
        embedder: Embedder,
        store: SemanticStore | SQLiteExactCache | RedisExactCache | Path | str,
        threshold: float = 0.95,
        ttl_s: int = 3600,
        max_entries: int = 10_000,
        *,
        clock: Clock | None = None,
        resync_s: float = 30.0,
    ) -> None:
        if not (isinstance(threshold, int | float) and 0.0 < threshold <= 1.0):
            raise InvalidInput(f"semantic cache: threshold must be in (0, 1], got {threshold!r}")
        check_ttl(ttl_s)
        if type(max_entries) is not int or max_entries <= 0:
            raise InvalidInput(f"semantic cache: max_entries must be a positive integer, got {max_entries!r}")
        self.embedder = embedder
        self.store = as_store(store)
        self.threshold = float(threshold)
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self.resync_s = resync_s
        self.embedder_id = getattr(embedder, "name", type(embedder).__name__)
        self._partitions: dict[str, _Partition] = {}
        self._partition_of: dict[int, str] = {}
        self._last_id = 0
        self._last_resync = time.monotonic()
        self._complain = Complaints(f"semantic cache {self.store.describe()}")
        self._sync_lock: asyncio.Lock | None = None
        self._last_catch_up = -1e18

    def _partition_key(self, namespace: str, model: str, scope: str) -> str:
        return json.dumps([self.embedder_id, namespace, model, scope], separators=(",", ":"))

    async def _embed(self, text: str) -> np.ndarray:
        # The local embedder is fast for short text; anything else (a model, long text) goes to a thread.
        if isinstance(self.embedder, HashingEmbedder) and len(text) <= 1000:
            return _embed_one(self.embedder, text)
        return await asyncio.get_running_loop().run_in_executor(None, _embed_one, self.embedder, text)

    async def _catch_up(self, *, force: bool = False) -> None:
        interval = getattr(self.store, "catch_up_interval_s", 0.0)
        if not force and interval and time.monotonic() - self._last_catch_up < interval:
            return
        if self._sync_lock is None:
            self._sync_lock = asyncio.Lock()
        async with self._sync_lock:
            self._last_catch_up = time.monotonic()
            rows = await self.store.added_since(self._last_id)
            self._index(rows)

    def _index(self, rows: list[tuple[int, str, bytes, int]], *, caught_up: bool = True) -> None:
        for entry_id, partition_key, blob, expires_us in rows:
            if caught_up:  # not for our own new row: other processes' rows below its id are still unseen
                self._last_id = max(self._last_id, entry_id)
            vector = np.frombuffer(blob, dtype=np.float32)
            partition = self._partitions.get(partition_key)
            if partition is None:
                if not partition_key.startswith(json.dumps([self.embedder_id])[:-1]):
                    continue  # another embedder's vectors: never comparable
                partition = self._partitions[partition_key] = _Partition(vector.shape[0])
            if vector.shape[0] != partition.vectors.shape[1]:
                continue
            partition.add(entry_id, vector, expires_us)
            self._partition_of[entry_id] = partition_key

    async def _resync(self) -> None:
        if time.monotonic() - self._last_resync < self.resync_s:
            return
        self._last_resync = time.monotonic()
        live = await self.store.live_ids()
        for entry_id in [i for i in self._partition_of if i not in live and i <= self._last_id]:
            self._forget(entry_id)

    def _forget(self, entry_id: int) -> None:
        partition_key = self._partition_of.pop(entry_id, None)
        if partition_key is not None:
            self._partitions[partition_key].remove(entry_id)

    async def lookup(
        self, namespace: str, model: str, text: str | None, *, threshold: float | None = None
    ) -> tuple[CachedResponse, float] | None:
        """The most similar stored answer and its similarity, or None."""
        if not text:
            return None
        try:
            return await self._lookup(namespace, model, text, self.threshold if threshold is None else threshold)
        except Exception as exc:  # a cache must never fail the request
            self._complain("lookup", exc)
            return None

    async def _lookup(
        self, namespace: str, model: str, text: str, threshold: float
    ) -> tuple[CachedResponse, float] | None:
        scope, question = split_cache_text(text)
        query = await self._embed(question)
        await self._resync()
        await self._catch_up()
        partition = self._partitions.get(self._partition_key(namespace, model, scope))
        if partition is None:
            return None
        now = now_us(self.clock)
        for entry_id, similarity in await partition.best(query, now, threshold):
            row = await self.store.value(entry_id, now)
            if row is None:  # deleted by another process
                self._forget(entry_id)
                continue
            value, expires_us = row
            if expires_us <= now:
                continue
            try:
                response, _ = decode_entry(value)
            except CorruptEntry as exc:
                log.warning("semantic cache %s: dropping corrupt entry %d (%s)", self.store.describe(), entry_id, exc)
                self._forget(entry_id)
                await self.store.drop(entry_id)
                continue
            return response, min(similarity, 1.0)
        return None

    async def put(
        self, namespace: str, model: str, text: str | None, response: CachedResponse, *, ttl_s: int | None = None
    ) -> None:
        """Store an answer under the text of the request it answered."""
        ttl = self.ttl_s if ttl_s is None else ttl_s
        check_ttl(ttl)
        if not text:
            return
        try:
            scope, question = split_cache_text(text)
            vector = await self._embed(question)
            now = now_us(self.clock)
            expires_us = now + ttl * 1_000_000
            partition_key = self._partition_key(namespace, model, scope)
            vector_bytes = vector.astype(np.float32).tobytes()
            entry_id, evicted = await self.store.add(
                partition_key,
                vector_bytes,
                encode_entry(response, expires_us),
                expires_us,
                now,
                self.max_entries,
            )
        except Exception as exc:  # a cache must never fail the request
            self._complain("store", exc)
            return
        for gone in evicted:
            self._forget(gone)
        self._index([(entry_id, partition_key, vector_bytes, expires_us)], caught_up=False)

    async def warm(self) -> None:
        """Load the stored vectors now (at startup) instead of on the first lookup."""
        await self._catch_up(force=True)

    def entries(self) -> int:
        """Entries held in this process's index."""
        return len(self._partition_of)

    async def close(self) -> None:
        await self.store.close()
