"""``fleetledger simulator``: serve the local LLM upstream simulator (for tests, demos and benchmarks)."""

from __future__ import annotations

import typer

from fleetledger.cli._common import err_console, fail


def register(app: typer.Typer) -> None:
    @app.command()
    def simulator(
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(9100, "--port", min=0, max=65535),
        latency_ms: float = typer.Option(0.0, "--latency-ms", min=0.0, help="Wait before each response starts."),
        chunk_delay_ms: float = typer.Option(0.0, "--chunk-delay-ms", min=0.0, help="Wait between stream events."),
        chunk_tokens: int = typer.Option(4, "--chunk-tokens", min=1, help="Output tokens per stream event."),
        seed: int = typer.Option(0, "--seed", help="Varies ids and texts (never usage)."),
        api_key_env: str = typer.Option(
            None, "--api-key-env", help="Require the key in this environment variable (default: accept any key)."
        ),
    ) -> None:
        """Serve a fake OpenAI + Anthropic upstream with deterministic usage (no real provider is called)."""
        import os

        import uvicorn

        from fleetledger.testing.simulator import KEEP_ALIVE_S, create_simulator_app

        api_key = None
        if api_key_env:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                fail(f"--api-key-env: environment variable {api_key_env} is not set")
        app = create_simulator_app(
            latency_ms=latency_ms,
            seed=seed,
            chunk_delay_ms=chunk_delay_ms,
            chunk_tokens=chunk_tokens,
            api_key=api_key,
            max_recorded=0,
        )
        err_console.print(
            f"simulator on http://{host}:{port}  (OpenAI base_url http://{host}:{port}/v1, "
            f"Anthropic base_url http://{host}:{port})"
        )
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=KEEP_ALIVE_S,
        )
