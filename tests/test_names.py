"""The project's name: ``fleetledger`` everywhere, and what still works for users of ``tokenledger``."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from fleetledger import Settings
from fleetledger.cli import app
from fleetledger.core import environment


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environment, "_warned", set())
    for name in (
        "FLEETLEDGER_DATABASE_URL",
        "TOKENLEDGER_DATABASE_URL",
        "FLEETLEDGER_CURRENCY",
        "TOKENLEDGER_CURRENCY",
    ):
        monkeypatch.delenv(name, raising=False)


def test_version_option_prints_the_distribution_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"fleetledger {version('fleetledger')}"


def test_old_variable_is_read_under_the_new_name_with_one_warning(monkeypatch, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setenv("TOKENLEDGER_DATABASE_URL", url)
    with pytest.warns(
        FutureWarning, match="TOKENLEDGER_DATABASE_URL is deprecated and read as FLEETLEDGER_DATABASE_URL"
    ):
        assert Settings().database_url == url
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Settings().database_url == url  # warned once per variable, not on every Settings()


def test_new_variable_wins_over_the_old_one(monkeypatch) -> None:
    monkeypatch.setenv("TOKENLEDGER_CURRENCY", "EUR")
    monkeypatch.setenv("FLEETLEDGER_CURRENCY", "GBP")
    with pytest.warns(FutureWarning, match="ignored in favour of FLEETLEDGER_CURRENCY"):
        assert Settings().currency == "GBP"


def test_the_command_warns_about_an_old_variable_and_uses_it(tmp_path) -> None:
    db = tmp_path / "legacy.db"
    env = {"TOKENLEDGER_DATABASE_URL": f"sqlite:///{db}", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", "from fleetledger.cli import main; main()", "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "TOKENLEDGER_DATABASE_URL is deprecated" in done.stderr
    assert db.exists()
