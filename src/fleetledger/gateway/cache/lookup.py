"""The gateway's use of the response cache (exact and semantic): lookups and writes per request.

Exact first (a normalized request hash), then, for keys or policies in ``semantic`` mode, the most
similar earlier question of the same conversation. Entries are partitioned by virtual key. A cache
failure is a miss, never an error for the caller. Caches are opened on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleetledger.gateway.cache.codec import request_key
from fleetledger.gateway.cache.semantic import HashingEmbedder, SemanticCache, cache_text
from fleetledger.gateway.cache.store import build_exact_cache
from fleetledger.gateway.config import CacheSettings

__all__ = ["ResponseCaching"]

log = logging.getLogger("fleetledger.gateway")


class ResponseCaching:
    def __init__(self, settings: CacheSettings, *, exact: Any = None, semantic: Any = None) -> None:
        self.settings = settings
        self._exact_cache = exact
        self._semantic_cache = semantic

    def exact(self) -> Any:
        if self._exact_cache is None:
            settings = self.settings.exact
            self._exact_cache = build_exact_cache(settings.url, path=Path(settings.path), max_bytes=settings.max_bytes)
        return self._exact_cache

    def semantic(self) -> Any:
        if self._semantic_cache is None:
            settings = self.settings.semantic
            self._semantic_cache = SemanticCache(
                HashingEmbedder(),
                self.exact(),
                threshold=settings.threshold,
                ttl_s=settings.ttl_s,
                max_entries=settings.max_entries,
            )
        return self._semantic_cache

    @staticmethod
    def key(path: str, body: Mapping[str, Any], namespace: str) -> str:
        return request_key(path, body, namespace=namespace)

    async def lookup(
        self,
        key: str,
        path: str,
        body: Mapping[str, Any],
        *,
        namespace: str,
        model: str,
        mode: str,
        threshold: float | None,
    ) -> tuple[Any, str] | None:
        """(cached response, ``exact`` or ``semantic``), or None on a miss (or a failing cache)."""
        try:
            found = await self.exact().get(key)
            if found is not None:
                return found, "exact"
            if mode == "semantic":
                text = cache_text(path, body)
                if text is not None:
                    hit = await self.semantic().lookup(namespace, model, text, threshold=threshold)
                    if hit is not None:
                        return hit[0], "semantic"
        except Exception:
            log.warning("cache lookup failed; calling the upstream", exc_info=True)
        return None

    async def store(
        self,
        key: str,
        path: str,
        body: Mapping[str, Any],
        entry: Any,
        *,
        namespace: str,
        model: str,
        mode: str,
        ttl_s: int,
    ) -> None:
        try:
            await self.exact().put(key, entry, ttl_s)
            if mode == "semantic":
                text = cache_text(path, body)
                if text is not None:
                    await self.semantic().put(namespace, model, text, entry, ttl_s=ttl_s)
        except Exception:
            log.warning("cache write failed", exc_info=True)

    async def close(self) -> None:
        for cache in (self._semantic_cache, self._exact_cache):
            if cache is not None:
                await cache.close()
