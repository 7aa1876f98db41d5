"""Reconciliation: provider lines against the metered ledger, drift and its explanation."""
