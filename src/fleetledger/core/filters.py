"""The ``key=value`` filter grammar, written once: the API's ``where=`` and the CLI's ``--where``.

Grammar (one item per ``where=`` parameter or ``--where`` option)::

    item   := key "=" values
    key    := dimension | "tag." name      (a dimension of fleetledger.core.usage.DIMENSIONS)
    values := value ("," value)*           (any of these values)
    value  := text | ""                    (empty: the dimension is not set, "unattributed")

* Spaces around the key and each value are ignored; the value is everything after the first
  ``=`` (so ``tag.q=a=b`` filters tag ``q`` on ``a=b``).
* A key given twice matches any of its values (``provider=openai`` and ``provider=anthropic``
  mean ``provider=openai,anthropic``); different keys must all match.
* ``hour`` and ``day`` group results but do not filter them: a range is ``since``/``until``.

:func:`parse_where` returns the mapping the cost queries take, ``{key: [value or None, ...]}``,
and raises :class:`~fleetledger.core.errors.InvalidInput` naming the parameter, the item and the
bad part (a 400 from the API, exit code 2 from the CLI).

**The dashboard** (``server/dashboard/core.js``) does not parse or check filters: it assembles
``key=value`` strings from its view state (``department=a,b``, ``tag.agent_status=...``) and
sends them as repeated ``where=`` parameters; the server parses them here and answers a bad one
with a 400 whose message the page shows. Publishing the grammar to the page (allowed keys) would
add a route and a second place that decides what is valid, for no behaviour the page needs: it
only ever builds items from keys it knows, so the JS stays a string builder.
"""

from __future__ import annotations

from collections.abc import Iterable

from fleetledger.core.errors import InvalidInput
from fleetledger.core.usage import DIMENSIONS

__all__ = ["FILTER_KEYS", "TAG_PREFIX", "Where", "check_key", "parse_item", "parse_where"]

#: What a filter may name, besides ``tag.<name>``: the attribution dimensions.
FILTER_KEYS: tuple[str, ...] = DIMENSIONS
TAG_PREFIX = "tag."
#: The mapping the cost queries take: each key's accepted values, ``None`` meaning "not set".
Where = dict[str, list[str | None]]

_TIME_KEYS = ("hour", "day")
_EXAMPLE = "e.g. environment=production"


def check_key(key: str, *, what: str = "where", item: str | None = None) -> str:
    """``key`` (stripped) when a filter may name it, else :class:`InvalidInput` naming it."""
    key = key.strip()
    where = f"{what} {item!r}" if item is not None else what
    if key in FILTER_KEYS:
        return key
    if key.startswith(TAG_PREFIX):
        if key[len(TAG_PREFIX) :].strip():
            return key
        raise InvalidInput(f"{where}: {key!r} names no tag; use tag.<name>=value, e.g. tag.feature=search")
    if key in _TIME_KEYS:
        raise InvalidInput(f"{where}: {key!r} groups by time but does not filter; give the range with since/until")
    raise InvalidInput(f"{where}: unknown key {key!r}; use one of {', '.join(FILTER_KEYS)} or tag.<name>")


def parse_item(item: str, *, what: str = "where") -> tuple[str, list[str | None]]:
    """One ``key=a,b`` item: its checked key and values (``None`` for an empty value)."""
    key, sep, value = item.partition("=")
    if not sep:
        raise InvalidInput(f"{what} {item!r}: use key=value, {_EXAMPLE}")
    if not key.strip():
        raise InvalidInput(f"{what} {item!r}: the key before '=' is empty; use key=value, {_EXAMPLE}")
    return check_key(key, what=what, item=item), [part.strip() or None for part in value.split(",")]


def parse_where(items: Iterable[str], *, what: str = "where") -> Where:
    """``key=value`` items as the where-mapping of the cost queries; ``what`` names the parameter
    in errors (``where`` for the API, ``--where`` for the CLI)."""
    where: Where = {}
    for item in items:
        key, values = parse_item(item, what=what)
        where.setdefault(key, []).extend(values)
    return where
