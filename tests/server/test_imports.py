"""Importers through the CLI and the API: other tools' exports become priced, idempotent events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetledger.cli import app

from .conftest import auth

FIXTURES = Path(__file__).parent.parent / "importers" / "fixtures"


@pytest.mark.anyio
async def test_import_routes(api, keys):
    rows = json.loads((FIXTURES / "litellm_spend_logs.json").read_text())
    first = (await api.post("/api/v1/import/litellm-spend", json=rows, headers=auth(keys["ingest"]))).json()
    assert first["accepted"] > 0 and first["rejected"] >= 1
    again = (await api.post("/api/v1/import/litellm-spend", json=rows, headers=auth(keys["ingest"]))).json()
    assert again["accepted"] == 0 and again["duplicates"] == first["accepted"]
    pages = json.loads((FIXTURES / "openai_usage_embeddings.json").read_text())
    usage = (await api.post("/api/v1/import/openai-usage", json=pages, headers=auth(keys["ingest"]))).json()
    assert usage["accepted"] > 0
    bad = await api.post("/api/v1/import/langfuse", json=[], headers=auth(keys["ingest"]))
    assert bad.status_code == 400 and "must be litellm-spend or openai-usage" in bad.json()["error"]["message"]
    assert (await api.post("/api/v1/import/openai-usage", json=pages, headers=auth(keys["viewer"]))).status_code == 403


def test_import_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEETLEDGER_DATABASE_URL", f"sqlite:///{tmp_path / 'i.db'}")
    monkeypatch.setenv("FLEETLEDGER_SPOOL_DIR", str(tmp_path / "spool"))
    runner = CliRunner()
    source = tmp_path / "spend.csv"
    source.write_bytes((FIXTURES / "litellm_spend_logs.csv").read_bytes())
    result = runner.invoke(app, ["import", "litellm-spend", str(source), "--format", "json"])
    assert result.exit_code == 1, result.output  # the fixture holds bad rows on purpose
    counts = json.loads(result.stdout)
    assert counts["accepted"] > 0 and counts["rejected"] > 0
    assert (tmp_path / "spend.csv.rejects.jsonl").exists()
    completions = tmp_path / "usage.json"
    completions.write_bytes((FIXTURES / "openai_usage_completions.json").read_bytes())
    result = runner.invoke(app, ["import", "openai-usage", str(completions), "--format", "json"])
    assert json.loads(result.stdout)["accepted"] > 0
