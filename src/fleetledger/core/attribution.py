"""Default attribution for recorded events: ``with ledger.attribute(department=..., agent=...):``.

One context (a ContextVar, so it is local to each thread and asyncio task) shared by the local
``Ledger`` and the HTTP SDK: blocks nest, inner values win, tags merge.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from fleetledger.core.errors import InvalidEvent
from fleetledger.core.usage import DIMENSIONS

__all__ = ["attribute", "with_defaults", "ATTRIBUTABLE"]

_ATTRIBUTION: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "fleetledger_attribution", default=MappingProxyType({})
)
ATTRIBUTABLE = frozenset((*DIMENSIONS, "tags")) - {"provider", "model", "status"}


@contextmanager
def attribute(**dimensions: Any) -> Iterator[None]:
    unknown = set(dimensions) - ATTRIBUTABLE
    if unknown:
        raise InvalidEvent(f"attribute(): unknown dimension(s) {', '.join(sorted(unknown))}")
    current = dict(_ATTRIBUTION.get())
    tags = {**current.get("tags", {}), **dimensions.pop("tags", {})}
    current.update(dimensions)
    if tags:
        current["tags"] = tags
    token = _ATTRIBUTION.set(current)
    try:
        yield
    finally:
        _ATTRIBUTION.reset(token)


def current() -> Mapping[str, Any]:
    return _ATTRIBUTION.get()


def with_defaults(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with the enclosing attribute() defaults underneath (explicit fields win)."""
    defaults = _ATTRIBUTION.get()
    if not defaults:
        return fields
    merged = {k: v for k, v in defaults.items() if k != "tags"}
    merged.update(fields)
    if "tags" in defaults:
        merged["tags"] = {**defaults["tags"], **(fields.get("tags") or {})}
    return merged
