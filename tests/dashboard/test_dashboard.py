"""The Cost Management dashboard driven in Debian's Chromium through Playwright."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest

from fleetledger import Ledger, Settings
from fleetledger.access.keys import create_key
from fleetledger.demo.generator import DemoSpec, load_demo
from fleetledger.server import create_app
from support import running

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SCREENSHOTS = os.environ.get("FLEETLEDGER_SCREENSHOTS")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dashboard")
    ledger = Ledger(
        settings=Settings(database_url=f"sqlite:///{folder / 'd.db'}", spool_dir=folder / "s"), background=False
    )
    load_demo(ledger, DemoSpec(seed=5, days=30, events=15_000, end=ledger.clock()))
    keys = {
        "finops": create_key(ledger.store, role="finops", name="cfo", now=ledger.clock())[0],
        "head": create_key(ledger.store, role="department_head", departments=["research"], now=ledger.clock())[0],
    }
    with running(create_app(ledger, local_only=True)) as base:
        yield base, keys, ledger
    ledger.close()


def open_page(browser, base, key, path="/dashboard/cost", *, wait_for_stream=False):
    """``wait_for_stream``: return once the page's live stream is answered, i.e. subscribed."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(f"sessionStorage.setItem('fleetledger-key', {key!r})")
    if wait_for_stream:
        with page.expect_response(lambda r: r.url.endswith("/api/stream") and r.ok):
            page.goto(base + path)
    else:
        page.goto(base + path)
    page.wait_for_function("document.body.dataset.loaded")
    return page, errors


def wait_render(page, before):
    page.wait_for_function(f"Number(document.body.dataset.loaded) > {before}")


def test_fleet_filters_drilldown_and_budgets(browser, site):
    base, keys, ledger = site
    page, errors = open_page(browser, base, keys["finops"])
    total_30d = page.locator('[data-kpi="Total spend"]').inner_text()
    assert "$" in total_30d
    assert page.locator("#c-sunburst canvas").count() == 1 and page.locator("#agents-table tbody tr").count() > 5
    assert page.locator("#c-total").get_attribute("data-model") == "ets_weekly"  # 30 days of history
    # today is not over: its spend so far is a marker on the forecast's first day, not the actual line's end
    total = page.evaluate(
        """() => { const o = echarts.getInstanceByDom(document.getElementById('c-total')).getOption();
                   const s = (n) => o.series.find((x) => x.name === n);
                   return { days: o.xAxis[0].data, actual: s('actual').data, today: s('today so far').data,
                            forecast: s('forecast').data }; }"""
    )
    first_forecast = next(i for i, v in enumerate(total["forecast"]) if v is not None)
    assert len(total["days"]) == len(set(total["days"]))  # no day twice on the axis
    assert all(v is not None for v in total["actual"][:first_forecast])
    assert all(v is None for v in total["actual"][first_forecast:])
    assert len(total["today"]) == 1 and total["today"][0][0] == first_forecast
    page.wait_for_selector("#cache-roi-result tbody tr")  # the caching ROI from the ledger's repeated prompts
    at_40 = page.locator("#cache-roi-result tbody td").nth(2).inner_text()
    page.fill("#cache-hit", "80")
    page.click("#cache-roi button")
    page.wait_for_function(f"document.querySelector('#cache-roi-result tbody td:nth-child(3)').innerText !== {at_40!r}")
    at_80 = page.locator("#cache-roi-result tbody td").nth(2).inner_text()

    def dollars(text: str) -> float:
        return float(text.replace("$", "").replace(",", ""))

    assert dollars(at_80) > dollars(at_40) > 0

    # filters change the URL and the figures
    before = page.evaluate("Number(document.body.dataset.loaded)")
    page.select_option("#f-range", "7d")
    wait_render(page, before)
    assert "range=7d" in page.url
    assert page.locator('[data-kpi="Total spend"]').inner_text() != total_30d
    before = page.evaluate("Number(document.body.dataset.loaded)")
    page.select_option("#f-department", ["research"])
    wait_render(page, before)
    assert "department=research" in page.url
    assert page.locator("#crumbs").inner_text().startswith("Fleet › research")
    page.reload()  # the URL alone restores the view
    page.wait_for_function("document.body.dataset.loaded")
    assert page.locator("#f-range").input_value() == "7d"

    # drill into an agent: token breakdown and the request list with trace ids
    before = page.evaluate("Number(document.body.dataset.loaded)")
    agent = page.locator("#agents-table tbody tr").first.locator("td").first.inner_text()
    page.locator("#agents-table tbody tr").first.click()
    wait_render(page, before)
    assert f"agent={agent}" in page.url and page.locator("#agent-title").inner_text() == f"Agent {agent}"
    page.wait_for_selector("#agent-requests tbody tr")

    # set a department budget, then adjust it with a justification
    page.click("#new-budget")
    page.fill('input[name="name"]', "research-monthly")
    page.fill('input[name="department"]', "research")
    page.fill('input[name="amount"]', "5000")
    page.click("#dialog-ok")
    page.wait_for_function(
        "!document.getElementById('dialog').open || document.getElementById('dialog-error').innerText"
    )
    assert page.locator("#dialog-error").inner_text() == ""
    card = page.locator('.card[data-budget="research-monthly"]')
    try:
        card.wait_for(timeout=60_000)
    except Exception:
        raise AssertionError(page.locator("#budgets").inner_text()) from None
    assert "$5,000.00" in card.locator("[data-limit]").inner_text()
    card.locator('button[data-act="adjust"]').click()
    page.fill('input[name="amount"]', "6000")
    page.click("#dialog-ok")
    # no justification yet: the browser holds the form back (the field is required), nothing is sent
    assert page.locator("#dialog").evaluate("d => d.open") and page.locator("#dialog-error").inner_text() == ""
    page.fill('input[name="justification"]', "Q4 research push")
    page.click("#dialog-ok")
    page.wait_for_function(
        "document.querySelector('.card[data-budget=\"research-monthly\"] [data-limit]').innerText.includes('6,000')"
    )
    history = httpx.get(
        f"{base}/api/budgets/research-monthly/history", headers={"Authorization": f"Bearer {keys['finops']}"}
    ).json()
    assert [h["kind"] for h in history] == ["created", "adjusted"] and history[1]["justification"] == "Q4 research push"

    # an overage requested by the department head is approved from the card
    httpx.post(
        f"{base}/api/budgets/research-monthly/overage-requests",
        json={"amount": "500", "justification": "conference"},
        headers={"Authorization": f"Bearer {keys['head']}"},
    ).raise_for_status()
    before = page.evaluate("Number(document.body.dataset.loaded)")
    page.reload()
    page.wait_for_function("document.body.dataset.loaded")
    page.locator('.card[data-budget="research-monthly"] button[data-act="approve"]').click()
    page.wait_for_function(
        "document.querySelector('.card[data-budget=\"research-monthly\"] [data-limit]').innerText.includes('6,500')"
    )
    # find savings, then move the top recommendation through review to implemented
    page.click("#scan-savings")
    page.wait_for_selector("#leaderboard tbody tr")
    first = page.locator("#leaderboard tbody tr").first
    first.locator('button[data-to="approved"]').click()
    page.wait_for_selector('#leaderboard tbody tr button[data-to="implemented"]')
    page.locator('#leaderboard tbody tr button[data-to="implemented"]').first.click()
    page.wait_for_function(
        "[...document.querySelectorAll('#leaderboard [data-status]')].some(td => td.innerText === 'implemented')"
    )
    # scan for anomalies and mark one expected (the empty state must not be an error either way)
    page.click("#scan-anomalies")
    page.wait_for_function(
        "!document.querySelector('#anomalies .state.error')"
        " && document.querySelector('#anomalies').innerText.length > 0"
    )
    if page.locator("#anomalies tbody tr").count():
        page.locator('#anomalies button[data-to="expected"]').first.click()
        page.wait_for_function(
            "[...document.querySelectorAll('#anomalies [data-status]')].some(td => td.innerText === 'expected')"
        )
    assert errors == []
    page.close()


def test_live_alert_toast(browser, site):
    base, keys, ledger = site
    # The bus does not replay: the warning reaches the page only if its stream subscribed first.
    # The server subscribes before it answers /api/stream, so the answer's headers mean "subscribed".
    page, errors = open_page(browser, base, keys["finops"], wait_for_stream=True)
    headers = {"Authorization": f"Bearer {keys['finops']}"}
    httpx.post(
        f"{base}/api/budgets",
        json={"name": "lab", "amount": "1", "scope": {"department": "lab"}, "action": "notify"},
        headers=headers,
    ).raise_for_status()
    event = {
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 340_000,
        "department": "lab",
        "timestamp": ledger.clock().isoformat(),
    }
    httpx.post(f"{base}/api/v1/events", json=[event], headers=headers).raise_for_status()
    toast = page.locator(".toast", has_text="Budget lab: warning")
    toast.wait_for(timeout=60_000)
    assert "85.00%" in toast.inner_text()
    assert errors == []
    page.close()


def test_department_head_sees_only_its_department(browser, site):
    base, keys, _ = site
    page, errors = open_page(browser, base, keys["head"])
    assert page.locator("#new-budget").is_hidden()  # a department head cannot create budgets
    departments = {row.locator("td").nth(1).inner_text() for row in page.locator("#agents-table tbody tr").all()}
    assert departments == {"research"}
    assert errors == []
    page.close()
