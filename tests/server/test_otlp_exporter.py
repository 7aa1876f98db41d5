"""The real OpenTelemetry SDK and its OTLP/HTTP exporter, pointed at a real server."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from fleetledger import Ledger, Settings
from fleetledger.access.keys import create_key
from fleetledger.server import create_app
from support import running


def test_otlp_http_exporter_spans_become_priced_events(db_url, tmp_path):
    with Ledger(settings=Settings(database_url=db_url, spool_dir=tmp_path / "s"), background=False) as ledger:
        key, _ = create_key(ledger.store, role="ingest", now=ledger.clock())
        with running(create_app(ledger, local_only=True)) as base:
            exporter = OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers={"Authorization": f"Bearer {key}"})
            provider = TracerProvider(
                resource=Resource.create(
                    {
                        "service.name": "support-triage",
                        "deployment.environment.name": "production",
                        "fleetledger.department": "customer-support",
                    }
                )
            )
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            tracer = provider.get_tracer("agent")
            for _ in range(3):
                with tracer.start_as_current_span("chat gpt-4o") as span:
                    span.set_attributes(
                        {
                            "gen_ai.operation.name": "chat",
                            "gen_ai.provider.name": "openai",
                            "gen_ai.request.model": "gpt-4o",
                            "gen_ai.response.model": "gpt-4o-2024-08-06",
                            "gen_ai.usage.input_tokens": 1200,
                            "gen_ai.usage.output_tokens": 300,
                            "fleetledger.project": "helpdesk",
                        }
                    )
            with tracer.start_as_current_span("db query"):  # not a GenAI span: ignored
                pass
            provider.shutdown()
            rows = ledger.costs(by=["department", "agent", "environment", "project"], since="1d").rows()
    assert len(rows) == 1
    row = rows[0]
    assert (row["department"], row["agent"], row["environment"], row["project"]) == (
        "customer-support",
        "support-triage",
        "production",
        "helpdesk",
    )
    assert row["requests"] == 3 and row["input_tokens"] == 3600
    assert row["cost_usd"] == "0.018000000"  # 3 x (1200 x $2.50 + 300 x $10) per million
