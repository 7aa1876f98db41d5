"""The gateway response cache: request keys, the SQLite and Redis exact caches, the semantic cache.

Real SQLite files and a real Redis (``FLEETLEDGER_TEST_REDIS_URL``, default redis://127.0.0.1:6379/0).
Without a reachable Redis the Redis tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from fleetledger.core.errors import InvalidInput
from fleetledger.gateway.cache import (
    CachedResponse,
    RedisExactCache,
    SQLiteExactCache,
    build_exact_cache,
    request_key,
)

REDIS_URL = os.environ.get("FLEETLEDGER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CHAT = "/v1/chat/completions"

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def answer(text: str = "Paris.", *, model: str = "gpt-4o-mini", cost_nanos: int = 1_234_567) -> CachedResponse:
    message = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"message": {"content": text}}]}
    body = json.dumps(message).encode()
    return CachedResponse(
        status=200,
        headers={"content-type": "application/json"},
        body=body,
        provider="openai",
        model=model,
        cost_nanos=cost_nanos,
        usage={"input_tokens": 12, "output_tokens": 3},
        created_us=1_790_000_000_000_000,
    )


def chat(**overrides) -> dict:
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "temperature": 0,
    }
    body.update(overrides)
    return body


# --------------------------------------------------------------------------------------------------
# request_key


def test_key_ignores_key_order_and_delivery_fields():
    base = request_key(CHAT, chat())
    reordered = dict(reversed(list(chat().items())))
    reordered["messages"] = [dict(reversed(list(m.items()))) for m in reordered["messages"]]
    assert request_key(CHAT, reordered) == base
    assert request_key(CHAT, chat(stream=True, stream_options={"include_usage": True})) == base
    assert request_key(CHAT, chat(user="alice", metadata={"run": "7"}, safety_identifier="s")) == base
    assert request_key(CHAT, chat(n=1, presence_penalty=0, frequency_penalty=0.0, logprobs=False)) == base
    assert request_key(CHAT, chat(temperature=0.0)) == base
    assert request_key(CHAT, chat(top_p=None)) == base  # explicit null = not given
    assert request_key(f"{CHAT}/", chat()) == base
    assert len(base) == 64 and int(base, 16) >= 0


def test_key_changes_with_what_changes_the_answer():
    base = request_key(CHAT, chat())
    different = [
        chat(temperature=0.7),
        chat(model="gpt-4o"),
        chat(messages=[{"role": "system", "content": "You answer in two words."}, chat()["messages"][1]]),
        chat(messages=chat()["messages"][1:]),  # no system prompt at all
        chat(messages=[chat()["messages"][0], {"role": "user", "content": "What is the capital of France? "}]),
        chat(tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]),
        chat(n=2),
        chat(n=True),  # not the integer 1
        chat(max_tokens=5),
        chat(seed=1),
        chat(response_format={"type": "json_object"}),
        chat(presence_penalty=0.5),
    ]
    keys = {request_key(CHAT, body) for body in different}
    assert base not in keys
    assert len(keys) == len(different)
    no_temperature = chat()
    del no_temperature["temperature"]
    assert request_key(CHAT, no_temperature) != base
    assert request_key(CHAT, no_temperature) != request_key(CHAT, chat(temperature=1))  # defaults differ by model
    assert request_key("/v1/responses", chat()) != base
    assert request_key(CHAT, chat(), namespace="tenant-a") != request_key(CHAT, chat(), namespace="tenant-b")
    assert request_key(CHAT, chat(), namespace="tenant-a") != base
    embeddings = "/v1/embeddings"
    one = {"model": "text-embedding-3-small", "input": "hello"}
    assert request_key(embeddings, {**one, "encoding_format": "float"}) == request_key(embeddings, one)
    assert request_key(embeddings, {**one, "encoding_format": "base64"}) != request_key(embeddings, one)


def test_key_rejects_bodies_that_are_not_json():
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        request_key(CHAT, ["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="not plain JSON"):
        request_key(CHAT, chat(temperature=float("nan")))
    with pytest.raises(InvalidInput, match="not plain JSON"):
        request_key(CHAT, chat(extra=object()))


def test_entry_round_trip_and_corruption_detected():
    from fleetledger.gateway.cache import CorruptEntry

    response = answer()
    assert CachedResponse.from_bytes(response.to_bytes()) == response
    data = response.to_bytes()
    for damaged in (data[:-1], data[:10], b"", b"XXXX" + data[4:], data[:-2] + b"!}"):
        with pytest.raises(CorruptEntry):
            CachedResponse.from_bytes(damaged)


# --------------------------------------------------------------------------------------------------
# SQLite exact cache


@pytest.fixture
def sqlite_cache(tmp_path, clock):
    cache = SQLiteExactCache(tmp_path / "cache.db", clock=clock)
    yield cache
    cache.close_now()


async def test_sqlite_get_put_and_miss(sqlite_cache):
    key = request_key(CHAT, chat())
    assert await sqlite_cache.get(key) is None
    await sqlite_cache.put(key, answer(), ttl_s=60)
    assert await sqlite_cache.get(key) == answer()
    await sqlite_cache.put(key, answer("Lyon?"), ttl_s=60)  # replaced, counted once
    assert (await sqlite_cache.get(key)).body == answer("Lyon?").body
    assert sqlite_cache.stats()["entries"] == 1
    assert await sqlite_cache.get(request_key(CHAT, chat(temperature=1))) is None
    with pytest.raises(InvalidInput, match="ttl_s"):
        await sqlite_cache.put(key, answer(), ttl_s=0)


async def test_sqlite_ttl_expiry_with_injected_clock(sqlite_cache, clock):
    key = request_key(CHAT, chat())
    await sqlite_cache.put(key, answer(), ttl_s=60)
    clock.now += timedelta(seconds=59)
    assert await sqlite_cache.get(key) is not None
    clock.now += timedelta(seconds=1)
    assert await sqlite_cache.get(key) is None  # expired at exactly ttl_s
    sqlite_cache.flush()
    assert sqlite_cache.stats()["entries"] == 0  # and dropped from the file


async def test_sqlite_evicts_least_recently_used_by_entries(tmp_path, clock):
    cache = SQLiteExactCache(tmp_path / "cache.db", max_bytes=None, max_entries=10, clock=clock)
    try:
        for i in range(10):
            await cache.put(f"k{i}", answer(f"a{i}"), ttl_s=3600)
            clock.now += timedelta(seconds=2)
        assert await cache.get("k0") is not None  # k0 is now recently used; k1 is the oldest
        cache.flush()
        clock.now += timedelta(seconds=2)
        await cache.put("k10", answer("a10"), ttl_s=3600)  # 11 > 10: evict down to 9
        kept = {f"k{i}" for i in range(11) if await cache.get(f"k{i}") is not None}
        assert kept == {"k0", "k10"} | {f"k{i}" for i in range(3, 10)}  # k1, k2 evicted
        assert cache.stats()["entries"] == 9
    finally:
        cache.close_now()


async def test_sqlite_evicts_by_bytes_and_prefers_expired(tmp_path, clock):
    size = len(answer("x" * 1000).to_bytes(expires_us=1_790_000_000_000_000))  # same digits as stored
    cache = SQLiteExactCache(tmp_path / "cache.db", max_bytes=size * 20, clock=clock)
    try:
        await cache.put("short-lived", answer("x" * 1000), ttl_s=5)
        for i in range(19):
            clock.now += timedelta(seconds=1)
            await cache.put(f"k{i}", answer("x" * 1000), ttl_s=3600)
        assert cache.stats()["bytes"] == size * 20
        clock.now += timedelta(seconds=10)  # short-lived expired, still stored
        await cache.put("k19", answer("x" * 1000), ttl_s=3600)
        stats = cache.stats()
        assert stats["bytes"] <= size * 18  # evicted to 90%: the expired one, then the oldest live
        assert await cache.get("k19") is not None
        assert await cache.get("k0") is None and await cache.get("k1") is None
        assert await cache.get("k2") is not None
        # Too big for the cache at all (over a quarter of max_bytes): not stored, no error.
        await cache.put("huge", answer("y" * size * 6), ttl_s=60)
        assert await cache.get("huge") is None
        with sqlite3.connect(tmp_path / "cache.db") as conn:
            actual = conn.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM cache_entries").fetchone()
        assert actual == (cache.stats()["bytes"], cache.stats()["entries"])
    finally:
        cache.close_now()


async def test_sqlite_corrupt_entry_is_a_logged_miss(sqlite_cache, tmp_path, caplog):
    key = request_key(CHAT, chat())
    await sqlite_cache.put(key, answer(), ttl_s=60)
    with sqlite3.connect(tmp_path / "cache.db") as conn:
        conn.execute("UPDATE cache_entries SET value = substr(value, 1, length(value) - 5) WHERE key = ?", (key,))
    with caplog.at_level(logging.WARNING, logger="fleetledger.gateway.cache.store"):
        assert await sqlite_cache.get(key) is None
    assert "corrupt entry" in caplog.text
    sqlite_cache.flush()
    assert sqlite_cache.stats()["entries"] == 0
    await sqlite_cache.put(key, answer(), ttl_s=60)
    assert await sqlite_cache.get(key) == answer()


async def test_sqlite_unreadable_file_is_a_miss_not_an_error(tmp_path, caplog):
    cache = SQLiteExactCache(tmp_path / "cache.db")
    await cache.put("k", answer(), ttl_s=60)
    with sqlite3.connect(tmp_path / "cache.db") as conn:
        conn.execute("DROP TABLE cache_entries")
    with caplog.at_level(logging.WARNING, logger="fleetledger.gateway.cache.store"):
        assert await cache.get("k") is None
        await cache.put("k", answer(), ttl_s=60)  # logged and dropped
    assert "read failed" in caplog.text and "write failed" in caplog.text
    await cache.close()
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(InvalidInput, match="not a usable cache file"):
        SQLiteExactCache(tmp_path / "junk.db")


_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from fleetledger.gateway.cache import CachedResponse, SQLiteExactCache

    def entry(body):
        return CachedResponse(200, {}, body.encode(), "openai", "m", len(body), {}, 0)

    async def main(path, tag):
        cache = SQLiteExactCache(path, max_bytes=None, max_entries=150)
        seen = await cache.get("from-parent")
        print("saw-parent" if seen is not None and seen.body == b"parent" else "no-parent", flush=True)
        sys.stdin.readline()  # everyone ready: all processes write at once
        for i in range(40):  # 3 x 40 + 1 entries: under the bound, nothing may be lost
            await cache.put(f"{tag}-{i}", entry(f"{tag}-{i}"), ttl_s=600)
            got = await cache.get(f"{tag}-{i}")
            assert got is not None and got.body == f"{tag}-{i}".encode(), (i, got)
        print("written", flush=True)
        sys.stdin.readline()
        for i in range(200):  # now well over the bound, everyone evicting
            await cache.put(f"{tag}-more-{i}", entry(f"{tag}-more-{i}"), ttl_s=600)
        await cache.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_two_processes_share_one_sqlite_file(tmp_path):
    path = tmp_path / "shared.db"
    parent = SQLiteExactCache(path, max_bytes=None, max_entries=150)
    children: list[asyncio.subprocess.Process] = []

    def entry(body: str) -> CachedResponse:
        return CachedResponse(200, {}, body.encode(), "openai", "m", len(body), {}, 0)

    async def tell_children() -> None:
        for child in children:
            child.stdin.write(b"go\n")
            await child.stdin.drain()

    async def hear(expected: str) -> None:
        for child in children:
            line = (await child.stdout.readline()).decode().strip()
            if line != expected:
                await child.wait()
                raise AssertionError(f"child said {line!r}: {(await child.stderr.read()).decode()}")

    try:
        await parent.put("from-parent", entry("parent"), ttl_s=600)
        for tag in ("alpha", "beta"):
            children.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    _CHILD,
                    str(path),
                    tag,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        await hear("saw-parent")  # each child read the parent's entry
        await tell_children()
        for i in range(40):  # the parent writes at the same time
            await parent.put(f"gamma-{i}", entry(f"gamma-{i}"), ttl_s=600)
        await hear("written")
        for tag in ("alpha", "beta"):  # everything the children wrote is readable here
            for i in range(40):
                got = await parent.get(f"{tag}-{i}")
                assert got is not None and got.body == f"{tag}-{i}".encode() and got.cost_nanos == len(got.body)
        await tell_children()
        for i in range(200):
            await parent.put(f"gamma-more-{i}", entry(f"gamma-more-{i}"), ttl_s=600)
        for child in children:
            _, err = await child.communicate()
            assert child.returncode == 0, err.decode()
        parent.flush()
        with sqlite3.connect(path) as conn:
            actual = conn.execute("SELECT SUM(size), COUNT(*) FROM cache_entries").fetchone()
        stats = parent.stats()
        assert (stats["bytes"], stats["entries"]) == actual  # totals exact across processes
        assert 0 < stats["entries"] <= 150  # 721 puts from 3 processes, bound held
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.communicate()
        parent.close_now()


# --------------------------------------------------------------------------------------------------
# Redis exact cache


def _redis_or_skip() -> None:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=1.0)
        client.ping()
        client.close()
    except (redis.RedisError, OSError) as exc:
        message = f"Redis at {REDIS_URL} is not reachable ({exc}); set FLEETLEDGER_TEST_REDIS_URL"
        if IN_CI:
            pytest.fail(f"CI=true but {message}: Redis tests are required in CI")
        pytest.skip(f"Redis tests skipped: {message}")


@pytest.fixture
async def redis_prefix():
    """A unique key prefix per test; every key under it is deleted afterwards."""
    _redis_or_skip()
    import redis.asyncio as redis_asyncio

    prefix = f"fleetledger-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_redis_get_put_ttl(redis_prefix, clock):
    cache = RedisExactCache(REDIS_URL, prefix=redis_prefix, clock=clock)
    try:
        key = request_key(CHAT, chat())
        assert await cache.get(key) is None
        await cache.put(key, answer(), ttl_s=60)
        assert await cache.get(key) == answer()
        ttl = await cache.redis.ttl(f"{redis_prefix}e:{key}")
        assert 55 <= ttl <= 60  # EX set on the key
        clock.now += timedelta(seconds=60)
        assert await cache.get(key) is None  # our clock says expired: never served
        await cache.put("short", answer(), ttl_s=1)
        await asyncio.sleep(1.3)
        assert await cache.redis.exists(f"{redis_prefix}e:short") == 0  # and Redis expired it itself
    finally:
        await cache.close()


async def test_redis_corrupt_entry_is_a_logged_miss(redis_prefix, caplog):
    cache = RedisExactCache(REDIS_URL, prefix=redis_prefix)
    try:
        await cache.put("k", answer(), ttl_s=60)
        await cache.redis.set(f"{redis_prefix}e:k", answer().to_bytes()[:-3], ex=60)
        with caplog.at_level(logging.WARNING, logger="fleetledger.gateway.cache.store"):
            assert await cache.get("k") is None
        assert "corrupt entry" in caplog.text
        assert await cache.redis.exists(f"{redis_prefix}e:k") == 0
    finally:
        await cache.close()


async def test_redis_byte_bound_evicts_least_recently_used(redis_prefix, clock):
    size = len(answer("x" * 500).to_bytes(expires_us=1_790_000_000_000_000))  # same digits as stored
    cache = RedisExactCache(REDIS_URL, prefix=redis_prefix, max_bytes=size * 10, clock=clock)
    try:
        for i in range(10):
            await cache.put(f"k{i}", answer("x" * 500), ttl_s=600)
            clock.now += timedelta(seconds=1)
        assert (await cache.stats())["bytes"] == size * 10
        assert await cache.get("k0") is not None  # refreshed: k1 is now the oldest
        clock.now += timedelta(seconds=1)
        await cache.put("k10", answer("x" * 500), ttl_s=600)
        stats = await cache.stats()
        assert stats["bytes"] == size * 9 and stats["entries"] == 9
        assert await cache.get("k1") is None and await cache.get("k2") is None
        assert await cache.get("k0") is not None and await cache.get("k10") is not None
    finally:
        await cache.close()


async def test_redis_unreachable_is_a_miss(caplog):
    cache = RedisExactCache("redis://127.0.0.1:1/0")
    try:
        with caplog.at_level(logging.WARNING, logger="fleetledger.gateway.cache.store"):
            assert await cache.get("k") is None
            await cache.put("k", answer(), ttl_s=60)
        assert "read failed" in caplog.text and "write failed" in caplog.text
    finally:
        await cache.close()


async def test_build_exact_cache(tmp_path, redis_prefix):
    default = build_exact_cache(None, path=tmp_path / "a.db", max_bytes=10_000)
    assert isinstance(default, SQLiteExactCache) and default.path == tmp_path / "a.db"
    named = build_exact_cache(f"sqlite:///{tmp_path / 'b.db'}", path=tmp_path / "a.db", max_bytes=10_000)
    assert isinstance(named, SQLiteExactCache) and named.path == tmp_path / "b.db" and named.max_bytes == 10_000
    remote = build_exact_cache(REDIS_URL, path=tmp_path / "a.db", max_bytes=10_000, prefix=redis_prefix)
    assert isinstance(remote, RedisExactCache) and remote.max_bytes == 10_000
    for cache in (default, named, remote):
        await cache.put("k", answer(), ttl_s=5)
        assert await cache.get("k") == answer()
        await cache.close()
    with pytest.raises(InvalidInput, match="cache URL"):
        build_exact_cache("memcached://x", path=Path("x.db"), max_bytes=1)


# --------------------------------------------------------------------------------------------------
# cache_text


def test_cache_text_is_the_last_user_turn_with_a_scope():
    from fleetledger.gateway.cache import cache_text, split_cache_text

    text = cache_text(CHAT, chat())
    scope, question = split_cache_text(text)
    assert question == "What is the capital of France?" and len(scope) == 32
    # Same scope when only the question or ignored fields change; different when anything else does.
    other_question = chat(messages=[chat()["messages"][0], {"role": "user", "content": "And of Spain?"}])
    assert split_cache_text(cache_text(CHAT, other_question))[0] == scope
    assert split_cache_text(cache_text(CHAT, chat(stream=True, user="bob")))[0] == scope
    assert split_cache_text(cache_text(CHAT, chat(model="gpt-4o")))[0] == scope  # the model partitions separately
    changed = [
        chat(messages=[{"role": "system", "content": "Be verbose."}, chat()["messages"][1]]),
        chat(
            messages=[
                *chat()["messages"][:1],
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
                chat()["messages"][1],
            ]
        ),
        chat(tools=[{"type": "function", "function": {"name": "lookup"}}]),
        chat(max_tokens=5),
        chat(response_format={"type": "json_object"}),
    ]
    scopes = {split_cache_text(cache_text(CHAT, body))[0] for body in changed}
    assert scope not in scopes and len(scopes) == len(changed)
    # Numbers in the question are part of the scope: near-identical text, different answer.
    refund = split_cache_text(cache_text(CHAT, chat(messages=[{"role": "user", "content": "Refund order 48213"}])))[0]
    other = split_cache_text(cache_text(CHAT, chat(messages=[{"role": "user", "content": "Refund order 48214"}])))[0]
    assert refund != other
    # Content blocks of text read like a string.
    blocks = chat(
        messages=[
            chat()["messages"][0],
            {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]},
        ]
    )
    assert cache_text(CHAT, blocks) == text


def test_cache_text_refuses_what_must_not_be_answered_by_similarity():
    from fleetledger.gateway.cache import cache_text

    system, user = chat()["messages"]
    refused = [
        chat(temperature=0.7),
        {k: v for k, v in chat().items() if k != "temperature"},  # absent = provider default 1.0
        chat(n=2),
        chat(messages=[system, user, {"role": "assistant", "content": "Paris"}]),  # last turn not the user's
        chat(messages=[system, user, {"role": "assistant", "tool_calls": []}, {"role": "tool", "content": "{}"}]),
        chat(messages=[system, {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
        chat(messages=[system, {"role": "user", "content": "   "}]),
        chat(messages=[]),
    ]
    for body in refused:
        assert cache_text(CHAT, body) is None, body
    assert cache_text(CHAT, chat(temperature=0.7), max_temperature=None) is not None  # operator's choice
    assert cache_text(CHAT, chat(temperature=0.2), max_temperature=0.5) is not None
    assert cache_text("/v1/models", {}) is None
    assert cache_text("/v1/completions", {"prompt": "x", "temperature": 0}) is None
    # Anthropic messages: system is scope; a tool_result last turn is refused.
    anthropic = {
        "model": "claude-sonnet-4",
        "max_tokens": 100,
        "temperature": 0,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Capital of France?"}],
    }
    assert cache_text("/v1/messages", anthropic).endswith("\nCapital of France?")
    assert cache_text("/v1/messages", {**anthropic, "system": "Be long."}) != cache_text("/v1/messages", anthropic)
    tool_result = {
        **anthropic,
        "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "1"}]}],
    }
    assert cache_text("/v1/messages", tool_result) is None
    # Responses: string input, or a list whose last item is a user message; instructions are scope.
    responses = {"model": "gpt-4o", "temperature": 0, "instructions": "Be brief.", "input": "Capital of France?"}
    assert cache_text("/v1/responses", responses).endswith("\nCapital of France?")
    listed = {
        **responses,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Capital of France?"}]}],
    }
    assert cache_text("/v1/responses", listed).endswith("\nCapital of France?")
    assert (
        cache_text("/v1/responses", {**responses, "input": [{"type": "function_call_output", "output": "1"}]}) is None
    )
    # Embeddings: no temperature rule; text inputs only.
    assert cache_text("/v1/embeddings", {"model": "e", "input": "hello world"}).endswith("\nhello world")
    assert cache_text("/v1/embeddings", {"model": "e", "input": ["a", "b"]}).endswith("\na\nb")
    assert cache_text("/v1/embeddings", {"model": "e", "input": [[1, 2, 3]]}) is None


# --------------------------------------------------------------------------------------------------
# Semantic cache


def test_hashing_embedder_is_deterministic_and_normalized():
    from fleetledger.gateway.cache import Embedder, HashingEmbedder

    embedder = HashingEmbedder(dim=256)
    assert isinstance(embedder, Embedder)
    first, second = embedder.embed(["Write a haiku about autumn leaves", "Write a haiku about autumn leaves"])
    assert first == second and len(first) == 256
    assert abs(sum(x * x for x in first) - 1.0) < 1e-5
    # Same result in a fresh process (no salted hash()).
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fleetledger.gateway.cache import HashingEmbedder as H; "
            "print(repr(H(dim=256).embed(['Write a haiku about autumn leaves'])[0][:5]))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == repr(first[:5])
    assert embedder.embed([""])[0] == [0.0] * 256


@pytest.fixture
def semantic(tmp_path, clock):
    from fleetledger.gateway.cache import HashingEmbedder, SemanticCache

    caches = []

    def make(**options):
        options.setdefault("clock", clock)
        cache = SemanticCache(HashingEmbedder(), tmp_path / "semantic.db", **options)
        caches.append(cache)
        return cache

    yield make
    for cache in caches:
        cache.store.close_now()


def ask(question: str, **overrides) -> str:
    from fleetledger.gateway.cache import cache_text

    body = chat(messages=[{"role": "system", "content": "You are a poet."}, {"role": "user", "content": question}])
    body.update(overrides)
    return cache_text(CHAT, body)


async def test_semantic_near_duplicate_hits_and_unrelated_misses(semantic):
    cache = semantic(threshold=0.85)
    await cache.put("tenant-a", "gpt-4o-mini", ask("Write a haiku about autumn leaves"), answer("Red leaves fall"))
    hit = await cache.lookup("tenant-a", "gpt-4o-mini", ask("Write a haiku about the autumn leaves"))
    assert hit is not None
    response, similarity = hit
    assert response == answer("Red leaves fall") and 0.85 <= similarity < 1.0
    exact = await cache.lookup("tenant-a", "gpt-4o-mini", ask("write a haiku about AUTUMN leaves!"))
    assert exact is not None and exact[1] == pytest.approx(1.0, abs=1e-5)  # case and punctuation only
    assert await cache.lookup("tenant-a", "gpt-4o-mini", ask("How do I bake sourdough bread at home?")) is None
    assert await cache.lookup("tenant-a", "gpt-4o-mini", ask("Write a limerick about a cat in Peru")) is None


async def test_semantic_cache_takes_any_store_with_the_protocol_methods(tmp_path, clock):
    """A custom store implementing exactly SemanticStore is accepted (it was refused for lacking a
    ``touch`` method the protocol does not have); one missing a protocol method is refused."""
    from fleetledger.gateway.cache import HashingEmbedder, SemanticCache, SQLiteSemanticStore

    inner = SQLiteSemanticStore(tmp_path / "custom.db")

    class Custom:  # delegates each protocol method, and nothing else
        def describe(self) -> str:
            return "custom"

        async def added_since(self, last_id):
            return await inner.added_since(last_id)

        async def value(self, entry_id, now):
            return await inner.value(entry_id, now)

        async def live_ids(self):
            return await inner.live_ids()

        async def add(self, partition, vector, value, expires_us, now, max_entries):
            return await inner.add(partition, vector, value, expires_us, now, max_entries)

        async def drop(self, entry_id):
            await inner.drop(entry_id)

        async def close(self):
            await inner.close()

    try:
        cache = SemanticCache(HashingEmbedder(), Custom(), threshold=0.85, clock=clock)
        await cache.put("tenant-a", "gpt-4o-mini", ask("Write a haiku about autumn leaves"), answer("Red leaves fall"))
        hit = await cache.lookup("tenant-a", "gpt-4o-mini", ask("Write a haiku about the autumn leaves"))
        assert hit is not None and hit[0] == answer("Red leaves fall")
        del Custom.drop
        with pytest.raises(InvalidInput, match="cannot store entries in a Custom"):
            SemanticCache(HashingEmbedder(), Custom(), clock=clock)
    finally:
        inner.close_now()


async def test_semantic_never_crosses_model_namespace_or_scope(semantic):
    cache = semantic(threshold=0.85)
    text = ask("Write a haiku about autumn leaves")
    await cache.put("tenant-a", "gpt-4o-mini", text, answer("Red leaves fall"))
    assert await cache.lookup("tenant-a", "gpt-4o-mini", text) is not None
    assert await cache.lookup("tenant-b", "gpt-4o-mini", text) is None
    assert await cache.lookup("tenant-a", "gpt-4o", text) is None
    assert await cache.lookup("tenant-a", "gpt-4o-mini", ask("Write a haiku about autumn leaves", max_tokens=9)) is None
    other_system = cache_text_with_system("You are a lawyer.", "Write a haiku about autumn leaves")
    assert await cache.lookup("tenant-a", "gpt-4o-mini", other_system) is None


def cache_text_with_system(system: str, question: str) -> str:
    from fleetledger.gateway.cache import cache_text

    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    return cache_text(CHAT, chat(messages=messages))


async def test_semantic_threshold_respected(semantic):
    cache = semantic()  # default threshold 0.95
    await cache.put("t", "m", ask("Write a haiku about autumn leaves"), answer())
    paraphrase = ask("Write a haiku about the autumn leaves")
    assert await cache.lookup("t", "m", paraphrase) is None  # ~0.9 < 0.95
    loose = await cache.lookup("t", "m", paraphrase, threshold=0.85)
    assert loose is not None
    assert await cache.lookup("t", "m", paraphrase, threshold=loose[1] + 1e-4) is None
    assert await cache.lookup("t", "m", paraphrase, threshold=loose[1] - 1e-4) is not None
    with pytest.raises(InvalidInput, match="threshold"):
        semantic(threshold=1.5)


async def test_semantic_ttl_and_max_entries(semantic, clock):
    cache = semantic(ttl_s=60, max_entries=10)
    await cache.put("t", "m", ask("question number zero"), answer("0"))
    clock.now += timedelta(seconds=59)
    assert await cache.lookup("t", "m", ask("question number zero")) is not None
    clock.now += timedelta(seconds=1)
    assert await cache.lookup("t", "m", ask("question number zero")) is None  # expired: never served
    await cache.put("t", "m", ask("question number zero"), answer("0"), ttl_s=3600)
    for i in range(1, 12):
        clock.now += timedelta(seconds=2)
        await cache.put("t", "m", ask(f"entry {i} about topic {i * 7919}"), answer(str(i)))
    with sqlite3.connect(cache.store.path) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM semantic_entries").fetchone()
    assert count <= 10 and cache.entries() == count
    assert await cache.lookup("t", "m", ask("entry 11 about topic 87109")) is not None  # newest kept
    assert await cache.lookup("t", "m", ask("entry 1 about topic 7919")) is None  # oldest evicted


async def test_semantic_corrupt_entry_and_shared_file(semantic, caplog):
    writer, reader = semantic(threshold=0.9), semantic(threshold=0.9)  # two caches on one file
    text = ask("Write a haiku about autumn leaves")
    await writer.put("t", "m", text, answer("Red leaves fall"))
    hit = await reader.lookup("t", "m", text)  # written elsewhere, found here
    assert hit is not None and hit[0] == answer("Red leaves fall")
    with sqlite3.connect(writer.store.path) as conn:
        conn.execute("UPDATE semantic_entries SET value = X'00010203'")
    with caplog.at_level(logging.WARNING, logger="fleetledger.gateway.cache.store"):
        assert await reader.lookup("t", "m", text) is None
    assert "corrupt entry" in caplog.text
    reader.store.flush()
    with sqlite3.connect(writer.store.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM semantic_entries").fetchone() == (0,)
    assert await writer.lookup("t", "m", text) is None  # deleted by the other: a miss, not an error
    assert await writer.lookup("t", "m", None) is None


async def test_semantic_cache_shares_an_exact_cache_backend(tmp_path, clock):
    """The gateway hands the semantic cache its exact cache: same file (own table), same lifetime rules."""
    from fleetledger.gateway.cache import HashingEmbedder, SemanticCache

    exact = SQLiteExactCache(tmp_path / "gateway-cache.db", clock=clock)
    cache = SemanticCache(HashingEmbedder(), exact, threshold=0.9, clock=clock)
    try:
        await cache.put("t", "m", ask("Write a haiku about autumn leaves"), answer("Red leaves fall"))
        assert (await cache.lookup("t", "m", ask("write a haiku about autumn leaves"))) is not None
        await cache.close()
        await exact.put("k", answer(), ttl_s=60)  # closing the semantic cache left the exact one open
        assert await exact.get("k") == answer()
    finally:
        exact.close_now()


async def test_semantic_on_redis(redis_prefix, clock, caplog):
    from fleetledger.gateway.cache import HashingEmbedder, RedisSemanticStore, SemanticCache

    exact = RedisExactCache(REDIS_URL, prefix=redis_prefix, clock=clock)
    first = SemanticCache(HashingEmbedder(), exact, threshold=0.85, ttl_s=60, max_entries=5, clock=clock)
    second = SemanticCache(
        HashingEmbedder(), RedisSemanticStore(REDIS_URL, prefix=f"{redis_prefix}sem:"), threshold=0.85, clock=clock
    )
    try:
        text = ask("Write a haiku about autumn leaves")
        await first.put("tenant-a", "gpt-4o-mini", text, answer("Red leaves fall"))
        hit = await second.lookup("tenant-a", "gpt-4o-mini", ask("Write a haiku about the autumn leaves"))
        assert hit is not None and hit[0] == answer("Red leaves fall")  # written by one, found by the other
        assert await second.lookup("tenant-b", "gpt-4o-mini", text) is None
        assert await second.lookup("tenant-a", "gpt-4o", text) is None
        assert await second.lookup("tenant-a", "gpt-4o-mini", ask("How do I bake sourdough bread?")) is None
        ttl = await exact.redis.ttl(f"{redis_prefix}sem:e:1")
        assert 55 <= ttl <= 60
        clock.now += timedelta(seconds=60)
        assert await second.lookup("tenant-a", "gpt-4o-mini", text) is None  # expired: never served
        for i in range(7):  # the expired one is forgotten, then the bound of 5 holds
            clock.now += timedelta(seconds=1)
            await first.put("tenant-a", "gpt-4o-mini", ask(f"entry {i} about topic {i * 7919}"), answer(str(i)))
        assert await exact.redis.zcard(f"{redis_prefix}sem:ids") <= 5
        await asyncio.sleep(0.3)  # another process's entries are picked up every 0.25 s on Redis
        assert await second.lookup("tenant-a", "gpt-4o-mini", ask("entry 6 about topic 47514")) is not None
        assert await second.lookup("tenant-a", "gpt-4o-mini", ask("entry 0 about topic 0")) is None
        newest = max(int(i) for i in await exact.redis.zrange(f"{redis_prefix}sem:ids", 0, -1))
        await exact.redis.hset(f"{redis_prefix}sem:e:{newest}", "d", b"garbage")
        with caplog.at_level(logging.WARNING, logger="fleetledger.gateway.cache.store"):
            assert await second.lookup("tenant-a", "gpt-4o-mini", ask("entry 6 about topic 47514")) is None
        assert "corrupt entry" in caplog.text
        assert await exact.redis.exists(f"{redis_prefix}sem:e:{newest}") == 0
    finally:
        await first.close()
        await second.close()
        await exact.close()


async def test_semantic_failures_are_misses_and_warm_loads_the_index(tmp_path, clock, caplog):
    from fleetledger.gateway.cache import HashingEmbedder, SemanticCache

    class BrokenEmbedder:
        name = "broken"

        def embed(self, texts):
            raise RuntimeError("model server down")

    broken = SemanticCache(BrokenEmbedder(), tmp_path / "s.db", clock=clock)
    with caplog.at_level(logging.WARNING, logger="fleetledger.gateway.cache.store"):
        await broken.put("t", "m", ask("Write a haiku"), answer())  # logged, dropped
        assert await broken.lookup("t", "m", ask("Write a haiku")) is None  # logged, a miss
    assert "model server down" in caplog.text
    await broken.close()

    writer = SemanticCache(HashingEmbedder(), tmp_path / "s.db", clock=clock)
    for i in range(3):
        await writer.put("t", "m", ask(f"question {'abc'[i]}"), answer())
    fresh = SemanticCache(HashingEmbedder(), tmp_path / "s.db", clock=clock)
    assert fresh.entries() == 0
    await fresh.warm()
    assert fresh.entries() == 3
    await writer.close()
    await fresh.close()
