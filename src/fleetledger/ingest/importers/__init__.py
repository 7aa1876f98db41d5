"""Importers: usage recorded by other tools, turned into fleetledger usage events.

Each importer yields ``(location, event mapping | InvalidEvent)`` pairs, the shape
:meth:`fleetledger.Ledger.ingest` takes, so a bad row is rejected with where it was and why while
the rows around it are stored. Every event carries a stable ``event_id`` derived from the source's
own identity, so importing the same export twice changes nothing.

* :func:`read_litellm_spend_logs` - LiteLLM proxy ``LiteLLM_SpendLogs`` exports (JSON or CSV).
* :func:`read_openai_usage` - OpenAI organization Usage API pages (completions, embeddings).
"""

from __future__ import annotations

from fleetledger.ingest.importers.litellm_spend import read_litellm_spend_logs
from fleetledger.ingest.importers.openai_usage import read_openai_usage

__all__ = ["read_litellm_spend_logs", "read_openai_usage"]
