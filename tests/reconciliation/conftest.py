"""A ledger metered the way an SDK would, whose traffic the fixture exports describe exactly.

The fixture exports (``fixtures/``) are shaped like the real ones: OpenAI Costs and Usage API
pages, Anthropic usage and cost reports (amounts in cents), an invoice-lines CSV. Their amounts are
the providers' published prices times the tokens below, so on this ledger every cell matches.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleetledger import Ledger, Settings

FIXTURES = Path(__file__).parent / "fixtures"
PROVIDER_FIXTURES = Path(__file__).parent.parent / "providers" / "fixtures"
DAY13 = datetime(2026, 10, 13, 10, 0, tzinfo=UTC)
DAY14 = datetime(2026, 10, 14, 10, 0, tzinfo=UTC)
KEYS = {
    "openai": {"aliases": {"proj_search": "search"}},
    "anthropic": {"aliases": {"wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ": "research"}},
}
EXPORTS = {
    "openai-costs": "openai_costs.json",
    "openai-usage": "openai_usage.json",
    "anthropic-usage": "anthropic_usage.json",
    "anthropic-costs": "anthropic_costs.json",
    "invoice-csv": "invoice.csv",
}


@pytest.fixture
def recon_ledger(db_url: str, clock, tmp_path: Path) -> Iterator[Ledger]:
    settings = Settings(database_url=db_url, spool_dir=tmp_path / "spool", reconciliation_keys=KEYS)
    with Ledger(settings=settings, clock=clock, background=False) as ledger:
        yield ledger


def provider_payload(name: str) -> dict:
    return json.loads((PROVIDER_FIXTURES / name).read_text())


def meter_fixture_traffic(ledger: Ledger) -> None:
    """The traffic the fixture exports bill: what an instrumented fleet would have recorded."""
    for _ in range(5):
        ledger.record(
            timestamp=DAY13, provider="openai", model="gpt-4o", input_tokens=2000, output_tokens=400, project="search"
        )
    for _ in range(40):
        ledger.record(
            timestamp=DAY14,
            provider="openai",
            model="gpt-4o",
            input_tokens=3000,
            cache_read_tokens=1000,
            output_tokens=750,
            project="search",
        )
    for _ in range(200):
        ledger.record(
            timestamp=DAY14,
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=2500,
            output_tokens=500,
            project="search",
        )
    for _ in range(10):
        ledger.record_response(provider_payload("anthropic_cache_web_search.json"), timestamp=DAY14, project="research")
        ledger.record_response(provider_payload("anthropic_batch_result.json"), timestamp=DAY14)
        ledger.record_response(provider_payload("mistral_chat.json"), timestamp=DAY14, project="search")


def import_all(ledger: Ledger) -> dict:
    from fleetledger.reconciliation.compare import import_for_ledger

    return {kind: import_for_ledger(ledger, kind, FIXTURES / name) for kind, name in EXPORTS.items()}


@pytest.fixture
def receiver():
    from alerts.conftest import Receiver

    instance = Receiver().start()
    yield instance
    instance.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def role_keys(recon_ledger) -> dict[str, str]:
    from fleetledger.access.keys import create_key

    made = {}
    for role, departments in (("admin", ()), ("finops", ()), ("department_head", ("research",)), ("ingest", ())):
        made[role], _ = create_key(recon_ledger.store, role=role, departments=departments, now=recon_ledger.clock())
    return made


@pytest.fixture
async def recon_api(recon_ledger, role_keys):
    import httpx

    from fleetledger.server import create_app

    app = create_app(recon_ledger, local_only=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client
