"""Provider adapters: read the usage of real provider responses in the tokenledger convention.

>>> extracted = extract_usage(openai_client.chat.completions.create(...))   # doctest: +SKIP
>>> UsageEvent(timestamp=now, **extracted.as_event_fields())                  # doctest: +SKIP

See :mod:`tokenledger.providers.extract` for each provider's quirks.
"""

from __future__ import annotations

from .extract import ExtractedUsage, extract_usage

__all__ = ["ExtractedUsage", "extract_usage"]
