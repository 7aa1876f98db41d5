"""``fleetledger gateway``: run the proxy; ``fleetledger gateway keys create|list|revoke``: virtual keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from fleetledger.cli._common import OutputFormat, console, emit, err_console, handle_errors, open_ledger, state
from fleetledger.core.errors import InvalidInput

gateway_app = typer.Typer(
    help="The LLM gateway: an OpenAI/Anthropic-compatible proxy that meters, caches, routes and "
    "enforces budgets. Without a subcommand, runs it.",
    invoke_without_command=True,
)
keys_app = typer.Typer(help="Virtual keys for the gateway (stored hashed; shown once).", no_args_is_help=True)
gateway_app.add_typer(keys_app, name="keys")


@gateway_app.callback()
def run(
    ctx: typer.Context,
    config: Path = typer.Option(None, "--config", help="gateway.yaml (upstreams, routes, cache, limits)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(4000, "--port", min=1, max=65535),
    db: str = typer.Option(None, "--db", help="Database URL (overrides the global --db)."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Run the gateway (OpenAI: base_url http://HOST:PORT/v1; Anthropic: base_url http://HOST:PORT)."""
    if db:
        state(ctx).db = db
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from fleetledger.gateway.config import load_config
    from fleetledger.gateway.proxy import Gateway
    from fleetledger.ledger.facade import Ledger

    settings = state(ctx).settings()
    with handle_errors():
        gateway_config = load_config(config)
        ledger = Ledger(settings=settings, background=True)
    missing = [
        f"{name} ({u.api_key_env})"
        for name, u in gateway_config.upstreams.items()
        if u.api_key_env and u.api_key() is None
    ]
    if missing:
        err_console.print(f"[yellow]No key in the environment for upstream(s): {', '.join(missing)}[/]")
    if not gateway_config.upstreams:
        err_console.print("[yellow]No upstreams configured: every request will be refused (see docs/gateway.md).[/]")
    err_console.print(
        f"fleetledger gateway on http://{host}:{port}  (OpenAI base_url http://{host}:{port}/v1, "
        f"Anthropic base_url http://{host}:{port})"
    )
    app = Gateway(ledger, gateway_config)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
    finally:
        ledger.close()


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: str = typer.Option(None, "--name", help="Who or what uses the key, e.g. 'summarizer-prod'."),
    dim: list[str] = typer.Option(
        [], "--dim", help="Attribution, repeatable: department=research, project=x, agent=y, environment=production."
    ),
    model: list[str] = typer.Option([], "--model", help="Allowed model (repeatable); default: every routed model."),
    rate_limit: int = typer.Option(None, "--rate-limit", help="Requests per minute (per gateway process)."),
    cache: str = typer.Option("off", "--cache", help="Response cache for this key: off, exact or semantic."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Create a virtual key. The key is printed once; only its hash is stored."""
    from fleetledger.gateway.keys import create_key

    dims: dict[str, str] = {}
    with handle_errors():
        for item in dim:
            name_, sep, value = item.partition("=")
            if not sep:
                raise InvalidInput(f"--dim: {item!r} must be name=value, e.g. department=research")
            dims[name_.strip()] = value
    with open_ledger(ctx) as ledger, handle_errors():
        key, record = create_key(
            ledger.store,
            now=ledger.clock(),
            name=name,
            dims=dims,
            allowed_models=model or None,
            rate_limit_rpm=rate_limit,
            cache=cache,
        )
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps({"key": key, **record.to_dict()}) + "\n")
        return
    console.print(f"Created virtual key {record.key_id}" + (f" ({name})" if name else ""))
    console.print(f"[bold]{key}[/]", highlight=False)
    console.print("Store it now: it cannot be shown again. Clients use it as their provider API key.")


@keys_app.command("list")
def keys_list(ctx: typer.Context, output: OutputFormat = typer.Option(OutputFormat.table, "--format")) -> None:
    """Virtual keys (never the secrets)."""
    from fleetledger.gateway.keys import list_keys

    with open_ledger(ctx) as ledger, handle_errors():
        rows = list_keys(ledger.store)
    if output != OutputFormat.json:
        for row in rows:
            row["dims"] = ",".join(f"{k}={v}" for k, v in sorted(row["dims"].items()))
            row["allowed_models"] = ",".join(row["allowed_models"] or []) or "*"
    emit(
        rows,
        output,
        columns=("key_id", "name", "dims", "allowed_models", "rate_limit_rpm", "cache", "created_at", "revoked"),
    )


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context, key_id: str = typer.Argument(..., help="The key id (second part of the key).")
) -> None:
    """Revoke a virtual key: running gateways refuse it within a second."""
    from fleetledger.gateway.keys import revoke_key

    with open_ledger(ctx) as ledger, handle_errors():
        revoke_key(ledger.store, key_id, now=ledger.clock())
    console.print(f"Revoked {key_id}.")


def register(app: typer.Typer) -> None:
    app.add_typer(gateway_app, name="gateway")
