"""Docs that cannot rot: every CLI command, setting and event field is documented."""

from pathlib import Path

import typer.main

from fleetledger.cli import app
from fleetledger.core.settings import Settings
from fleetledger.core.usage import UsageEvent

DOCS = Path(__file__).parent.parent / "docs"


def _commands(group, prefix: str = "") -> list[str]:
    names = []
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        if getattr(command, "commands", None):
            names.extend(_commands(command, full + " "))
        else:
            names.append(full)
    return names


def test_every_cli_command_is_in_the_reference():
    reference = (DOCS / "cli.md").read_text()
    commands = _commands(typer.main.get_command(app))
    assert len(commands) >= 10
    missing = [c for c in commands if f"fleetledger {c}" not in reference and f"`{c}" not in reference]
    assert not missing, f"undocumented commands: {missing}"


def test_every_setting_is_documented():
    text = (DOCS / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"FLEETLEDGER_{name.upper()}" not in text]
    assert not missing, f"undocumented settings: {missing}"


def test_every_event_field_is_documented():
    text = (DOCS / "concepts.md").read_text()
    missing = [name for name in UsageEvent.model_fields if f"`{name}`" not in text]
    assert not missing, f"undocumented event fields: {missing}"


def test_every_api_route_is_in_the_reference(tmp_path):
    import re

    from fleetledger import Ledger, Settings
    from fleetledger.server import create_app

    reference = (DOCS / "api.md").read_text()
    with Ledger(
        settings=Settings(database_url=f"sqlite:///{tmp_path / 'd.db'}", spool_dir=tmp_path / "s"), background=False
    ) as ledger:
        paths = create_app(ledger).openapi()["paths"]
    documented = {
        re.sub(r"\?.*", "", p) for p in re.findall(r"`(?:GET|POST|PATCH|DELETE|GET/POST) ([^ `]+)", reference)
    }
    documented |= set(re.findall(r"`(/[^ `?]+)", reference))

    def shape(path: str) -> str:  # parameter names may differ: /api/budgets/{key} ~ /api/budgets/{name-or-id}
        return re.sub(r"\{[^}]*\}", "{}", path)

    documented = {shape(p) for p in documented}
    missing = [p for p in paths if shape(p) not in documented]
    assert not missing, f"undocumented API routes: {missing}"
