"""fleetledger: meter, price, attribute, budget and forecast the LLM spend of an agent fleet.

The names users import live here; everything else is internal. ``connect(url)`` opens a ledger
wherever ``url`` points: an :class:`HttpLedger` for a fleetledger server (``http(s)://``), a
:class:`Ledger` for a database. Modules inside the package import from their own layers, never
from this root (``fleetledger.core.version.VERSION`` is the version).
"""

from fleetledger.budgets.enforce import Reservation
from fleetledger.core.errors import (
    BudgetExceeded,
    BudgetThrottled,
    Conflict,
    FleetLedgerError,
    Forbidden,
    InvalidEvent,
    InvalidInput,
    NotFound,
    StorageUnavailable,
)
from fleetledger.core.settings import Settings
from fleetledger.core.usage import UsageEvent
from fleetledger.core.version import VERSION
from fleetledger.ledger.facade import IngestResult, Ledger, PricedEvent
from fleetledger.pricing import Cost
from fleetledger.sdk.connect import connect
from fleetledger.sdk.http import HttpLedger

__version__ = VERSION
__all__ = [
    "Ledger",
    "HttpLedger",
    "connect",
    "UsageEvent",
    "PricedEvent",
    "IngestResult",
    "Cost",
    "Settings",
    "Reservation",
    "FleetLedgerError",
    "BudgetExceeded",
    "BudgetThrottled",
    "InvalidInput",
    "InvalidEvent",
    "NotFound",
    "Conflict",
    "Forbidden",
    "StorageUnavailable",
    "__version__",
]
