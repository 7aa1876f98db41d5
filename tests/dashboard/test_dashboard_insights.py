"""Issue 6 panels of the Cost Management page, driven in Debian's Chromium through Playwright:
forecast scenarios, anomaly markers and timeline, the matrices with their Pareto frontiers, the
pricing table with TCO, the provider-shift estimate, and the actions (export, schedules, alerts,
experiments, gateway policies), each checked against the REST API and the roles."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from fleetledger import Ledger, Settings
from fleetledger.access.keys import create_key
from fleetledger.demo.generator import DemoSpec, load_demo
from fleetledger.server import create_app
from support import running

from .test_dashboard import SCREENSHOTS, open_page, wait_render


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("insights")
    ledger = Ledger(
        settings=Settings(database_url=f"sqlite:///{folder / 'd.db'}", spool_dir=folder / "s"), background=False
    )
    load_demo(ledger, DemoSpec(seed=7, days=30, events=8_000, end=ledger.clock()))
    now = ledger.clock()
    for n in range(600):  # a runaway loop three days ago: the fleet anomaly the timeline must show
        ledger.record(provider="openai", model="gpt-4o", agent="research-researcher-1", department="research",
                      environment="production", operation="research", input_tokens=30_000, output_tokens=2_000,
                      timestamp=now - timedelta(days=3, hours=n % 10, minutes=n % 60))  # fmt: skip
    ledger.flush()
    keys = {
        "finops": create_key(ledger.store, role="finops", name="finops", now=now)[0],
        "viewer": create_key(ledger.store, role="viewer", departments=["research"], name="viewer", now=now)[0],
    }
    with running(create_app(ledger, local_only=True)) as base:
        headers = {"Authorization": f"Bearer {keys['finops']}"}
        found = httpx.post(f"{base}/api/anomalies/scan?since=90d", headers=headers, timeout=120).json()
        assert found["found"] >= 1, found
        yield base, keys, ledger
    ledger.close()


def get(base, key, path, **params):
    response = httpx.get(f"{base}{path}", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=120)
    response.raise_for_status()
    return response.json()


def dollars(text: str) -> Decimal:
    return Decimal(text.replace("$", "").replace(",", "").replace("−", "-"))


def test_scenarios_change_the_forecast_line(browser, site):
    base, keys, _ = site
    page, errors = open_page(browser, base, keys["finops"])
    page.wait_for_function("document.getElementById('c-scenario').dataset.scenarioTotal")
    baseline = get(base, keys["finops"], "/api/forecast", horizon=30)["forecasts"][0]["total_usd"]["mean"]
    assert page.locator("#c-scenario").get_attribute("data-scenario-total") == baseline
    page.fill("#sc-traffic", "20")
    page.fill("#sc-optimization", "5")
    page.click("#scenario-form button")
    page.wait_for_function(f"document.getElementById('c-scenario').dataset.scenarioTotal !== {baseline!r}")
    api = get(base, keys["finops"], "/api/forecast", horizon=30, traffic_pct="20", optimization_pct="5")["forecasts"][0]
    assert page.locator("#c-scenario").get_attribute("data-scenario-total") == api["total_usd"]["mean"]
    assert api["scenario"]["factor"] == "1.140"  # 1.2 x 0.95, exact
    # a model switch: every gpt-4o call on gpt-4o-mini, priced by the engine
    page.select_option("#sc-from", "gpt-4o")
    page.select_option("#sc-to", "gpt-4o-mini")
    page.click("#scenario-form button")
    page.wait_for_function("document.getElementById('c-scenario').dataset.factor !== '1.140'")
    switched = get(base, keys["finops"], "/api/forecast", horizon=30, traffic_pct="20", optimization_pct="5",
                   switch_from="gpt-4o", switch_to="gpt-4o-mini", switch_share="1")["forecasts"][0]  # fmt: skip
    assert page.locator("#c-scenario").get_attribute("data-factor") == switched["scenario"]["factor"]
    assert Decimal(switched["scenario"]["factor"]) < Decimal("1.140")
    # the 90-day horizon
    page.select_option("#sc-horizon", "90")
    page.wait_for_function("document.querySelector('#scenario-summary').innerText.includes('next 90 days')")
    assert "runway" in page.locator("#scenario-summary").inner_text().lower()
    assert errors == []
    page.close()


def test_anomaly_markers_timeline_and_mark_expected(browser, site):
    base, keys, _ = site
    page, errors = open_page(browser, base, keys["finops"])
    page.wait_for_function("Number(document.getElementById('c-anomaly-timeline').dataset.count) > 0")
    assert int(page.locator("#c-trend").get_attribute("data-anomalies")) >= 1  # pins on the stacked trend
    # click the anomaly's marker on the timeline canvas: the investigation opens with its root causes
    point = page.evaluate("""async () => {
        const core = await import('/dashboard/static/core.js');
        document.getElementById('c-anomaly-timeline').scrollIntoView({ block: 'center' });
        const c = core.charts['c-anomaly-timeline'];
        const series = c.getOption().series;
        const i = series.findIndex((s) => s.data.length);
        const px = c.convertToPixel({ seriesIndex: i }, series[i].data[0].value);
        const box = document.getElementById('c-anomaly-timeline').getBoundingClientRect();
        return { x: box.left + px[0], y: box.top + px[1], id: series[i].data[0].a.id };
    }""")
    page.mouse.click(point["x"], point["y"])
    detail = page.locator("#anomaly-detail")
    detail.wait_for(state="visible")
    # the panel opens at once and fills in when the anomaly's details have been fetched
    page.wait_for_selector("#anomaly-detail[data-anomaly]")
    assert detail.get_attribute("data-anomaly") == str(point["id"])
    assert "Root cause" in detail.inner_text() and "impact" in detail.inner_text()
    detail.locator('button[data-move="expected"]').click()
    page.wait_for_function("document.querySelector('#anomaly-detail [data-status]').innerText === 'expected'")
    stored = {a["id"]: a for a in get(base, keys["finops"], "/api/anomalies")}
    assert stored[point["id"]]["status"] == "expected"
    assert errors == []
    page.close()


def test_model_matrix_frontier_and_quality_edit(browser, site):
    base, keys, _ = site
    page, errors = open_page(browser, base, keys["finops"])
    page.wait_for_function("document.getElementById('c-models').dataset.frontier")
    api = get(base, keys["finops"], "/api/matrix/models", since="30d", where="environment=production")
    expected = ",".join(f"{f['provider']}/{f['model']}" for f in api["frontier"])
    assert page.locator("#c-models").get_attribute("data-frontier") == expected
    assert page.locator("#models-table tbody tr").count() == len(
        [m for m in api["models"] if m["cost_per_request_usd"]]
    )
    # the cheapest scored chat model is always on the frontier
    chat = [m for m in api["models"] if m["kind"] == "chat" and m["quality"] and Decimal(m["cost_per_request_usd"]) > 0]
    cheapest = min(chat, key=lambda m: Decimal(m["cost_per_request_usd"]))
    assert f"{cheapest['provider']}/{cheapest['model']}" in expected.split(",")
    # edit a score from the page: the top-quality model drops to 1 and leaves the frontier
    top = max(chat, key=lambda m: (Decimal(m["quality"]), -Decimal(m["cost_per_request_usd"])))
    if top is not cheapest:
        page.click("#edit-quality")
        page.select_option('select[name="family"]', f"{top['provider']}/{top['quality_family']}")
        page.fill('input[name="score"]', "1")
        page.click("#dialog-ok")
        gone = f"{top['provider']}/{top['model']}"
        page.wait_for_function(f"!document.getElementById('c-models').dataset.frontier.split(',').includes({gone!r})")
        catalog = get(base, keys["finops"], "/api/quality-catalog")
        assert catalog["families"][f"{top['provider']}/{top['quality_family']}"]["score"] == 1
    # the provider matrix draws its frontier from the same API
    page.wait_for_function("document.getElementById('c-provider-matrix').dataset.frontier !== undefined")
    providers = get(base, keys["finops"], "/api/matrix/providers", since="30d", where="environment=production")
    assert page.locator("#c-provider-matrix").get_attribute("data-frontier") == ",".join(providers["frontier"])
    assert errors == []
    page.close()


def test_tco_calculator_matches_the_api_and_provider_shift(browser, site):
    base, keys, _ = site
    page, errors = open_page(browser, base, keys["finops"])
    page.fill("#tco-requests", "250000")
    page.fill("#tco-in", "3000")
    page.fill("#tco-out", "500")
    page.fill("#tco-cache", "40")
    page.fill("#pt-search", "gpt-4o")
    page.select_option("#pt-provider", "openai")
    page.click("#pricing-form button")
    cells = "#pricing-table tbody td[data-col=model] b"
    page.wait_for_function(f"[...document.querySelectorAll('{cells}')].some(b => b.innerText === 'gpt-4o')")
    rows = page.locator("#pricing-table tbody tr").all()
    target = next(r for r in rows if r.locator('td[data-col="model"] b').inner_text() == "gpt-4o")
    api = get(base, keys["finops"], "/api/pricing/tco", provider="openai", model="gpt-4o", requests_per_month="250000",
              input_tokens="3000", output_tokens="500", cache_hit_pct="40")  # fmt: skip
    assert dollars(target.locator('td[data-col="tco_monthly_usd"]').inner_text()) == Decimal(
        api["monthly_usd"]
    ).quantize(Decimal("0.01"))
    target.click()
    page.wait_for_selector("#tco-detail [data-tco-monthly]")
    assert page.locator("#tco-detail [data-tco-monthly]").get_attribute("data-tco-monthly") == api["monthly_usd"]
    assert api["profile"]["cache_read_tokens"] == 1200
    # what if half the traffic moved to Azure: the page shows the API's exact figure
    page.fill("#ps-share", "50")
    page.select_option("#ps-to", "azure")
    page.click("#shift-form button")
    page.wait_for_selector("#shift-result [data-savings]")
    shift = get(base, keys["finops"], "/api/whatif/provider-shift", to_provider="azure", share_pct="50", since="30d",
                where="environment=production")  # fmt: skip
    assert page.locator("#shift-result [data-savings]").get_attribute("data-savings") == shift["savings_usd"]
    assert page.locator("#shift-result tbody tr").count() >= 1
    assert errors == []
    page.close()


def test_alert_rule_experiment_and_schedule(browser, site):
    base, keys, _ = site
    page, errors = open_page(browser, base, keys["finops"])
    # a cost alert on the fleet's daily spend
    page.click("#new-cost-alert")
    page.fill('input[name="name"]', "fleet-daily-200")
    page.fill('input[name="amount"]', "200")
    page.click("#dialog-ok")
    page.wait_for_selector('#alert-rules td[data-col="name"]:has-text("fleet-daily-200")')
    rules = {r["name"]: r for r in get(base, keys["finops"], "/api/alerts/rules")}
    assert rules["fleet-daily-200"]["kind"] == "absolute_spend"
    assert rules["fleet-daily-200"]["params"]["amount_usd"] in ("200", "200.00", "200.000000000")
    # a budget alert at 80%, with a server-side error shown (not swallowed) first: a duplicate name
    page.click("#new-budget-alert")
    page.fill('input[name="name"]', "fleet-daily-200")
    page.click("#dialog-ok")
    page.wait_for_function("document.getElementById('dialog-error').innerText.length > 0")
    page.fill('input[name="name"]', "budgets-80")
    page.click("#dialog-ok")
    page.wait_for_selector('#alert-rules td[data-col="name"]:has-text("budgets-80")')
    # a cost experiment, then its analysis
    page.click("#new-experiment")
    page.fill('input[name="name"]', "exp-mini")
    page.click("#dialog-ok")
    page.wait_for_selector('#experiments td[data-col="name"]:has-text("exp-mini")')
    assert "exp-mini" in {e["name"] for e in get(base, keys["finops"], "/api/experiments")}
    page.locator("#experiments tbody tr", has_text="exp-mini").click()
    page.wait_for_selector("#experiment-result .facts")
    # schedule a monthly cost review (the reports API)
    page.click("#new-schedule")
    page.fill('input[name="name"]', "Monthly FinOps review")
    page.select_option('select[name="format"]', "xlsx")
    page.click("#dialog-ok")
    page.wait_for_selector('#schedules td[data-col="name"]:has-text("Monthly FinOps review")')
    schedules = get(base, keys["finops"], "/api/reports/schedules")
    schedules = schedules if isinstance(schedules, list) else schedules.get("schedules", [])
    made = [s for s in schedules if s["name"] == "Monthly FinOps review"]
    assert made and made[0]["recurrence"] == "monthly" and made[0]["format"] == "xlsx"
    assert errors == []
    page.close()


def test_export_excel(browser, site, tmp_path):
    base, keys, _ = site
    from openpyxl import load_workbook

    page, errors = open_page(browser, base, keys["finops"])
    page.click("#export-report")
    page.select_option('select[name="format"]', "xlsx")
    with page.expect_download(timeout=60_000) as info:
        page.click("#dialog-ok")
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    assert path.suffix == ".xlsx"
    book = load_workbook(path)
    assert {"Summary", "Detailed"} <= set(book.sheetnames)
    assert book["Summary"].max_row > 1
    assert errors == []
    page.close()


def test_apply_a_recommendation_as_a_gateway_policy(browser, site):
    base, keys, _ = site
    headers = {"Authorization": f"Bearer {keys['finops']}"}
    httpx.post(f"{base}/api/recommendations/scan", params={"min_savings_usd": "0"}, headers=headers, timeout=120)
    page, errors = open_page(browser, base, keys["finops"])
    button = page.locator("#leaderboard button", has_text="Apply in gateway").first
    button.wait_for()
    rec_id = int(button.get_attribute("data-apply"))
    rec = {r["id"]: r for r in get(base, keys["finops"], "/api/recommendations")}[rec_id]
    button.click()
    page.click("#dialog-ok")
    page.wait_for_function(
        "!document.getElementById('dialog').open || document.getElementById('dialog-error').innerText"
    )
    assert page.locator("#dialog-error").inner_text() == ""
    policies = get(base, keys["finops"], "/api/gateway/policies")["policies"]
    made = [p for p in policies if p["recommendation_id"] == rec_id]
    kinds = {"model_downgrade": "model_downgrade", "caching": "cache", "provider_switch": "provider_switch",
             "output_cap": "max_output_tokens"}  # fmt: skip
    assert made and made[0]["kind"] == kinds[rec["kind"]]
    page.wait_for_selector("#policies-panel:not(.hidden) #policies tbody tr")
    # the recommendation now names its policy instead of offering to apply it again
    page.wait_for_selector(f'#leaderboard [data-policy="{made[0]["id"]}"]')
    assert errors == []
    page.close()


def test_viewer_sees_figures_but_no_actions(browser, site):
    base, keys, _ = site
    page, errors = open_page(browser, base, keys["viewer"])
    page.wait_for_function("document.getElementById('c-models').dataset.frontier !== undefined")
    for hidden in ("#new-budget", "#new-budget-alert", "#new-cost-alert", "#new-channel", "#new-experiment",
                   "#new-schedule", "#edit-quality", "#scan-savings", "#scan-anomalies"):  # fmt: skip
        assert page.locator(hidden).is_hidden(), hidden
    assert page.locator("#leaderboard button", has_text="Apply in gateway").count() == 0
    assert page.locator("#c-scenario canvas").count() == 1 and page.locator("#pricing-table tbody tr").count() > 0
    # the server refuses what the page hides: the key's role is enforced there, not only here
    refused = httpx.put(f"{base}/api/quality-catalog", json={"families": {"openai/gpt-4o": {"score": 1}}},
                        headers={"Authorization": f"Bearer {keys['viewer']}"})  # fmt: skip
    assert refused.status_code == 403
    assert errors == []
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/viewer.png", full_page=False)
    page.close()


def test_three_levels_render_cleanly(browser, site):
    """Fleet -> department -> agent with budgets and anomalies in place (the README screenshots)."""
    base, keys, _ = site
    headers = {"Authorization": f"Bearer {keys['finops']}"}
    for name, scope, amount in (("org-monthly", {}, "400"), ("research-monthly", {"department": "research"}, "60"),
                                ("engineering-monthly", {"department": "engineering"}, "90")):  # fmt: skip
        httpx.post(f"{base}/api/budgets", json={"name": name, "amount": amount, "scope": scope}, headers=headers)
    page, errors = open_page(browser, base, keys["finops"])
    page.wait_for_function("Number(document.getElementById('c-anomaly-timeline').dataset.count) >= 0")
    assert page.locator("#budgets .card").count() >= 3
    assert page.locator("#c-models canvas").count() == 1 and page.locator("#c-provider-matrix canvas").count() == 1
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/fleet.png", full_page=True)
    before = page.evaluate("Number(document.body.dataset.loaded)")
    page.select_option("#f-department", ["engineering"])
    wait_render(page, before)
    assert page.locator("#crumbs").inner_text().startswith("Fleet › engineering")
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/department.png", full_page=True)
    before = page.evaluate("Number(document.body.dataset.loaded)")
    # a demo agent with trace context (the synthetic runaway loop has none)
    row = next(r for r in page.locator("#agents-table tbody tr").all() if "researcher-1" not in r.inner_text())
    agent = row.locator("td").first.inner_text()
    row.click()
    wait_render(page, before)
    page.wait_for_selector("#agent-requests tbody tr")
    assert page.locator("#agent-title").inner_text() == f"Agent {agent}"
    if SCREENSHOTS:
        page.screenshot(path=f"{SCREENSHOTS}/agent.png", full_page=True)
    assert errors == []
    page.close()
