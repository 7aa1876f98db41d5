"""The fleetledger exception tree.

Every error a user can cause or meet derives from :class:`FleetLedgerError` and carries a stable
``code`` (for JSON APIs and scripts) and an ``http_status`` (mapped in one place by the server)::

    FleetLedgerError
    ├── InvalidInput          400  bad data: an event, a price, an option
    │   └── InvalidEvent      400  one usage event failed validation (``location`` says where)
    ├── NotFound              404  a request id, budget, price override... that does not exist
    ├── Conflict              409  the write would contradict what is stored
    ├── Forbidden             403  the caller's role does not allow this
    ├── BudgetExceeded        429  a budget refused the spend: which budget, limit, spent, when it resets
    │   └── BudgetThrottled   429  a throttle budget is at its requests-per-minute cap
    └── StorageUnavailable    503  the database cannot be reached; retry later

Messages say what was wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "FleetLedgerError",
    "InvalidInput",
    "InvalidEvent",
    "NotFound",
    "Conflict",
    "Forbidden",
    "StorageUnavailable",
    "BudgetExceeded",
    "BudgetThrottled",
]


class FleetLedgerError(Exception):
    code = "error"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class InvalidInput(FleetLedgerError):
    code = "invalid_input"
    http_status = 400


class InvalidEvent(InvalidInput):
    """A usage event that cannot be accepted; ``errors`` lists each problem as ``field: reason``."""

    code = "invalid_event"

    def __init__(self, message: str, *, errors: list[str] | None = None, location: str | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [message]
        self.location = location

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out["errors"] = self.errors
        if self.location is not None:
            out["location"] = self.location
        return out


class NotFound(FleetLedgerError):
    code = "not_found"
    http_status = 404


class Conflict(FleetLedgerError):
    code = "conflict"
    http_status = 409


class Forbidden(FleetLedgerError):
    code = "forbidden"
    http_status = 403


class StorageUnavailable(FleetLedgerError):
    code = "storage_unavailable"
    http_status = 503


class BudgetExceeded(FleetLedgerError):
    """A budget refused a reservation. The attributes say which, how much, and when it resets."""

    code = "budget_exceeded"
    http_status = 429

    def __init__(
        self,
        message: str,
        *,
        budget_id: int,
        budget: str,
        limit_usd: str,
        spent_usd: str,
        reserved_usd: str,
        remaining_usd: str,
        requested_usd: str,
        resets_at: str | None,
        action: str,
    ) -> None:
        super().__init__(message)
        self.budget_id = budget_id
        self.budget = budget
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd
        self.remaining_usd = remaining_usd
        self.requested_usd = requested_usd
        self.resets_at = resets_at
        self.action = action

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out.update(
            budget_id=self.budget_id,
            budget=self.budget,
            limit_usd=self.limit_usd,
            spent_usd=self.spent_usd,
            reserved_usd=self.reserved_usd,
            remaining_usd=self.remaining_usd,
            requested_usd=self.requested_usd,
            resets_at=self.resets_at,
            action=self.action,
        )
        return out


class BudgetThrottled(BudgetExceeded):
    code = "budget_throttled"

    def __init__(self, message: str, *, retry_after_s: int, **fields: object) -> None:
        super().__init__(message, **fields)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s

    def to_dict(self) -> dict[str, object]:
        out = super().to_dict()
        out["retry_after_s"] = self.retry_after_s
        return out
