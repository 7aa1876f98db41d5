"""The in-process API fixtures of tests/server/conftest.py, reused for the insight routes."""

from server.conftest import anyio_backend, api, auth, keys, server_ledger  # noqa: F401
