"""The Ledger facade: recording and query API over the collaborators the composition root builds."""

from fleetledger.ledger.facade import IngestResult, Ledger, PricedEvent, Rejection, event_row

__all__ = ["IngestResult", "Ledger", "PricedEvent", "Rejection", "event_row"]
