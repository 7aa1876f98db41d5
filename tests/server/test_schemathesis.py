"""schemathesis drives every operation of the OpenAPI document: no 500, no schema violation."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from fleetledger import Ledger, Settings
from fleetledger.access.keys import create_key
from fleetledger.server import create_app

_folder = Path(tempfile.mkdtemp(prefix="tl-schemathesis-"))
_ledger = Ledger(
    settings=Settings(database_url=f"sqlite:///{_folder / 's.db'}", spool_dir=_folder / "spool"), background=False
)
_KEY, _ = create_key(_ledger.store, role="admin", name="schemathesis", now=_ledger.clock())
_ledger.budgets.create(name="research", amount="10", scope={"department": "research"})
_app = create_app(_ledger, local_only=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx, value) -> bytes:  # the schema describes NDJSON bodies as one string
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(str(value), "utf-8")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    # The live stream never ends on its own: bound it for the fuzzer.
    if case.path == "/api/stream":
        case.query = {"timeout_s": 0.2}
    response = case.call(headers={"Authorization": f"Bearer {_KEY}"})
    case.validate_response(response, checks=(not_a_server_error, response_schema_conformance))
