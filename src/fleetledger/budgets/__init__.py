"""Budgets: scopes, periods, live counters, reservations before spend, approvals and history."""

from fleetledger.budgets.enforce import Decision, Enforcer, Reservation
from fleetledger.budgets.model import Budget
from fleetledger.budgets.service import BudgetService

__all__ = ["Budget", "BudgetService", "Decision", "Enforcer", "Reservation"]
