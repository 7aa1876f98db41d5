"""Estimate input tokens before a request is sent, for reservations.

tiktoken is used when it is installed *and* its encodings are already on disk (it downloads them on
first use, which this product must not depend on). Otherwise a chars-per-token ratio learned per
model from committed reservations (prompt characters vs the input tokens the provider reported)
is used, and 4 characters per token when nothing is learned yet.
"""

from __future__ import annotations

import math
from decimal import Decimal

__all__ = ["estimate_input_tokens", "DEFAULT_CHARS_PER_TOKEN"]

DEFAULT_CHARS_PER_TOKEN = Decimal(4)


def _tiktoken_count(text: str, model: str) -> int | None:
    try:
        import tiktoken  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        encoding = tiktoken.encoding_for_model(model)
    except Exception:  # unknown model or encodings not available offline
        return None
    return len(encoding.encode(text))


def estimate_input_tokens(prompt: str, model: str, learned_chars_per_token: Decimal | None = None) -> int:
    counted = _tiktoken_count(prompt, model) if prompt else 0
    if counted is not None:
        return counted
    ratio = (
        learned_chars_per_token if learned_chars_per_token and learned_chars_per_token > 0 else DEFAULT_CHARS_PER_TOKEN
    )
    return math.ceil(Decimal(len(prompt)) / ratio)
