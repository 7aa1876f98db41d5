"""Cost Management page load in Chromium (Playwright) on a 1M-event, 50-department demo ledger.

Targets (issue 6): the 30-day fleet view with every above-the-fold chart rendered in <= 1 s, and
the sunburst for 50 departments x ~200 agents rendered in <= 2 s. The ledger is the cached
``insights-50d-1000000.db`` of ``bench/run.py`` (built on first use, several minutes); the server
runs in this process on a loopback port with the clock at the ledger's end, and Debian's Chromium
loads the page. "Above the fold rendered" is the page's own mark (``data-first-paint``: KPI cards,
budget cards, total spend with its forecast and the stacked trend drawn); the sunburst mark is set
right after its ``setOption``. Each figure is measured from navigation start (``performance.timeOrigin``).

The first load after the server starts is reported separately (``cold``): it pays the forecast's
statsmodels import and fit, and SQLite's page cache. The warm loads are what a user reopening the
page sees (the forecast is cached on the database version).

    .venv/bin/python bench/dashboard.py [--loads 5] [--events 1000000]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import uvicorn

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (bench/run.py: the cached ledgers, machine(), save())

from fleetledger import Ledger, Settings  # noqa: E402
from fleetledger.server import create_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(app) -> tuple[uvicorn.Server, str]:
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def _load(browser, url: str) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function("document.body.dataset.firstPaint", timeout=120_000)
    page.wait_for_function("document.getElementById('c-sunburst').dataset.renderedAt", timeout=120_000)
    page.wait_for_function("document.body.dataset.loaded", timeout=300_000)
    marks = page.evaluate(
        """() => ({
            first: Number(document.body.dataset.firstPaint) - performance.timeOrigin,
            sunburst: Number(document.getElementById('c-sunburst').dataset.renderedAt) - performance.timeOrigin,
            all: Number(document.body.dataset.loaded) - performance.timeOrigin,
            rings: document.querySelectorAll('#c-sunburst canvas').length,
        })"""
    )
    page.close()
    if errors:
        raise RuntimeError(f"page errors: {errors}")
    return {k: round(float(v) / (1 if k == "rings" else 1000), 3) for k, v in marks.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--departments", type=int, default=50)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    path = bench.build_insights_ledger(args.events, departments=args.departments)
    ledger = Ledger(
        settings=Settings(database_url=f"sqlite:///{path}", spool_dir=bench.CACHE / "dashboard-spool"),
        clock=lambda: bench.END,
        background=False,
    )
    server, base = _serve(create_app(ledger, local_only=True))
    url = base + "/dashboard/cost"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            cold = _load(browser, url)
            warm = [_load(browser, url) for _ in range(args.loads)]
            browser.close()
    finally:
        server.should_exit = True
        ledger.close()
    summary = {
        key: {"median_s": statistics.median(w[key] for w in warm), "max_s": max(w[key] for w in warm)}
        for key in ("first", "sunburst", "all")
    }
    bench.save(
        "dashboard",
        {
            "ledger": f"{args.events:,} events, 90 days, {args.departments} departments (bench/run.py insights ledger)",
            "view": "30-day fleet view, environment=production, 1280x900, Debian Chromium via Playwright",
            "targets": {"above_the_fold_s": 1.0, "sunburst_s": 2.0},
            "cold_first_load": cold,
            "warm_loads": warm,
            "summary": summary,
            "met": {
                "above_the_fold": summary["first"]["median_s"] <= 1.0,
                "sunburst": summary["sunburst"]["median_s"] <= 2.0,
            },
        },
    )


if __name__ == "__main__":
    main()
