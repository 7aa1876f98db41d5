"""Recommendations: savings findings, their groups and lifecycle.

:mod:`.engine` runs the finders (:mod:`.routing`, :mod:`.serving`, :mod:`.tokens`, on the token
mixes of :mod:`.mixes`, with the quality catalog of :mod:`.quality`) and stores what they find;
:mod:`.lifecycle` reads and moves them along their statuses; :mod:`.realized` measures what was saved.

The public names below load their module on first use: opening a ledger imports :mod:`.tables`
(hence this package) for the migrations, and must not load the finders with it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetledger.analytics.recommendations.engine import scan
    from fleetledger.analytics.recommendations.lifecycle import (
        get_recommendation,
        list_recommendations,
        set_status,
        visible_to,
    )
    from fleetledger.analytics.recommendations.quality import DEFAULT_MODEL_QUALITY, model_quality
    from fleetledger.analytics.recommendations.realized import measure_realized, savings_summary
    from fleetledger.analytics.recommendations.recommendation import KINDS, STATUSES, Recommendation
    from fleetledger.analytics.recommendations.routing import SWITCH_PROVIDERS

__all__ = [
    "KINDS",
    "STATUSES",
    "DEFAULT_MODEL_QUALITY",
    "SWITCH_PROVIDERS",
    "Recommendation",
    "model_quality",
    "scan",
    "list_recommendations",
    "visible_to",
    "savings_summary",
    "get_recommendation",
    "set_status",
    "measure_realized",
]

#: The module each public name lives in.
_HOMES = {
    **dict.fromkeys(("KINDS", "STATUSES", "Recommendation"), "fleetledger.analytics.recommendations.recommendation"),
    **dict.fromkeys(("DEFAULT_MODEL_QUALITY", "model_quality"), "fleetledger.analytics.recommendations.quality"),
    "SWITCH_PROVIDERS": "fleetledger.analytics.recommendations.routing",
    "scan": "fleetledger.analytics.recommendations.engine",
    **dict.fromkeys(
        ("list_recommendations", "visible_to", "get_recommendation", "set_status"),
        "fleetledger.analytics.recommendations.lifecycle",
    ),
    **dict.fromkeys(("savings_summary", "measure_realized"), "fleetledger.analytics.recommendations.realized"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
