"""``fleetledger serve`` and ``fleetledger keys create|list|revoke``."""

from __future__ import annotations

import ipaddress
import json
import sys

import typer

from fleetledger.access.keys import ROLES, any_keys, create_key, list_keys, revoke_key
from fleetledger.cli._common import OutputFormat, console, emit, err_console, fail, handle_errors, open_ledger, state
from fleetledger.core.errors import InvalidInput

keys_app = typer.Typer(help="API keys for the server (stored hashed; shown once).", no_args_is_help=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    role: str = typer.Option(..., "--role", help=", ".join(ROLES)),
    department: list[str] = typer.Option([], "--department", help="For department_head / viewer (repeatable)."),
    name: str = typer.Option(None, "--name", help="Who or what uses the key, e.g. 'research-dashboard'."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format"),
) -> None:
    """Create an API key. The key is printed once; only its hash is stored."""
    with open_ledger(ctx) as ledger, handle_errors():
        key, record = create_key(ledger.store, role=role, departments=department, name=name, now=ledger.clock())
    if output == OutputFormat.json:
        sys.stdout.write(json.dumps({"key": key, **record}) + "\n")
        return
    console.print(f"Created {role} key {record['key_id']}" + (f" for {', '.join(department)}" if department else ""))
    console.print(f"[bold]{key}[/]", highlight=False)
    console.print("Store it now: it cannot be shown again. Use it as: Authorization: Bearer <key>")


@keys_app.command("list")
def keys_list(ctx: typer.Context, output: OutputFormat = typer.Option(OutputFormat.table, "--format")) -> None:
    """API keys (never the secrets)."""
    with open_ledger(ctx) as ledger, handle_errors():
        rows = list_keys(ledger.store)
    for row in rows:
        row["departments"] = ",".join(row["departments"]) if output != OutputFormat.json else row["departments"]
    emit(rows, output, columns=("key_id", "name", "role", "departments", "created_at", "last_used_at", "revoked"))


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: str = typer.Argument(...)) -> None:
    """Revoke a key: it stops working at once."""
    with open_ledger(ctx) as ledger, handle_errors():
        revoke_key(ledger.store, key_id)
    console.print(f"Revoked {key_id}.")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")

    @app.command()
    def serve(
        ctx: typer.Context,
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8000, "--port", min=1, max=65535),
        workers: int = typer.Option(1, "--workers", min=1, max=64, help="Server processes (use PostgreSQL for >1)."),
    ) -> None:
        """Serve the REST API, OpenTelemetry ingest, live stream and dashboard."""
        import uvicorn

        from fleetledger.ledger.facade import Ledger
        from fleetledger.server import create_app

        settings = state(ctx).settings()
        with handle_errors():
            probe = Ledger(settings=settings, background=False)
            keys_exist = any_keys(probe.store)
            probe.close()
            if not is_loopback(host) and not keys_exist:
                raise InvalidInput(
                    f"refusing to listen on {host} while no API key exists: anyone could read and change "
                    "your spend data. Create one first: fleetledger keys create --role admin --name me"
                )
        if workers > 1 and settings.database_url.startswith("sqlite"):
            err_console.print("[yellow]Several workers on SQLite share one file; PostgreSQL scales better.[/]")
        err_console.print(f"fleetledger on http://{host}:{port}/dashboard/cost  (API docs: http://{host}:{port}/docs)")
        if workers > 1:
            fail("--workers > 1: run several `fleetledger serve` processes behind a proxy, one per port")
        app = create_app(settings=settings, local_only=is_loopback(host), start_workers=True)
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
