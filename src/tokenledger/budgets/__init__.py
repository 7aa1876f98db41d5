"""Budgets: scopes, periods, live counters, reservations before spend, approvals and history."""

from .enforce import Decision, Enforcer, Reservation
from .model import Budget
from .service import BudgetService

__all__ = ["Budget", "BudgetService", "Decision", "Enforcer", "Reservation"]
