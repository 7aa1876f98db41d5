"""The model-quality catalog: a rough, editable quality score per model family (meta ``model_quality``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetledger.ledger.facade import Ledger

__all__ = ["DEFAULT_MODEL_QUALITY", "model_quality", "model_family"]


#: Quality scores (0-100) per model family, by provider; a family matches a model name it prefixes.
#: Rough public-benchmark standing, meant to be edited: store your own under meta 'model_quality'.
DEFAULT_MODEL_QUALITY: dict[str, Any] = json.loads(
    """
{
  "max_quality_drop": 10,
  "families": {
    "openai/gpt-4o": {"score": 84, "kind": "chat"},
    "openai/gpt-4o-mini": {"score": 76, "kind": "chat"},
    "openai/gpt-4.1": {"score": 86, "kind": "chat"},
    "openai/gpt-4.1-mini": {"score": 80, "kind": "chat"},
    "openai/gpt-4.1-nano": {"score": 70, "kind": "chat"},
    "openai/o3-mini": {"score": 84, "kind": "chat"},
    "openai/o4-mini": {"score": 86, "kind": "chat"},
    "openai/text-embedding-3-large": {"score": 80, "kind": "embedding"},
    "openai/text-embedding-3-small": {"score": 75, "kind": "embedding"},
    "anthropic/claude-opus-4-1": {"score": 92, "kind": "chat"},
    "anthropic/claude-sonnet-4-5": {"score": 90, "kind": "chat"},
    "anthropic/claude-haiku-4-5": {"score": 82, "kind": "chat"},
    "anthropic/claude-3-5-haiku": {"score": 74, "kind": "chat"},
    "google/gemini-2.5-pro": {"score": 88, "kind": "chat"},
    "google/gemini-2.5-flash": {"score": 81, "kind": "chat"},
    "google/gemini-2.5-flash-lite": {"score": 72, "kind": "chat"},
    "mistral/mistral-large-latest": {"score": 80, "kind": "chat"},
    "mistral/mistral-medium-latest": {"score": 76, "kind": "chat"},
    "mistral/mistral-small-latest": {"score": 70, "kind": "chat"}
  }
}
"""
)


def model_quality(ledger: Ledger) -> dict[str, Any]:
    """The built-in quality catalog with the meta key ``model_quality`` merged over it."""
    stored = ledger.store.get_meta("model_quality") or {}
    families = {**DEFAULT_MODEL_QUALITY["families"], **(stored.get("families") or {})}
    drop = stored.get("max_quality_drop", DEFAULT_MODEL_QUALITY["max_quality_drop"])
    return {"max_quality_drop": int(drop), "families": families}


def model_family(catalog: Mapping[str, Any], provider: str, model: str) -> tuple[str, dict[str, Any]] | None:
    best = None
    for key, info in catalog["families"].items():
        prov, _, family = key.partition("/")
        if prov == provider and model.lower().startswith(family.lower()):
            if best is None or len(family) > len(best[0]):
                best = (family, info)
    return best
