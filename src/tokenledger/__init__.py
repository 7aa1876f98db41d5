"""tokenledger: meter, price, attribute, budget and forecast the LLM spend of an agent fleet.

The names users import live here; everything else is internal.
"""

from importlib.metadata import version as _version

from .budgets.enforce import Reservation
from .client import HttpLedger
from .errors import (
    BudgetExceeded,
    BudgetThrottled,
    Conflict,
    Forbidden,
    InvalidEvent,
    InvalidInput,
    NotFound,
    StorageUnavailable,
    TokenLedgerError,
)
from .ledger import IngestResult, Ledger, PricedEvent
from .pricing import Cost
from .settings import Settings
from .usage import UsageEvent

__version__ = _version("tokenledger")
__all__ = [
    "Ledger",
    "HttpLedger",
    "UsageEvent",
    "PricedEvent",
    "IngestResult",
    "Cost",
    "Settings",
    "Reservation",
    "TokenLedgerError",
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
