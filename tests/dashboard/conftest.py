"""Shared by the dashboard's browser tests: Debian's Chromium driven by Playwright (never downloaded)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("CI=true but Debian's chromium is not installed (apt-get install -y chromium)")
        pytest.skip("browser tests skipped: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield _Browser(instance)
        instance.close()


class _Browser:
    """The Playwright browser, whose pages wait up to 60 s (not 30) for what they expect: the
    dashboard renders charts on a machine that may be running other suites."""

    def __init__(self, browser) -> None:
        self._browser = browser

    def new_page(self, **options):
        page = self._browser.new_page(**options)
        page.set_default_timeout(60_000)
        return page

    def __getattr__(self, name: str):
        return getattr(self._browser, name)
