"""fleetledger: meter, price, attribute, budget and forecast the LLM spend of an agent fleet.

The names users import live here; everything else is internal.
"""

from importlib.metadata import version as _version

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
from fleetledger.ledger.facade import IngestResult, Ledger, PricedEvent
from fleetledger.pricing import Cost
from fleetledger.sdk.http import HttpLedger

__version__ = _version("fleetledger")
__all__ = [
    "Ledger",
    "HttpLedger",
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
