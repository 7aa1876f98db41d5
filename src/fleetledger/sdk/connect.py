"""``fleetledger.connect(url)``: one call that opens a ledger wherever ``url`` points.

An agent's configuration usually holds one address. :func:`connect` reads it:

* ``http://`` or ``https://``: an :class:`~fleetledger.sdk.http.HttpLedger`, which records to a
  fleetledger server through a disk spool (the server prices and stores; see docs/sdk-http.md).
  Keyword arguments are the HttpLedger's (``api_key=``, ``spool_dir=``...).
* anything else (``sqlite:///path.db``, ``postgresql://...``, or None for
  ``FLEETLEDGER_DATABASE_URL``): a local :class:`~fleetledger.ledger.facade.Ledger` on that
  database. Keyword arguments are the Ledger's (``settings=``, ``clock=``, ``background=``...).

Both answer ``record()``, ``record_response()``, ``attribute()``, ``flush()`` and ``close()``, so
one setting switches an agent between a local database and a server. The choice lives here, in the
SDK adapter above the ledger, and not in the ``Ledger`` constructor: ``Ledger(url)`` always opens a
database (and refuses an ``http(s)://`` URL, pointing here), so the façade never imports the HTTP
client.
"""

from __future__ import annotations

from typing import Any

from fleetledger.ledger.facade import Ledger
from fleetledger.sdk.http import HttpLedger

__all__ = ["connect"]


def connect(url: str | None = None, **kwargs: Any) -> HttpLedger | Ledger:
    """A ledger for ``url``: an :class:`HttpLedger` for ``http(s)://`` addresses, else a
    :class:`~fleetledger.Ledger` on that database (``None``: the configured database)."""
    if url is not None and url.strip().lower().startswith(("http://", "https://")):
        return HttpLedger(url, **kwargs)
    return Ledger(url, **kwargs)
