"""Field readers shared by the importers: one place decides what a count, a name or a time is.

The usage importers (:mod:`.litellm_spend`, :mod:`.openai_usage`) and reconciliation's report
readers (:mod:`fleetledger.reconciliation.importers`) read the same kinds of fields from provider
exports. A reader returns the clean value or raises :class:`BadField` with a message naming the
field; the importer turns that into an :class:`~fleetledger.core.errors.InvalidEvent` at the row's
location, so one bad row is rejected and the rows around it are kept.

Two families, because the sources differ:

* *cells* (:func:`cell_text`, :func:`cell_count`, :func:`cell_time`): CSV dumps and JSON rows
  written by other tools, where a number may arrive as ``"1200"`` or ``1200.0`` and a blank cell
  means absent;
* *JSON API fields* (:func:`json_text`, :func:`json_count`, :func:`unix_seconds`): provider API
  pages with typed values, where a count must be an integer and a boolean is not a name.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fleetledger.core.usage import MAX_UNITS

__all__ = [
    "BadField",
    "blank",
    "cell_text",
    "cell_count",
    "cell_time",
    "json_text",
    "json_count",
    "unix_seconds",
]

#: Unix seconds of 2100-01-01: later bucket times are typos.
_YEAR_2100 = 4_102_444_800


class BadField(Exception):
    """A field (or a row, or a bucket) that cannot become part of an event; the message says why."""


# -- cells --------------------------------------------------------------------------------------


def blank(value: Any) -> bool:
    """None or an all-whitespace string: the field is absent."""
    return value is None or (isinstance(value, str) and not value.strip())


def cell_count(value: Any, name: str) -> int:
    """A token count: int, integral float or digit string; absent or blank is 0."""
    if blank(value):
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    elif isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            try:
                as_float = float(value)
            except ValueError:
                raise BadField(f"{name}: expected a token count, got {value!r}") from None
            if not as_float.is_integer():
                raise BadField(f"{name}: expected a whole number of tokens, got {value!r}") from None
            value = int(as_float)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadField(f"{name}: expected a token count, got {value!r}")
    if not 0 <= value <= MAX_UNITS:
        raise BadField(f"{name}: must be between 0 and {MAX_UNITS}, got {value}")
    return value


def cell_text(value: Any) -> str | None:
    """A name or label, stripped; blank cells and JSON objects or lists are None."""
    if blank(value) or isinstance(value, dict | list):
        return None
    return str(value).strip()


def cell_time(value: Any, name: str) -> datetime | None:
    """An ISO 8601 date-time (or a ``datetime``) in UTC; a time without an offset is read as UTC."""
    if blank(value):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise BadField(f"{name}: not a date-time: {value!r}") from None
    # Exports (LiteLLM's among them) store UTC and often drop the offset.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# -- JSON API fields ----------------------------------------------------------------------------


def json_count(result: Mapping[str, Any], name: str) -> int:
    """``result[name]`` as a token count: an integer in range; absent or null is 0."""
    value = result.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadField(f"{name}: expected a token count, got {value!r}")
    if not 0 <= value <= MAX_UNITS:
        raise BadField(f"{name}: must be between 0 and {MAX_UNITS}, got {value}")
    return value


def json_text(value: Any) -> str | None:
    """A JSON scalar as a stripped name; null, empty, booleans, objects and lists are None."""
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = str(value).strip()
    return text or None


def unix_seconds(bucket: Mapping[str, Any], name: str) -> int:
    """``bucket[name]`` as Unix seconds (an integer before 2100)."""
    value = bucket.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _YEAR_2100:
        raise BadField(f"bucket {name}: expected Unix seconds, got {value!r}")
    return value
