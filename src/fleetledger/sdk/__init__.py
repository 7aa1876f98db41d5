"""The SDK adapters: :func:`connect` (a server or a database, by URL) and the HTTP client.

* :mod:`.connect` -- :func:`connect`: an :class:`HttpLedger` for ``http(s)://``, else a ``Ledger``;
* :mod:`.http` -- :class:`HttpLedger`: record to a fleetledger server through a disk spool.
"""

from fleetledger.sdk.connect import connect
from fleetledger.sdk.http import HttpLedger, RecordedEvent

__all__ = ["connect", "HttpLedger", "RecordedEvent"]
