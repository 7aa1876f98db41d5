/* fleetledger Cost Management dashboard: the page's charts over the REST API (entry module).
   The URL holds the whole view (filters, level, currency) so a view can be shared and reloaded.
   Panels added for issue 6 live in insights.js (forecast scenarios, anomaly timeline, matrices,
   pricing and TCO, provider shift) and actions.js (export, schedules, alerts, experiments, gateway). */

import { api, apiShared, newRender, axisMoney, can, chart, chartError, charts, decimals, dialog, esc, families, hooks, loading, me, money,
  rangeParams, rates, setState, state, table, toast, whereParams, writeState } from "./core.js";
import { anomalyMarkers, fillModelChoices, insightTasks, wireInsights } from "./insights.js";
import { actionTasks, applyButton, prepareActions, wireActions } from "./actions.js";

// ---------------------------------------------------------------------------------------------
// rendering

async function render() {
  newRender();
  syncControls();
  crumbs();
  document.getElementById("agent-detail").classList.toggle("hidden", !state.agent);
  // Above the fold first, then the rest: the browser opens six connections per host, so the
  // order of the requests is the order the panels appear in. The sunburst starts with the first
  // batch (it is the slowest query) but does not hold the first-paint mark.
  const first = [kpis(), budgets(), total(), trend()];
  if (state.agent) first.push(agentDetail());
  const sun = sunburst();
  await Promise.allSettled(first);
  document.body.dataset.firstPaint = String(Date.now());
  if (!optionsLoading) optionsLoading = loadOptions();
  await Promise.allSettled([sun, waterfall("c-waterfall", {}), providers(), distribution(), agents(), sankey(),
    prepareActions().then(leaderboard), anomalyTable(), cachingRoi(), ...insightTasks(), ...actionTasks(), optionsLoading]);
  document.body.dataset.loaded = String(Date.now());
}

let optionsLoading = null;
function loadOptions() {
  return Promise.all([fillOptions(), fillModelChoices()]).then(syncControls, (error) => toast("Could not load the filter lists: " + error.message, "critical"));
}

hooks.render = render;

function crumbs() {
  const parts = ['<a data-level="fleet">Fleet</a>'];
  if (state.department.length) parts.push(`<a data-level="department">${esc(state.department.join(" vs "))}</a>`);
  if (state.agent) parts.push(`<span>${esc(state.agent)}</span>`);
  const nav = document.getElementById("crumbs");
  nav.innerHTML = parts.join(" › ");
  nav.querySelectorAll("a").forEach((a) => a.addEventListener("click", () =>
    writeState(a.dataset.level === "fleet" ? { department: [], agent: "" } : { agent: "" })));
}

async function kpis() {
  const el = document.getElementById("kpis");
  try {
    const report = await api("/api/costs", { ...rangeParams(), where: whereParams(state.agent ? { agent: state.agent } : {}) });
    const t = report.total;
    el.innerHTML = [
      ["Total spend", money(t.cost_usd), `${report.since.slice(0, 10)} → ${report.until.slice(0, 10)}`],
      ["Requests", Number(t.requests).toLocaleString(), `${Number(t.errors).toLocaleString()} errors`],
      ["Cost per request", money(t.cost_per_request_usd), "average"],
      ["Cost per 1K tokens", money(t.cost_per_1k_tokens_usd), `${(Number(t.input_tokens) + Number(t.output_tokens)).toLocaleString()} tokens`],
      ["Unpriced requests", Number(t.unpriced_requests).toLocaleString(), t.unpriced_requests > 0 ? "unknown models: add prices" : "every request priced"],
    ].map(([label, value, sub]) => `<div class="kpi"><div class="label">${label}</div><div class="value" data-kpi="${label}">${value}</div><div class="sub">${esc(sub)}</div></div>`).join("");
  } catch (error) { setState(el, "Could not load totals: " + error.message, true); }
}

async function budgets() {
  const el = document.getElementById("budgets");
  try {
    const [status, pending] = await Promise.all([apiShared("/api/budget/status"), api("/api/approvals", { status: "pending" })]);
    const canWrite = can("budgets.write");
    document.getElementById("new-budget").classList.toggle("hidden", !canWrite);
    if (!status.length) { el.innerHTML = '<div class="state">No budgets yet.</div>'; return; }
    el.innerHTML = status.map((b) => {
      const waiting = pending.filter((p) => p.budget === b.name);
      return `<div class="card ${b.status}" data-budget="${esc(b.name)}">
        <div class="name">${esc(b.name)}</div>
        <div class="meta">${esc(b.scope)} · ${esc(b.period)} · action ${esc(b.action)}</div>
        <div class="bar"><span style="width:${Math.min(100, Number(b.percent_used))}%"></span></div>
        <div><b data-spent>${money(b.spent_usd)}</b> of <span data-limit>${money(b.limit_usd)}</span> (<span data-percent>${b.percent_used}</span>%)</div>
        <div class="meta">burn ${money(b.burn_rate_daily_usd)}/day · ${b.days_until_depletion ? b.days_until_depletion + " days left" : "no burn"}</div>
        ${canWrite ? `<button data-act="adjust">Adjust</button>` : ""}
        ${can("approvals.request") ? `<button data-act="overage">Request overage</button>` : ""}
        ${waiting.map((p) => `<div class="meta">Overage request #${p.approval_id}: ${money(p.requested_amount)} – ${esc(p.justification)}
          ${can("approvals.decide") ? `<button data-act="approve" data-id="${p.approval_id}">Approve</button><button data-act="decline" data-id="${p.approval_id}">Decline</button>` : ""}</div>`).join("")}
      </div>`;
    }).join("");
    el.querySelectorAll("button").forEach((button) => button.addEventListener("click", () =>
      budgetAction(button.dataset.act, button.closest(".card").dataset.budget, button.dataset.id)));
  } catch (error) { setState(el, "Could not load budgets: " + error.message, true); }
}

async function total() {
  loading("c-total");
  try {
    const params = { horizon: 30 };
    if (state.agent) params.agent = state.agent;
    else if (state.department.length === 1) params.department = state.department[0];
    const [history, forecasts, status] = await Promise.all([
      apiShared("/api/charts/trend", { ...rangeParams(), where: whereParams(state.agent ? { agent: state.agent } : {}), by: "provider" }),
      apiShared("/api/forecast", params), apiShared("/api/budget/status"),
    ]);
    let actual = history.days.map((_, i) => history.series.reduce((sum, s) => sum + Number(s.points[i]), 0));
    const f = forecasts.forecasts[0] || { points: [] };
    const future = f.points.map((p) => p.day);
    // Today is not over: the forecast starts today, so today's spend so far is a marker on the
    // forecast's first day, not the end of the actual line (which would seem to crash at the end).
    let pastDays = history.days;
    let today = null;
    if (future.length && pastDays.length && pastDays[pastDays.length - 1] === future[0]) {
      today = actual[actual.length - 1];
      pastDays = pastDays.slice(0, -1);
      actual = actual.slice(0, -1);
    }
    const days = [...pastDays, ...future];
    const pad = (values) => [...pastDays.map(() => null), ...values];
    const band = (lo, hi) => [pad(f.points.map((p) => Number(p[lo]))), pad(f.points.map((p) => Number(p[hi]) - Number(p[lo])))];
    const [lo95, w95] = band("lo95_usd", "hi95_usd");
    const [lo80, w80] = band("lo80_usd", "hi80_usd");
    const scope = state.department.length === 1 ? state.department[0] : null;
    const budget = status.find((b) => b.period === "monthly" && (scope ? b.scope === `department=${scope}` : b.scope === "org"));
    const title = f.model ? `${f.model} · backtested MAPE ${f.backtest.mape ?? "–"}% · 95% coverage ${f.backtest.coverage95 ?? "–"}%` : (f.reason || "no forecast");
    chart("c-total").setOption({
      title: { text: title, textStyle: { fontSize: 12 }, right: 10 },
      tooltip: { trigger: "axis", valueFormatter: (v) => (v === null || v === undefined ? "–" : money(v)) },
      legend: { top: 0, left: 0, data: ["actual", "today so far", "forecast", "80%", "95%"] },
      grid: { left: 60, right: 20, top: 40, bottom: 30 },
      xAxis: { type: "category", data: days }, yAxis: { type: "value", axisLabel: { formatter: (v) => money(v) } },
      series: [
        { name: "95%", type: "line", stack: "b95", data: lo95, lineStyle: { opacity: 0 }, symbol: "none", tooltip: { show: false } },
        { name: "95%", type: "line", stack: "b95", data: w95, lineStyle: { opacity: 0 }, symbol: "none", areaStyle: { opacity: 0.12 } },
        { name: "80%", type: "line", stack: "b80", data: lo80, lineStyle: { opacity: 0 }, symbol: "none", tooltip: { show: false } },
        { name: "80%", type: "line", stack: "b80", data: w80, lineStyle: { opacity: 0 }, symbol: "none", areaStyle: { opacity: 0.22 } },
        { name: "actual", type: "line", data: [...actual, ...future.map(() => null)], symbol: "none",
          markLine: budget ? { symbol: "none", label: { formatter: `${budget.name} pace` },
            data: [{ yAxis: Number(budget.limit_usd) / periodDays(budget) }] } : undefined },
        { name: "forecast", type: "line", data: pad(f.points.map((p) => Number(p.mean_usd))), symbol: "none", lineStyle: { type: "dashed" } },
        { name: "today so far", type: "scatter", symbolSize: 9, data: today === null ? [] : [[pastDays.length, today]] },
      ],
    }, true);
    document.getElementById("c-total").dataset.model = f.model || "";
  } catch (error) { chartError("c-total", error); }
}

async function trend() {
  loading("c-trend");
  try {
    const [data, marks] = await Promise.all([
      apiShared("/api/charts/trend", { ...rangeParams(), where: whereParams(state.agent ? { agent: state.agent } : {}), by: state.by }),
      anomalyMarkers()]);
    const top = data.days.map((_, i) => data.series.reduce((sum, s) => sum + Number(s.points[i]), 0));
    // a pin on the costliest day of each anomaly's window that this chart shows
    const points = marks.map((a) => {
      const inside = data.days.map((d, i) => [d, i]).filter(([d]) => d >= a.start && d < (a.end > a.start ? a.end : a.start + "~"));
      if (!inside.length) return null;
      const [d, i] = inside.reduce((best, cur) => (top[cur[1]] > top[best[1]] ? cur : best));
      return { name: `anomaly-${a.id}`, coord: [d, top[i]], value: a.label, anomaly: a, itemStyle: { color: a.color } };
    }).filter(Boolean);
    const c = chart("c-trend");
    c.setOption({
      tooltip: { trigger: "axis" }, legend: { type: "scroll", top: 0 }, grid: { left: 60, right: 20, top: 40, bottom: 30 },
      xAxis: { type: "category", data: data.days }, yAxis: { type: "value", axisLabel: { formatter: (v) => money(v) } },
      series: data.series.map((s, i) => ({ name: `${s.key ?? "(none)"} (${changeLabel(s)})`,
        type: "bar", stack: "spend", data: s.points.map(Number),
        markPoint: i === data.series.length - 1 && points.length ? { symbol: "pin", symbolSize: 34, data: points,
          label: { formatter: "!", fontWeight: 700 }, tooltip: { formatter: (p) => esc(p.data.anomaly.title) } } : undefined })),
    }, true);
    document.getElementById("c-trend").dataset.anomalies = String(points.length);
    c.off("click");
    c.on("click", (p) => {
      if (p.componentType === "markPoint") hooks.showAnomaly(p.data.anomaly.id);
      else if (p.seriesName && state.by !== "model") writeState({ [state.by]: state.by === "department" ? [p.seriesName.replace(/ \(.*$/, "")] : p.seriesName.replace(/ \(.*$/, "") });
    });
  } catch (error) { chartError("c-trend", error); }
}

function periodDays(budget) {
  // The month's real length (28 to 31 days, a DST shift rounded away), not a fixed 30.
  return Math.max(1, Math.round((Date.parse(budget.period_end) - Date.parse(budget.period_start)) / 86400000));
}

function changeLabel(series) {
  // A previous period with (almost) nothing in it makes percentages meaningless: say "new".
  if (series.change_pct === null || Number(series.previous_usd) * 20 < Number(series.total_usd)) return "new";
  const pct = Number(series.change_pct);
  return `${pct >= 0 ? "+" : ""}${pct.toFixed(1)}% vs previous`;
}

function treeValues(nodes) {
  return nodes.map((n) => ({ name: String(n.name), value: Number(n.value_usd), children: n.children ? treeValues(n.children) : undefined }));
}

async function sunburst() {
  loading("c-sunburst");
  try {
    const data = await api("/api/charts/sunburst", { ...rangeParams(), where: whereParams() });
    const c = chart("c-sunburst");
    c.setOption({ tooltip: { formatter: (p) => `${esc(p.name)}: ${money(p.value)}` },
      series: [{ type: "sunburst", radius: [0, "95%"], data: treeValues(data.children), label: { rotate: "radial", minAngle: 8 },
        levels: [{}, { r0: "0%", r: "30%" }, { r0: "30%", r: "60%" }, { r0: "60%", r: "80%" }, { r0: "80%", r: "95%", label: { show: false } }] }] }, true);
    document.getElementById("c-sunburst").dataset.renderedAt = String(Date.now());
    c.off("click");
    c.on("click", (p) => {
      const depth = (p.treePathInfo || []).length - 1;
      if (depth === 1) writeState({ department: [p.name], agent: "" });
      else if (depth >= 2) writeState({ agent: p.treePathInfo[2].name });
    });
  } catch (error) { chartError("c-sunburst", error); }
}

async function waterfall(id, extra) {
  loading(id);
  try {
    const data = await api("/api/charts/waterfall", { ...rangeParams(), where: whereParams(extra) });
    let running = 0;
    const base = [], values = [];
    for (const step of data.steps) { base.push(running); values.push(Number(step.cost_usd)); running += Number(step.cost_usd); }
    chart(id).setOption({
      tooltip: { trigger: "axis", formatter: (ps) => `${ps[1].name}: ${money(ps[1].value)}` },
      grid: { left: 60, right: 20, top: 30, bottom: 40 },
      title: { text: `cache saved ${money(data.cache_saved_usd)}`, textStyle: { fontSize: 12 }, right: 10 },
      xAxis: { type: "category", data: data.steps.map((s) => s.name.replace("_", " ")) },
      yAxis: { type: "value", axisLabel: { formatter: (v) => money(v) } },
      series: [{ type: "bar", stack: "w", data: base, itemStyle: { color: "transparent" } }, { type: "bar", stack: "w", data: values }],
    }, true);
  } catch (error) { chartError(id, error); }
}

async function providers() {
  loading("c-providers");
  try {
    const data = await api("/api/charts/providers", { ...rangeParams(), where: whereParams() });
    chart("c-providers").setOption({
      tooltip: {}, grid: { left: 60, right: 20, top: 20, bottom: 30 },
      xAxis: { type: "category", data: data.providers.map((p) => p.provider) },
      yAxis: { type: "value", axisLabel: { formatter: (v) => money(v) } },
      series: [{ type: "bar", data: data.providers.map((p) => Number(p.cost_usd)) }],
    }, true);
    table(document.getElementById("providers-table"), [
      { key: "provider", label: "Provider" }, { key: "cost_usd", label: "Cost", money: true, num: true },
      { key: "requests", label: "Requests", num: true }, { key: "cost_per_1k_tokens_usd", label: "Per 1K tokens", money: true, num: true },
      { key: "p90_latency_ms", label: "p90 latency ms", num: true }, { key: "error_rate_pct", label: "Errors %", num: true },
    ], data.providers, (row) => writeState({ provider: row.provider }));
  } catch (error) { chartError("c-providers", error); }
}

async function distribution() {
  loading("c-distribution");
  try {
    const data = await api("/api/charts/distribution", { ...rangeParams(), where: whereParams(state.agent ? { agent: state.agent } : {}) });
    chart("c-distribution").setOption({
      tooltip: {}, grid: { left: 50, right: 20, top: 30, bottom: 50 },
      title: { text: data.requests ? `p50 ${money(data.p50_usd)} · p90 ${money(data.p90_usd)} · p99 ${money(data.p99_usd)}` : "no requests", textStyle: { fontSize: 12 } },
      xAxis: { type: "category", data: (data.histogram || []).map((b) => money(b.from_usd)), axisLabel: { rotate: 40 } },
      yAxis: { type: "log", name: "requests" },
      series: [{ type: "bar", data: (data.histogram || []).map((b) => b.requests || null) }],
    }, true);
  } catch (error) { chartError("c-distribution", error); }
}

async function agents() {
  const el = document.getElementById("agents-table");
  try {
    const data = await api("/api/charts/agents", { ...rangeParams(), where: whereParams() });
    table(el, [
      { key: "agent", label: "Agent" }, { key: "department", label: "Department" }, { key: "main_operation", label: "Operation" },
      { key: "cost_usd", label: "Cost", money: true, num: true }, { key: "requests", label: "Requests", num: true },
      { key: "cost_per_request_usd", label: "Per request", money: true, num: true }, { key: "tokens_per_request", label: "Tokens/request", num: true },
      { key: "cache_hit_pct", label: "Cache %", num: true }, { key: "optimization_potential_usd", label: "Potential", money: true, num: true },
    ], data.agents, (row) => writeState({ agent: row.agent }));
  } catch (error) { setState(el, "Could not load agents: " + error.message, true); }
}

async function sankey() {
  loading("c-sankey");
  try {
    const data = await api("/api/charts/sankey", { ...rangeParams(), where: whereParams(), limit: 15 });
    chart("c-sankey").setOption({
      tooltip: { formatter: (p) => p.dataType === "edge" ? `${esc(p.data.source.split(":")[1] || p.data.source)} → ${esc(p.data.target.split(":")[1])}: ${money(p.data.value)}` : esc(p.name) },
      series: [{ type: "sankey", emphasis: { focus: "adjacency" }, nodeGap: 6,
        data: data.nodes.map((n) => ({ name: n.id, label: { formatter: n.name } })),
        links: data.links.map((l) => ({ source: l.source, target: l.target, value: Number(l.value_usd) })) }],
    }, true);
  } catch (error) { chartError("c-sankey", error); }
}

function shortId(id) {
  return id ? `<code title="${esc(id)}">${esc(String(id).slice(0, 12))}${String(id).length > 12 ? "…" : ""}</code>` : "–";
}

async function agentDetail() {
  document.getElementById("agent-title").textContent = "Agent " + state.agent;
  await waterfall("c-agent-waterfall", { agent: state.agent });
  const el = document.getElementById("agent-requests");
  try {
    const rows = await api("/api/requests", { ...rangeParams(), where: whereParams({ agent: state.agent }), limit: 25 });
    table(el, [
      { key: "timestamp", label: "Time (UTC)", html: (r) => esc(String(r.timestamp || "").slice(0, 19).replace("T", " ")) }, { key: "model", label: "Model" }, { key: "operation", label: "Operation" },
      { key: "input_tokens", label: "In", num: true }, { key: "output_tokens", label: "Out", num: true },
      { key: "cost_usd", label: "Cost", money: true, num: true }, { key: "trace_id", label: "Trace", html: (r) => shortId(r.trace_id) }, { key: "request_id", label: "Request", html: (r) => shortId(r.request_id) },
    ], rows);
  } catch (error) { setState(el, "Could not load requests: " + error.message, true); }
}

async function leaderboard() {
  const el = document.getElementById("leaderboard");
  const canWrite = can("budgets.write");
  document.getElementById("scan-savings").classList.toggle("hidden", !canWrite);
  try {
    const rows = (await api("/api/recommendations")).filter((r) => r.status !== "declined")
      .sort((a, b) => Number(b.savings_monthly_usd) - Number(a.savings_monthly_usd)).slice(0, 15);
    if (!rows.length) { setState(el, "No recommendations yet" + (canWrite ? ": use “Find savings”." : ".")); return; }
    el.innerHTML = "<table><thead><tr><th>Recommendation</th><th>Kind</th><th class=num>Now / month</th><th class=num>Saves / month</th>" +
      "<th class=num>Saves / year</th><th>Effort</th><th>Risk</th><th>Status</th><th></th></tr></thead><tbody>" +
      rows.map((r) => `<tr data-id="${r.id}"><td>${esc(r.title)}</td><td>${esc(r.kind)}</td><td class=num>${money(r.current_cost_monthly_usd)}</td>` +
        `<td class=num>${money(r.savings_monthly_usd)}</td><td class=num>${money(r.savings_annual_usd)}</td><td>${esc(r.effort)}</td>` +
        `<td>${esc(r.risk)}</td><td data-status>${esc(r.status)}</td><td>${canWrite ? nextSteps(r.status).map((s) =>
          `<button data-rec="${r.id}" data-to="${s}">${s.replace("_", " ")}</button>`).join(" ") : ""} ${applyButton(r)}</td></tr>`).join("") + "</tbody></table>";
    el.querySelectorAll("button[data-apply]").forEach((b) => b.addEventListener("click", () =>
      hooks.apply(rows.find((r) => String(r.id) === b.dataset.apply))));
    el.querySelectorAll("button[data-rec]").forEach((b) => b.addEventListener("click", () =>
      api(`/api/recommendations/${b.dataset.rec}`, {}, { method: "PATCH", body: { status: b.dataset.to } }).then(leaderboard, (e) => toast(e.message, "critical"))));
  } catch (error) { setState(el, "Could not load recommendations: " + error.message, true); }
}

function nextSteps(status) {
  return { identified: ["in_review", "approved", "declined"], in_review: ["approved", "declined"], approved: ["implemented", "declined"] }[status] || [];
}

document.getElementById("scan-savings").addEventListener("click", () =>
  api("/api/recommendations/scan", { min_savings_usd: "0.01" }, { method: "POST" }).then(leaderboard, (e) => toast(e.message, "critical")));

hooks.anomalyTable = () => anomalyTable();

async function anomalyTable() {
  const el = document.getElementById("anomalies");
  const canWrite = can("budgets.write");
  document.getElementById("scan-anomalies").classList.toggle("hidden", !canWrite);
  try {
    const rows = (await api("/api/anomalies", { limit: 20 }));
    if (!rows.length) { setState(el, "No anomalies recorded" + (canWrite ? ": use “Scan”." : ".")); return; }
    el.innerHTML = "<table><thead><tr><th>Window</th><th>Scope</th><th class=num>Expected</th><th class=num>Actual</th><th class=num>Impact</th>" +
      "<th>Likely cause</th><th>Status</th><th></th></tr></thead><tbody>" + rows.map((a) => {
        const cause = (a.causes || [])[0];
        return `<tr data-id="${a.id}"><td>${esc(String(a.start).slice(0, 10))} → ${esc(String(a.end).slice(0, 10))}</td>` +
          `<td>${esc(Object.entries(a.scope || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "fleet")}</td>` +
          `<td class=num>${money(a.expected_usd)}</td><td class=num>${money(a.actual_usd)}</td><td class=num>${money(a.impact_usd)} (${esc(a.impact_pct)}%)</td>` +
          `<td>${cause ? esc(`${cause.cause}: ${Object.entries(cause.dimension).map(([k, v]) => `${k}=${v}`).join(", ")}`) : ""}</td>` +
          `<td data-status>${esc(a.status)}</td><td>${canWrite && a.status === "detected" ? `<button data-anomaly="${a.id}" data-to="expected">mark expected</button> <button data-anomaly="${a.id}" data-to="investigating">investigate</button>` : ""}</td></tr>`;
      }).join("") + "</tbody></table>";
    el.querySelectorAll("button[data-anomaly]").forEach((b) => b.addEventListener("click", () =>
      api(`/api/anomalies/${b.dataset.anomaly}`, {}, { method: "PATCH", body: { status: b.dataset.to, note: "from the dashboard" } })
        .then(() => Promise.all([anomalyTable(), hooks.refreshAnomalies()]), (e) => toast(e.message, "critical"))));
  } catch (error) { setState(el, "Could not load anomalies: " + error.message, true); }
}

async function cachingRoi(event) {
  if (event) event.preventDefault();
  const el = document.getElementById("cache-roi-result");
  try {
    const r = await api("/api/roi", { hit_rate: document.getElementById("cache-hit").value, since: "30d",
      investment: document.getElementById("cache-investment").value || "0",
      monthly_operating_cost: document.getElementById("cache-running").value || "0" });
    table(el, [
      { key: "repeat_share_pct", label: "Repeated prompts %", num: true }, { key: "monthly_cacheable_spend", label: "Cacheable / month", money: true, num: true },
      { key: "monthly_savings", label: "Savings / month", money: true, num: true }, { key: "annual_savings", label: "Savings / year", money: true, num: true },
      { key: "payback_months", label: "Payback (months)", num: true }, { key: "roi_3y_pct", label: "3-year ROI %", num: true },
    ], [r]);
  } catch (error) { setState(el, "Could not calculate: " + error.message, true); }
}

document.getElementById("cache-roi").addEventListener("submit", cachingRoi);

document.getElementById("scan-anomalies").addEventListener("click", () =>
  api("/api/anomalies/scan", { since: "90d" }, { method: "POST" })
    .then(() => Promise.all([anomalyTable(), hooks.refreshAnomalies()]), (e) => toast(e.message, "critical")));

// ---------------------------------------------------------------------------------------------
// actions

function budgetAction(action, name, id) {
  if (action === "adjust") dialog(`Adjust ${name}`, [{ name: "amount", label: "New amount", required: true }, { name: "justification", label: "Justification", required: true }],
    (v) => api(`/api/budgets/${encodeURIComponent(name)}`, {}, { method: "PATCH", body: v }));
  if (action === "overage") dialog(`Request overage on ${name}`, [{ name: "amount", label: "Extra amount", required: true }, { name: "justification", label: "Justification", required: true }],
    (v) => api(`/api/budgets/${encodeURIComponent(name)}/overage-requests`, {}, { method: "POST", body: v }));
  if (action === "approve") api(`/api/approvals/${id}/approve`, {}, { method: "POST", body: {} }).then(render, (e) => toast(e.message, "critical"));
  if (action === "decline") api(`/api/approvals/${id}/decline`, {}, { method: "POST", body: {} }).then(render, (e) => toast(e.message, "critical"));
}

document.getElementById("new-budget").addEventListener("click", () =>
  dialog("Set department budget", [
    { name: "name", label: "Name", required: true, value: state.department.length ? `${state.department[0]}-monthly` : "" },
    { name: "department", label: "Department", required: true, value: state.department[0] || "" },
    { name: "amount", label: "Monthly amount (USD)", required: true }, { name: "action", label: "Action at 100% (block, notify, downgrade, throttle)", value: "notify" },
  ], (v) => api("/api/budgets", {}, { method: "POST", body: { name: v.name, amount: v.amount, scope: { department: v.department }, action: v.action || "notify" } })));

document.getElementById("key-button").addEventListener("click", () =>
  dialog("API key", [{ name: "key", label: "tl_… key (kept in this browser tab only)", value: sessionStorage.getItem("fleetledger-key") || "" }],
    async (v) => { sessionStorage.setItem("fleetledger-key", v.key); await start(); }));

// ---------------------------------------------------------------------------------------------
// live alerts (server-sent events read with fetch, so the API key can be sent)

async function live() {
  const key = sessionStorage.getItem("fleetledger-key");
  try {
    const response = await fetch("/api/stream", { headers: key ? { Authorization: "Bearer " + key } : {} });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        const topic = (frame.match(/^event: (.*)$/m) || [])[1];
        const data = (frame.match(/^data: (.*)$/m) || [])[1];
        if (!topic || !data) continue;
        const payload = JSON.parse(data);
        if (topic.startsWith("budget.")) {
          const level = topic.split(".")[1];
          toast(`Budget ${payload.name}: ${level} (${payload.percent_used ?? ""}% of ${money(payload.limit_usd)})`, level);
          budgets();
        } else if (topic === "alert.fired") toast(payload.title || payload.message || "Alert", payload.severity);
      }
    }
  } catch (error) { /* the stream reconnects below */ }
  setTimeout(live, 3000);
}

// ---------------------------------------------------------------------------------------------
// controls

function syncControls() {
  const filters = document.querySelector(".filters");
  filters.classList.toggle("show-custom", state.range === "custom");
  document.getElementById("f-range").value = state.range;
  document.getElementById("f-since").value = state.since;
  document.getElementById("f-until").value = state.until;
  for (const option of document.getElementById("f-department").options) option.selected = state.department.includes(option.value);
  for (const key of ["provider", "environment", "cost_center", "by", "family", "category", "agent_status"]) document.getElementById("f-" + key).value = state[key];
  for (const option of document.getElementById("f-agent_ids").options) option.selected = state.agent_ids.includes(option.value);
  document.getElementById("currency").value = state.currency;
}

async function fillOptions() {
  const params = { since: "90d", environment: "" };
  const [departments, providerRows, centers, agentRows, models] = await Promise.all([
    api("/api/costs", { ...params, by: "department" }), api("/api/costs", { ...params, by: "provider" }), api("/api/costs", { ...params, by: "cost_center" }),
    api("/api/costs", { ...params, by: "agent" }), api("/api/matrix/models", { since: "90d" }),
  ]);
  for (const key of Object.keys(families)) delete families[key];
  for (const m of models.models) (families[m.family] = families[m.family] || []).push(m.model);
  document.getElementById("f-family").innerHTML = '<option value="">All</option>' +
    Object.keys(families).sort().map((f) => `<option>${esc(f)}</option>`).join("");
  const fill = (id, rows, key, first) => {
    const el = document.getElementById(id);
    el.innerHTML = (first ? `<option value="">${first}</option>` : "") + rows.rows.filter((r) => r[key]).map((r) => `<option>${esc(r[key])}</option>`).join("");
  };
  fill("f-department", departments, "department", null);
  document.getElementById("f-department").size = Math.min(4, departments.rows.length || 1);
  fill("f-provider", providerRows, "provider", "All");
  fill("f-cost_center", centers, "cost_center", "All");
  fill("f-agent_ids", agentRows, "agent", null);
}

function wireControls() {
  document.getElementById("f-range").addEventListener("change", (e) => writeState({ range: e.target.value }));
  document.getElementById("f-since").addEventListener("change", (e) => writeState({ since: e.target.value }));
  document.getElementById("f-until").addEventListener("change", (e) => writeState({ until: e.target.value }));
  document.getElementById("f-department").addEventListener("change", (e) =>
    writeState({ department: [...e.target.selectedOptions].map((o) => o.value), agent: "" }));
  for (const key of ["provider", "environment", "cost_center", "by", "family", "category", "agent_status"]) document.getElementById("f-" + key).addEventListener("change", (e) => writeState({ [key]: e.target.value }));
  document.getElementById("f-agent_ids").addEventListener("change", (e) =>
    writeState({ agent_ids: [...e.target.selectedOptions].map((o) => o.value) }));
  document.getElementById("currency").addEventListener("change", (e) => writeState({ currency: e.target.value }));
  document.getElementById("clear").addEventListener("click", () => writeState({ department: [], provider: "", environment: "production",
    cost_center: "", agent: "", agent_ids: [], family: "", category: "", agent_status: "" }));
  // ECharts' Sankey throws on a zero-sized box (a transient size while printing or full-page
  // screenshots resize the window): resize only charts that have a box.
  window.addEventListener("resize", () => Object.values(charts).forEach((c) => {
    const box = c.getDom();
    if (box.clientWidth > 0 && box.clientHeight > 0) c.resize();
  }));
}

async function start() {
  try {
    const [who, currencies] = await Promise.all([api("/api/me"), api("/api/currencies")]);
    Object.assign(me, who);
    document.body.dataset.role = me.role;
    Object.assign(rates, currencies.rates); Object.assign(decimals, currencies.decimals);
    document.getElementById("currency").innerHTML = Object.keys(rates).map((c) => `<option>${c}</option>`).join("");
  } catch (error) {
    if (error.status === 401) { document.getElementById("key-button").click(); return; }
    toast("Could not reach the API: " + error.message, "critical");
  }
  // the option lists load after the first paint, unless a family filter in the URL needs its models
  if (state.family) { optionsLoading = loadOptions(); await optionsLoading; }
  await render();
}

wireControls();
wireInsights();
wireActions();
start();
live();
