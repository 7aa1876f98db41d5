"""The HTTP server: REST API, OpenTelemetry ingest, live stream (FastAPI on uvicorn)."""

from fleetledger.server.app import create_app

__all__ = ["create_app"]
