"""Fixtures of the gateway tests (see gateway_support.py): simulator, ledger, virtual key, gateway."""

from .gateway_support import gw_ledger, running, simulator, virtual_key  # noqa: F401
