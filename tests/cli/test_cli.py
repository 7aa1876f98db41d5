"""The CLI contract, as a user runs it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from fleetledger.cli import app

runner = CliRunner()


@pytest.fixture
def db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("FLEETLEDGER_DATABASE_URL", url)
    monkeypatch.setenv("FLEETLEDGER_SPOOL_DIR", str(tmp_path / "spool"))
    assert runner.invoke(app, ["init"]).exit_code == 0
    return url


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.stdout


GOOD = [
    {
        "timestamp": "2026-11-20T10:00:00Z",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 1000,
        "output_tokens": 200,
        "department": "research",
    },
    {
        "timestamp": "2026-11-20T11:00:00Z",
        "provider": "anthropic",
        "model": "claude-sonnet-4-5",
        "input_tokens": 5000,
        "cache_read_tokens": 3000,
        "output_tokens": 500,
        "department": "support",
    },
]


def write_jsonl(path, lines):
    path.write_bytes(b"".join((json.dumps(x).encode() if not isinstance(x, bytes) else x) + b"\n" for x in lines))
    return path


def test_ingest_json_summary_rejects_file_and_idempotence(db, tmp_path):
    path = write_jsonl(
        tmp_path / "usage.jsonl",
        [
            GOOD[0],
            {"timestamp": "2026-11-20T10:00:00", "model": "gpt-4o"},
            b"{not json",
            GOOD[1],
            b'{"timestamp": "2026-11-20T10:00:00Z", "model": "caf\xe9"}',
            {**GOOD[0], "input_tokens": -3, "extra": 1},
        ],
    )
    out = run("ingest", str(path), "--format", "json", code=1)
    assert json.loads(out) == {"accepted": 2, "duplicates": 0, "rejected": 4}
    rejects = [json.loads(line) for line in (tmp_path / "usage.jsonl.rejects.jsonl").read_text().splitlines()]
    assert [r["location"] for r in rejects] == ["usage.jsonl:2", "usage.jsonl:3", "usage.jsonl:5", "usage.jsonl:6"]
    assert "time zone" in rejects[0]["reason"] and "broken JSON" in rejects[1]["reason"]
    assert "invalid UTF-8" in rejects[2]["reason"]
    assert "input_tokens" in rejects[3]["reason"] and "extra: unknown field" in rejects[3]["reason"]
    again = run("ingest", str(path), "--format", "json", code=1)
    assert json.loads(again) == {"accepted": 0, "duplicates": 2, "rejected": 4}


def test_ingest_csv_with_tags(db, tmp_path):
    path = tmp_path / "usage.csv"
    path.write_text(
        "timestamp,provider,model,input_tokens,output_tokens,department,tag.experiment\n"
        "2026-11-20T10:00:00Z,openai,gpt-4o,1000,200,research,exp-1\n"
        "2026-11-20T10:05:00Z,openai,gpt-4o,1.5,200,research,\n"
        "2026-11-20T10:06:00Z,openai,gpt-4o,10,2\n"
    )
    out = run("ingest", str(path), "--format", "json", code=1)
    assert json.loads(out) == {"accepted": 1, "duplicates": 0, "rejected": 2}
    rows = json.loads(run("costs", "--by", "tag.experiment", "--since", "2026-11-01", "--format", "json"))
    assert rows[0]["tag.experiment"] == "exp-1"


def test_costs_json_contract_and_group_sums(db, tmp_path):
    run("ingest", str(write_jsonl(tmp_path / "u.jsonl", GOOD)))
    rows = json.loads(
        run("costs", "--by", "department,model", "--since", "2026-11-01", "--until", "2026-12-01", "--format", "json")
    )
    assert {(r["department"], r["model"]) for r in rows} == {("research", "gpt-4o"), ("support", "claude-sonnet-4-5")}
    required = {
        "cost_usd",
        "requests",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cost_per_request_usd",
        "cost_per_1k_tokens_usd",
    }
    assert all(required <= set(r) for r in rows)
    research = next(r for r in rows if r["department"] == "research")
    assert research["cost_usd"] == "0.004500000"  # 1000 x $2.50 + 200 x $10 per MTok
    assert research["cost_per_1k_tokens_usd"] == "0.003750000"
    filtered = json.loads(
        run(
            "costs",
            "--by",
            "model",
            "--since",
            "2026-11-01",
            "--until",
            "2026-12-01",
            "--where",
            "department=support",
            "--format",
            "json",
        )
    )
    assert [r["model"] for r in filtered] == ["claude-sonnet-4-5"]
    csv_out = run("costs", "--by", "department", "--since", "2026-11-01", "--until", "2026-12-01", "--format", "csv")
    assert csv_out.splitlines()[0].startswith("department,cost_usd,requests")
    table = run("costs", "--by", "department", "--since", "2026-11-01", "--until", "2026-12-01", "--currency", "EUR")
    assert "TOTAL" in table and "cost_eur" in table


def test_costs_bad_options_are_clear(db):
    result = runner.invoke(app, ["costs", "--by", "departmnet"])
    assert result.exit_code == 2 and "unknown key 'departmnet'" in result.output
    result = runner.invoke(app, ["costs", "--since", "yesterday-ish"])
    assert result.exit_code == 2 and "is not a time" in result.output
    result = runner.invoke(app, ["costs", "--where", "department"])
    assert result.exit_code == 2 and "use key=value" in result.output


def test_price_json_and_tier(db):
    out = json.loads(
        run(
            "price",
            "--provider",
            "anthropic",
            "--model",
            "claude-sonnet-4-5",
            "--input-tokens",
            "200001",
            "--output-tokens",
            "1000",
            "--cache-read-tokens",
            "1",
            "--format",
            "json",
        )
    )
    assert out["total_usd"] == "1.222500600"  # whole request at the >200K tier: $6 in, $0.60 cache read, $22.50 out
    assert out["components"] == {
        "cache_read_mtok": "0.000000600",
        "input_mtok": "1.200000000",
        "output_mtok": "0.022500000",
    }
    assert out["source"] == "genai-prices"
    table = run("price", "--provider", "openai", "--model", "gpt-4o", "--input-tokens", "1000")
    assert "input_mtok" in table and "0.002500000" in table
    unknown = json.loads(
        run("price", "--provider", "vllm", "--model", "mystery", "--input-tokens", "5", "--format", "json")
    )
    assert unknown["priced"] is False and "pricing set" in unknown["reason"]


def test_pricing_set_list_reprice_delete(db, tmp_path):
    run(
        "ingest",
        str(
            write_jsonl(
                tmp_path / "u.jsonl",
                [
                    {
                        "timestamp": "2026-11-20T10:00:00Z",
                        "provider": "vllm",
                        "model": "acme-llama-70b-ft",
                        "input_tokens": 1_000_000,
                        "output_tokens": 1_000_000,
                    }
                ],
            )
        ),
    )
    before = json.loads(run("costs", "--since", "2026-11-01", "--until", "2026-12-01", "--format", "json"))
    assert before[0]["unpriced_requests"] == 1 and before[0]["cost_usd"] == "0.000000000"
    out = json.loads(
        run(
            "pricing",
            "set",
            "--provider",
            "vllm",
            "--model",
            "acme-llama-70b-ft",
            "--price",
            "input_mtok=0.40",
            "--price",
            "output_mtok=0.80",
            "--format",
            "json",
        )
    )
    assert out["kind"] == "price" and out["prices"] == {"input_mtok": "0.40", "output_mtok": "0.80"}
    listed = json.loads(run("pricing", "list", "--format", "json"))
    assert any(o["id"] == out["id"] for o in listed) and any(o["kind"] == "multiplier" for o in listed)
    summary = json.loads(run("reprice", "--since", "2026-11-01", "--format", "json"))
    assert summary == {"events": 1, "changed": 1, "newly_priced": 1, "delta_usd": "1.200000000"}
    after = json.loads(run("costs", "--since", "2026-11-01", "--until", "2026-12-01", "--format", "json"))
    assert after[0]["cost_usd"] == "1.200000000" and after[0]["unpriced_requests"] == 0
    run("pricing", "delete", str(out["id"]))
    result = runner.invoke(app, ["pricing", "delete", str(out["id"])])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_pricing_set_refuses_bad_input(db):
    for args, message in [
        (["--model", "x"], "exactly one of"),
        (["--model", "x", "--price", "input_mtok=abc"], "not a decimal number"),
        (["--model", "x", "--discount-percent", "120"], "between 0 and 100"),
        (["--model", "x", "--multiplier", "0.5"], "name the --service-tier"),
        (["--model", "x", "--price", "input_mtok=1", "--from", "2026-02-01", "--to", "2026-01-01"], "must be after"),
    ]:
        result = runner.invoke(app, ["pricing", "set", *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_money_in_json_is_decimal_strings(db, tmp_path):
    run("ingest", str(write_jsonl(tmp_path / "u.jsonl", GOOD)))
    rows = json.loads(
        run("costs", "--by", "model", "--since", "2026-11-01", "--until", "2026-12-01", "--format", "json")
    )
    for row in rows:
        assert isinstance(row["cost_usd"], str) and Decimal(row["cost_usd"]) > 0
