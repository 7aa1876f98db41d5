"""The gateway's response cache: exact (a normalized request hash) and semantic (a similar question).

Every public name of the cache is importable from here:

* :mod:`~fleetledger.gateway.cache.codec`: :class:`CachedResponse` (one stored answer, with
  ``to_bytes()`` / ``from_bytes()``), :class:`CorruptEntry`, and the exact key :func:`request_key`
  (which request fields are ignored, and why);
* :mod:`~fleetledger.gateway.cache.store`: the exact caches, :class:`SQLiteExactCache`,
  :class:`RedisExactCache` and :func:`build_exact_cache`;
* :mod:`~fleetledger.gateway.cache.semantic`: :func:`cache_text`, the embedders and
  :class:`SemanticCache`;
* :mod:`~fleetledger.gateway.cache.semantic_store`: where the semantic cache keeps its entries
  (:class:`SQLiteSemanticStore`, :class:`RedisSemanticStore`);
* :mod:`~fleetledger.gateway.cache.lookup`: :class:`ResponseCaching`, the gateway's use of both per
  request.

(:mod:`~fleetledger.gateway.cache.backend` holds what the backends share: the SQLite file base class
and the logging of a failing backend.)

The interface, beyond the plain get / put / close of each cache:

* ``SQLiteExactCache`` / ``RedisExactCache`` / ``build_exact_cache`` take optional keywords
  (``max_entries``, ``max_entry_bytes``, ``clock``, ``prefix``...).
* ``SemanticCache.lookup`` takes an optional ``threshold=`` and ``put`` an optional ``ttl_s=``, so a
  cache policy's own threshold and TTL can be used per request; ``SemanticCache`` also has ``close()``.
* ``cache_text`` takes an optional ``max_temperature=`` and returns the *last user turn* preceded by
  a one-line scope fingerprint of everything else in the request (system prompt, earlier turns,
  tools, sampling parameters). ``SemanticCache`` partitions by that fingerprint, so a hit only ever
  answers the same conversation, system prompt, tools and parameters with a similar last question.
  Pass the text through unchanged.

Design and measurements: ``docs/decisions/0013-gateway-cache.md``; operator view: ``docs/gateway.md``.
"""

from fleetledger.gateway.cache.codec import (
    DEFAULT_VALUES,
    IGNORED_FIELDS,
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
    request_key,
)
from fleetledger.gateway.cache.lookup import ResponseCaching
from fleetledger.gateway.cache.semantic import Embedder, HashingEmbedder, SemanticCache, cache_text, split_cache_text
from fleetledger.gateway.cache.semantic_store import RedisSemanticStore, SemanticStore, SQLiteSemanticStore, as_store
from fleetledger.gateway.cache.store import ExactCache, RedisExactCache, SQLiteExactCache, build_exact_cache

__all__ = [
    # codec
    "Clock",
    "CachedResponse",
    "CorruptEntry",
    "encode_entry",
    "decode_entry",
    "canonical_endpoint",
    "canonical_params",
    "canonical_json",
    "request_key",
    "check_ttl",
    "now_us",
    "IGNORED_FIELDS",
    "DEFAULT_VALUES",
    # store
    "ExactCache",
    "SQLiteExactCache",
    "RedisExactCache",
    "build_exact_cache",
    # semantic
    "cache_text",
    "split_cache_text",
    "Embedder",
    "HashingEmbedder",
    "SemanticCache",
    # semantic_store
    "SemanticStore",
    "SQLiteSemanticStore",
    "RedisSemanticStore",
    "as_store",
    # lookup
    "ResponseCaching",
]
