"""An in-process API (httpx ASGITransport) on each database, with one key per role."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from fleetledger import Ledger, Settings
from fleetledger.access.keys import create_key
from fleetledger.server import create_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server_ledger(db_url, tmp_path, clock):
    with Ledger(
        settings=Settings(database_url=db_url, spool_dir=tmp_path / "spool"), background=False, clock=clock
    ) as ledger:
        yield ledger


@pytest.fixture
def keys(server_ledger) -> dict[str, str]:
    now = server_ledger.clock()
    made = {}
    for role, departments in (
        ("admin", ()),
        ("finops", ()),
        ("department_head", ("research",)),
        ("viewer", ("research",)),
        ("ingest", ()),
    ):
        made[role], _ = create_key(server_ledger.store, role=role, departments=departments, name=f"{role}-key", now=now)
    return made


@pytest.fixture
async def api(server_ledger, keys) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(server_ledger, local_only=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
