/* Insight panels of the Cost Management page: forecast scenarios with budget runway (3.13), anomaly
   markers and the anomaly timeline (3.5, 3.16), the model cost/quality matrix (3.7), the provider
   cost-performance matrix (3.14), the "move X% to provider B" estimator (3.6) and the model pricing
   table with its TCO calculator (3.17). Every figure comes from the server, computed exactly. */

import { api, apiShared, axisMoney, can, chart, chartError, charts, dialog, esc, hooks, loading, money, pct, rangeParams, setState, state,
  table, toast, whereParams, writeState } from "./core.js";

const $ = (id) => document.getElementById(id);
const SEVERITY = [[0.9, "#d92d20", "critical"], [0.7, "#f79009", "high"], [0, "#fdb022", "moderate"]];
const FAMILY_COLORS = ["#2e6ce6", "#12b76a", "#7a5af8", "#f79009", "#ee46bc", "#0ba5ec", "#667085", "#d92d20", "#66c61c", "#875bf7"];

function severity(score) {
  return SEVERITY.find(([min]) => Number(score) >= min);
}

function scopeLabel(a) {
  return Object.entries(a.scope || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "fleet";
}

function inView(a) {
  const scope = a.scope || {};
  if (state.agent) return scope.agent === state.agent;
  if (state.agent_ids.length && scope.agent && !state.agent_ids.includes(scope.agent)) return false;
  // a department view shows that department's anomalies (and its agents'), not the fleet's
  if (state.department.length) return state.department.includes(a.department || scope.department);
  return true;
}

// ---------------------------------------------------------------------------------------------
// anomalies: one fetch per render, shared by the trend markers and the timeline

let anomalyFetch = null;
function anomalies() {
  if (!anomalyFetch) anomalyFetch = api("/api/anomalies", { limit: 500 }).finally(() => setTimeout(() => { anomalyFetch = null; }, 0));
  return anomalyFetch;
}

export async function anomalyMarkers() {
  try {
    const rows = (await anomalies()).filter((a) => inView(a) && a.status !== "false_positive");
    return rows.map((a) => {
      const [, color, label] = severity(a.score);
      const cause = (a.causes || [])[0];
      return { id: a.id, start: String(a.start).slice(0, 10), end: String(a.end).slice(0, 10), color: a.status === "expected" ? "#98a2b3" : color, label,
        title: `${scopeLabel(a)}: ${money(a.actual_usd)} vs ${money(a.expected_usd)} expected (${a.impact_pct ?? "–"}%)` +
          (cause ? ` · ${cause.cause}` : "") + " · click for the root cause" };
    });
  } catch (error) {
    return [];  // the timeline panel shows the error; the trend stays usable
  }
}

async function timeline() {
  loading("c-anomaly-timeline");
  const status = $("anomaly-status").value;
  try {
    const rows = (await anomalies()).filter((a) => inView(a) && (!status || a.status === status));
    const causes = [...new Set(rows.map((a) => a.cause || "unexplained"))].sort();
    $("c-anomaly-timeline").dataset.count = String(rows.length);
    if (!rows.length) {
      if (charts["c-anomaly-timeline"]) { charts["c-anomaly-timeline"].dispose(); delete charts["c-anomaly-timeline"]; }
      setState($("c-anomaly-timeline"), "No anomalies for this view" + (can("budgets.write") ? " (use “Scan”)." : "."));
      $("c-anomaly-timeline").dataset.count = "0";
      return;
    }
    const c = chart("c-anomaly-timeline");
    const maxImpact = Math.max(...rows.map((a) => Math.abs(Number(a.impact_usd)) || 0), 0.0001);
    const day = 86_400_000;
    const first = Math.min(...rows.map((a) => Date.parse(a.start))) - 3 * day;
    const last = Math.max(...rows.map((a) => Date.parse(a.end)), Date.now()) + day / 2;
    c.setOption({
      tooltip: { formatter: (p) => { const a = p.data.a; return `<b>${esc(scopeLabel(a))}</b><br>${esc(String(a.start).slice(0, 16).replace("T", " "))}<br>` +
        `actual ${money(a.actual_usd)} · expected ${money(a.expected_usd)}<br>impact ${money(a.impact_usd)} (${esc(a.impact_pct ?? "–")}%)<br>` +
        `score ${a.score} · ${esc(a.status)}`; } },
      grid: { left: 130, right: 20, top: 30, bottom: 40 },
      legend: { top: 0, data: SEVERITY.map(([, , l]) => l).concat(["expected"]) },
      xAxis: { type: "time", min: first, max: last }, yAxis: { type: "category", data: causes, axisLabel: { width: 120, overflow: "truncate" } },
      series: [...SEVERITY.map(([, color, label]) => ({ name: label, type: "scatter", itemStyle: { color },
        data: rows.filter((a) => a.status !== "expected" && severity(a.score)[2] === label).map(point) })),
      { name: "expected", type: "scatter", itemStyle: { color: "#fff", borderColor: "#98a2b3", borderWidth: 2 },
        data: rows.filter((a) => a.status === "expected").map(point) }],
    }, true);
    function point(a) {
      return { value: [a.start, a.cause || "unexplained"], a, symbolSize: 10 + 26 * Math.sqrt(Math.abs(Number(a.impact_usd)) / maxImpact) };
    }
    c.off("click");
    c.on("click", (p) => p.data && p.data.a && showAnomaly(p.data.a.id));
  } catch (error) { chartError("c-anomaly-timeline", error); }
}

async function showAnomaly(id) {
  const el = $("anomaly-detail");
  el.classList.remove("hidden");
  el.scrollIntoView({ block: "nearest" });
  try {
    const a = (await anomalies()).find((x) => x.id === id);
    if (!a) { setState(el, `Anomaly ${id} is not in the list any more.`, true); return; }
    const moves = { detected: ["investigating", "expected", "false_positive"], investigating: ["resolved", "expected", "false_positive"] }[a.status] || [];
    el.dataset.anomaly = String(a.id);
    el.innerHTML = `<h4>Anomaly #${a.id} · ${esc(scopeLabel(a))} · <span data-status>${esc(a.status)}</span></h4>
      <div class="facts"><span>${esc(String(a.start).slice(0, 16).replace("T", " "))} → ${esc(String(a.end).slice(0, 16).replace("T", " "))}</span>
      <span>actual <b>${money(a.actual_usd)}</b></span><span>expected ${money(a.expected_usd)}</span>
      <span>impact <b>${money(a.impact_usd)}</b> (${esc(a.impact_pct ?? "–")}%)</span><span>score ${a.score}</span></div>
      <table><thead><tr><th>Root cause (ranked)</th><th>Where</th><th class=num>Share of the change</th><th class=num>Baseline → actual</th></tr></thead><tbody>${(a.causes || []).slice(0, 5).map((c) =>
        `<tr><td>${esc(c.cause)}</td><td>${esc(Object.entries(c.dimension || {}).map(([k, v]) => `${k}=${v}`).join(", "))}</td><td class=num>${c.explained_share != null ? pct(Number(c.explained_share) * 100) : "–"}</td><td class=num>${money(c.baseline_usd)} → ${money(c.actual_usd)}</td></tr>`).join("") ||
        '<tr><td colspan=4>No dimension explains the change.</td></tr>'}</tbody></table>
      ${can("budgets.write") ? moves.map((m) => `<button data-move="${m}">${m === "expected" ? "Mark expected (suppress similar)" : m.replace("_", " ")}</button>`).join(" ") : ""}
      <button data-close>Close</button>`;
    el.querySelector("[data-close]").addEventListener("click", () => el.classList.add("hidden"));
    el.querySelectorAll("button[data-move]").forEach((b) => b.addEventListener("click", async () => {
      try {
        await api(`/api/anomalies/${a.id}`, {}, { method: "PATCH", body: { status: b.dataset.move, note: "from the dashboard timeline" } });
        anomalyFetch = null;
        await Promise.all([timeline(), hooks.anomalyTable()]);
        await showAnomaly(a.id);
      } catch (error) { toast(error.message, "critical"); }
    }));
  } catch (error) { setState(el, "Could not load the anomaly: " + error.message, true); }
}
hooks.showAnomaly = showAnomaly;
hooks.refreshAnomalies = () => { anomalyFetch = null; return timeline(); };

// ---------------------------------------------------------------------------------------------
// 3.13 forecast with scenarios and budget runway

function scenarioParams() {
  const p = { horizon: Number($("sc-horizon").value) };
  if (state.agent) p.agent = state.agent;
  else if (state.department.length === 1) p.department = state.department[0];
  return p;
}

async function scenarios(event) {
  if (event) event.preventDefault();
  loading("c-scenario");
  const out = $("scenario-summary");
  try {
    const base = scenarioParams();
    const scenario = { ...base, traffic_pct: $("sc-traffic").value || "0", optimization_pct: $("sc-optimization").value || "0" };
    if ($("sc-from").value && $("sc-to").value) {
      scenario.switch_from = $("sc-from").value; scenario.switch_to = $("sc-to").value;
      scenario.switch_share = String(Number($("sc-share").value || "100") / 100);
    }
    const baseline = await apiShared("/api/forecast", base);
    const adjusted = await api("/api/forecast", scenario);
    const b = baseline.forecasts[0], s = adjusted.forecasts[0];
    if (!b || !b.model) { chartError("c-scenario", new Error(b ? b.reason : "no forecast for this scope")); out.innerHTML = ""; return; }
    const days = b.points.map((p) => p.day);
    const band = (f, lo, hi) => [f.points.map((p) => Number(p[lo])), f.points.map((p) => Number(p[hi]) - Number(p[lo]))];
    const [lo95, w95] = band(s, "lo95_usd", "hi95_usd");
    const [lo80, w80] = band(s, "lo80_usd", "hi80_usd");
    const c = chart("c-scenario");
    c.setOption({
      tooltip: { trigger: "axis", valueFormatter: (v) => money(v) },
      legend: { top: 0, left: 0, data: ["baseline", "scenario", "80%", "95%"] },
      grid: { left: 60, right: 20, top: 40, bottom: 30 },
      xAxis: { type: "category", data: days }, yAxis: axisMoney,
      series: [
        { name: "95%", type: "line", stack: "s95", data: lo95, lineStyle: { opacity: 0 }, symbol: "none", tooltip: { show: false } },
        { name: "95%", type: "line", stack: "s95", data: w95, lineStyle: { opacity: 0 }, symbol: "none", areaStyle: { opacity: 0.1, color: "#7a5af8" }, tooltip: { show: false } },
        { name: "80%", type: "line", stack: "s80", data: lo80, lineStyle: { opacity: 0 }, symbol: "none", tooltip: { show: false } },
        { name: "80%", type: "line", stack: "s80", data: w80, lineStyle: { opacity: 0 }, symbol: "none", areaStyle: { opacity: 0.2, color: "#7a5af8" }, tooltip: { show: false } },
        { name: "baseline", type: "line", data: b.points.map((p) => Number(p.mean_usd)), symbol: "none", lineStyle: { type: "dashed", color: "#667085" }, itemStyle: { color: "#667085" } },
        { name: "scenario", type: "line", data: s.points.map((p) => Number(p.mean_usd)), symbol: "none", lineStyle: { width: 2.5, color: "#7a5af8" }, itemStyle: { color: "#7a5af8" } },
      ],
    }, true);
    $("c-scenario").dataset.scenarioTotal = s.total_usd.mean;
    $("c-scenario").dataset.factor = s.scenario.factor;
    const delta = Number(s.total_usd.mean) - Number(b.total_usd.mean);
    out.innerHTML = `<div class="kpi"><div class="label">Baseline, next ${b.horizon_days} days</div><div class="value">${money(b.total_usd.mean)}</div>
        <div class="sub">95%: ${money(b.total_usd.lo95)} – ${money(b.total_usd.hi95)}</div></div>
      <div class="kpi"><div class="label">Scenario</div><div class="value" data-scenario-total>${money(s.total_usd.mean)}</div>
        <div class="sub">${delta >= 0 ? "+" : ""}${money(delta)} · factor ×${Number(s.scenario.factor).toFixed(4)}${s.scenario.model_switch ? " · " + esc(s.scenario.model_switch) : ""}</div></div>
      <div class="kpi"><div class="label">Forecast quality</div><div class="value">${esc(b.backtest.mape ?? "–")}% MAPE</div>
        <div class="sub">${esc(b.model)} · 95% coverage ${esc(b.backtest.coverage95 ?? "–")}%</div></div>
      <div class="kpi" id="runway"><div class="label">Budget runway</div><div class="value">…</div></div>`;
    runway();
  } catch (error) { chartError("c-scenario", error); setState(out, "Scenario: " + error.message, true); }
}

async function runway() {
  const el = $("runway");
  try {
    const status = await apiShared("/api/budget/status");
    const scope = state.department.length === 1 ? `department=${state.department[0]}` : "org";
    const budget = status.find((b) => b.scope === scope) || (scope === "org" ? null : null);
    if (!budget) { el.innerHTML = `<div class="label">Budget runway</div><div class="value">–</div><div class="sub">no budget on ${esc(scope)}</div>`; return; }
    const r = await api(`/api/budgets/${encodeURIComponent(budget.name)}/runway`);
    el.innerHTML = `<div class="label">Budget runway · ${esc(r.budget)}</div>` + (r.available
      ? `<div class="value">${r.depletion_date ? "runs out " + esc(r.depletion_date) : "lasts the period"}</div>
         <div class="sub">projected ${money(r.projected_period_spend_usd)} of ${money(r.limit_usd)} · overrun risk ${pct(Number(r.overrun_probability) * 100, 0)}</div>`
      : `<div class="value">–</div><div class="sub">${esc(r.reason)}</div>`);
  } catch (error) { el.innerHTML = `<div class="label">Budget runway</div><div class="state error">${esc(error.message)}</div>`; }
}

// ---------------------------------------------------------------------------------------------
// 3.7 model cost/quality matrix

async function modelMatrix() {
  loading("c-models");
  const x = $("mm-x").value;
  try {
    const data = await api("/api/matrix/models", { ...rangeParams(), where: whereParams(state.agent ? { agent: state.agent } : {}), x });
    const key = x === "request" ? "cost_per_request_usd" : "cost_per_1k_tokens_usd";
    const rows = data.models.filter((m) => m[key] !== null);
    const scored = rows.filter((m) => m.quality !== null && Number(m[key]) > 0);
    const fams = [...new Set(scored.map((m) => m.family))].sort();
    const maxReq = Math.max(1, ...scored.map((m) => m.requests));
    const frontier = scored.filter((m) => m.pareto && m.kind === "chat").sort((a, b) => Number(a[key]) - Number(b[key]));
    const c = chart("c-models");
    c.setOption({
      tooltip: { formatter: (p) => p.data && p.data.m ? `<b>${esc(p.data.m.provider)}/${esc(p.data.m.model)}</b><br>${money(p.data.m[key])} per ${x === "request" ? "request" : "1K tokens"}<br>` +
        `quality ${esc(p.data.m.quality)} · ${p.data.m.requests.toLocaleString()} requests<br>${money(p.data.m.cost_usd)} total${p.data.m.pareto ? "<br><b>Pareto-optimal</b>" : ""}` : "" },
      legend: { top: 0, type: "scroll", data: [...fams, "Pareto frontier"] },
      grid: { left: 60, right: 30, top: 40, bottom: 40 },
      xAxis: { type: "log", name: x === "request" ? "cost per request" : "cost per 1K tokens", nameLocation: "middle", nameGap: 26, axisLabel: { formatter: (v) => money(v) } },
      yAxis: { type: "value", name: "quality", min: (v) => Math.max(0, Math.floor(v.min - 5)), max: 100 },
      series: [...fams.map((f, i) => ({ name: f, type: "scatter", itemStyle: { color: FAMILY_COLORS[i % FAMILY_COLORS.length], opacity: 0.8 },
        data: scored.filter((m) => m.family === f).map((m) => ({ value: [Number(m[key]), Number(m.quality)], m,
          symbolSize: 10 + 34 * Math.sqrt(m.requests / maxReq), itemStyle: m.pareto ? { borderColor: "#1d2330", borderWidth: 2 } : undefined,
          label: { show: m.pareto, formatter: m.model, position: "top", fontSize: 10 } })) })),
      { name: "Pareto frontier", type: "line", step: "end", symbol: "none", z: 1, lineStyle: { type: "dashed", color: "#1d2330" }, itemStyle: { color: "#1d2330" },
        data: frontier.map((m) => [Number(m[key]), Number(m.quality)]) }],
    }, true);
    $("c-models").dataset.frontier = data.frontier.map((f) => `${f.provider}/${f.model}`).join(",");
    c.off("click");
    c.on("click", (p) => p.data && p.data.m && writeState({ family: p.data.m.family }));
    table($("models-table"), [
      { key: "model", label: "Model", html: (m) => `<span title="${esc(m.family)}">${esc(m.provider)}/<b>${esc(m.model)}</b></span>${m.pareto ? ' <span class="tag good">Pareto</span>' : ""}` },
      { key: "quality", label: "Quality", num: true }, { key: "requests", label: "Requests", num: true },
      { key: "cost_usd", label: "Cost", money: true, num: true },
      { key, label: x === "request" ? "Per request" : "Per 1K tokens", money: true, num: true },
    ], rows);
    $("edit-quality").classList.toggle("hidden", !can("pricing.write"));
    $("edit-quality").onclick = () => editQuality(rows);
  } catch (error) { chartError("c-models", error); setState($("models-table"), ""); }
}

async function editQuality(rows) {
  let catalog;
  try { catalog = await api("/api/quality-catalog"); } catch (error) { toast(error.message, "critical"); return; }
  const keys = new Set(Object.keys(catalog.families));
  for (const m of rows) if (!m.quality_family) keys.add(`${m.provider}/${m.model}`);
  const options = [...keys].sort().map((k) => [k, catalog.families[k] ? `${k} (now ${catalog.families[k].score})` : `${k} (no score)`]);
  dialog("Edit model quality score", [
    { name: "family", label: "Provider/model family", type: "select", options },
    { name: "score", label: "Quality score 0-100 (your evals or public benchmarks)", type: "number", required: true, min: 0, step: "0.1" },
  ], (v) => api("/api/quality-catalog", {}, { method: "PUT", body: { families: { [v.family]: { score: v.score } } } }),
  { intro: "Scores drive the matrix, its Pareto frontier and the model-downgrade recommendations." });
}

// ---------------------------------------------------------------------------------------------
// 3.14 provider cost-performance matrix and the 3.6 provider-shift estimator

async function providerMatrix() {
  loading("c-provider-matrix");
  const y = $("pm-y").value;
  try {
    const data = await api("/api/matrix/providers", { ...rangeParams(), where: whereParams(), y });
    const yKey = y === "quality" ? "quality" : "p90_latency_ms";
    const rows = data.providers.filter((p) => p.cost_per_request_usd !== null && p[yKey] !== null && Number(p.cost_per_request_usd) > 0);
    const maxReq = Math.max(1, ...rows.map((p) => p.requests));
    const frontier = rows.filter((p) => p.pareto).sort((a, b) => Number(a.cost_per_request_usd) - Number(b.cost_per_request_usd));
    const mark = [];
    if (data.median_cost_per_request_usd) mark.push({ xAxis: Number(data.median_cost_per_request_usd) });
    if (data.median_y) mark.push({ yAxis: Number(data.median_y) });
    const c = chart("c-provider-matrix");
    c.setOption({
      tooltip: { formatter: (p) => p.data && p.data.p ? `<b>${esc(p.data.p.provider)}</b> · ${esc(p.data.p.quadrant || "")}<br>${money(p.data.p.cost_per_request_usd)} per request<br>` +
        `p90 ${esc(p.data.p.p90_latency_ms ?? "–")} ms · quality ${esc(p.data.p.quality ?? "–")}<br>${p.data.p.requests.toLocaleString()} requests · reliability ${esc(p.data.p.reliability_pct)}%<br>click: estimate a switch here` : "" },
      grid: { left: 70, right: 30, top: 30, bottom: 40 },
      xAxis: { type: "log", name: "cost per request", nameLocation: "middle", nameGap: 26, axisLabel: { formatter: (v) => money(v) } },
      yAxis: { type: "value", name: y === "quality" ? "quality" : "p90 latency ms", inverse: y !== "quality", scale: true },
      series: [{ type: "scatter", data: rows.map((p, i) => ({ value: [Number(p.cost_per_request_usd), Number(p[yKey])], p,
        symbolSize: 14 + 40 * Math.sqrt(p.requests / maxReq), itemStyle: { color: FAMILY_COLORS[i % FAMILY_COLORS.length], opacity: 0.85,
          borderColor: p.pareto ? "#1d2330" : undefined, borderWidth: p.pareto ? 2 : 0 },
        label: { show: true, formatter: p.provider, position: "right" } })),
        markLine: mark.length ? { silent: true, symbol: "none", lineStyle: { type: "dotted", color: "#98a2b3" }, label: { show: false }, data: mark } : undefined },
      { type: "line", name: "Pareto frontier", data: frontier.map((p) => [Number(p.cost_per_request_usd), Number(p[yKey])]), symbol: "none",
        lineStyle: { type: "dashed", color: "#1d2330" } }],
      graphic: [{ type: "text", right: 40, top: 36, style: { text: "premium", fill: "#98a2b3" } },
        { type: "text", left: 80, top: 36, style: { text: "optimal", fill: "#12b76a", fontWeight: 600 } },
        { type: "text", left: 80, bottom: 50, style: { text: y === "quality" ? "budget" : "cheap but slow", fill: "#98a2b3" } },
        { type: "text", right: 40, bottom: 50, style: { text: "avoid", fill: "#d92d20" } }],
    }, true);
    $("c-provider-matrix").dataset.frontier = data.frontier.join(",");
    c.off("click");
    c.on("click", (p) => { if (p.data && p.data.p) { $("ps-to").value = p.data.p.provider; shift(); } });
  } catch (error) { chartError("c-provider-matrix", error); }
}

async function shift(event) {
  if (event) event.preventDefault();
  const el = $("shift-result");
  if (!$("ps-to").value) { setState(el, "Pick a target provider (or click one in the matrix)."); return; }
  setState(el, "Re-pricing…");
  try {
    const r = await api("/api/whatif/provider-shift", { ...rangeParams(), where: whereParams(state.agent ? { agent: state.agent } : {}),
      to_provider: $("ps-to").value, share_pct: $("ps-share").value, to_model: $("ps-model").value.trim(), from_provider: $("ps-from").value });
    const saving = Number(r.savings_usd);
    el.innerHTML = `<div class="facts" data-savings="${esc(r.savings_usd)}"><span>Spend in range <b>${money(r.current_usd)}</b></span>
      <span>moved part ${money(r.moved_current_usd)} → <b>${money(r.moved_target_usd)}</b></span>
      <span class="${saving > 0 ? "good" : saving < 0 ? "bad" : ""}">${saving >= 0 ? "saves" : "costs"} <b>${money(Math.abs(saving))}</b> (${esc(r.savings_pct ?? "–")}%) · ${money(r.savings_monthly_usd)} per 30 days</span></div>`;
    const box = document.createElement("div");
    box.className = "table";
    el.appendChild(box);
    table(box, [
      { key: "model", label: "From", html: (g) => `${esc(g.provider)}/${esc(g.model)}` }, { key: "target_model", label: "To", html: (g) => `${esc(r.to_provider)}/${esc(g.target_model)}` },
      { key: "requests", label: "Requests", num: true }, { key: "moved_current_usd", label: "Moved, now", money: true, num: true },
      { key: "moved_target_usd", label: "Moved, there", money: true, num: true }, { key: "savings_usd", label: "Saves", money: true, num: true },
      { key: "reason", label: "Note" },
    ], r.groups.slice(0, 25));
  } catch (error) { setState(el, "Could not estimate: " + error.message, true); }
}

// ---------------------------------------------------------------------------------------------
// 3.17 model pricing table with the TCO calculator

let pricingRows = [];
let pricingSort = { key: "tco_monthly_usd", asc: true };

function profile() {
  return { requests_per_month: $("tco-requests").value, input_tokens: $("tco-in").value, output_tokens: $("tco-out").value, cache_hit_pct: $("tco-cache").value };
}

async function pricing(event) {
  if (event) event.preventDefault();
  const el = $("pricing-table");
  setState(el, "Pricing every model…");
  try {
    const data = await api("/api/pricing/models", { ...profile(), q: $("pt-search").value.trim(), provider: $("pt-provider").value ? [$("pt-provider").value] : [],
      used_only: $("pt-used").checked ? "true" : "" });
    pricingRows = data.models;
    drawPricing();
  } catch (error) { setState(el, "Could not load prices: " + error.message, true); }
}

function drawPricing() {
  const el = $("pricing-table");
  const { key, asc } = pricingSort;
  const value = (r) => (r[key] === null || r[key] === undefined ? Infinity : isNaN(Number(r[key])) ? r[key] : Number(r[key]));
  const rows = [...pricingRows].sort((a, b) => (value(a) < value(b) ? -1 : value(a) > value(b) ? 1 : 0) * (asc ? 1 : -1))
    .map((r) => ({ ...r, _class: r.best_value ? "best" : r.requests_90d ? "used" : "" }));
  const best = pricingRows.find((r) => r.best_value);
  $("pricing-best").innerHTML = best ? `Best value for this profile: <b>${esc(best.provider)}/${esc(best.model)}</b> at <b data-best>${money(best.tco_monthly_usd)}</b> a month` : "";
  table(el, [
    { key: "provider", label: "Provider" }, { key: "model", label: "Model", html: (r) => `<b>${esc(r.model)}</b>${r.requests_90d ? ' <span class="tag">in use</span>' : ""}${r.source === "override" ? ' <span class="tag warn">override</span>' : ""}` },
    { key: "input_per_1m_usd", label: "Input / 1M", money: true, num: true }, { key: "cached_input_per_1m_usd", label: "Cached / 1M", money: true, num: true },
    { key: "output_per_1m_usd", label: "Output / 1M", money: true, num: true },
    { key: "context_window", label: "Context", num: true, html: (r) => (r.context_window ? Number(r.context_window).toLocaleString() : "–") },
    { key: "tco_per_request_usd", label: "Per request", money: true, num: true }, { key: "tco_monthly_usd", label: "TCO / month", money: true, num: true },
  ], rows.slice(0, 400), (r) => tcoDetail(r));
  el.querySelectorAll("th").forEach((th, i) => {
    const keys = ["provider", "model", "input_per_1m_usd", "cached_input_per_1m_usd", "output_per_1m_usd", "context_window", "tco_per_request_usd", "tco_monthly_usd"];
    th.classList.add("sortable");
    if (keys[i] === key) th.classList.add(asc ? "asc" : "desc");
    th.addEventListener("click", () => { pricingSort = { key: keys[i], asc: pricingSort.key === keys[i] ? !pricingSort.asc : true }; drawPricing(); });
  });
}

async function tcoDetail(row) {
  const el = $("tco-detail");
  try {
    const r = await api("/api/pricing/tco", { ...profile(), provider: row.provider, model: row.model });
    el.innerHTML = `<div class="facts" data-model="${esc(row.provider)}/${esc(row.model)}"><span><b>${esc(row.provider)}/${esc(row.model)}</b></span>
      <span>${Number(r.profile.requests).toLocaleString()} requests × ${Number(r.profile.input_tokens).toLocaleString()} in (${Number(r.profile.cache_read_tokens).toLocaleString()} cached) + ${Number(r.profile.output_tokens).toLocaleString()} out</span>
      <span>per request <b>${money(r.per_request_usd)}</b></span><span>month <b data-tco-monthly="${esc(r.monthly_usd)}">${money(r.monthly_usd)}</b></span><span>year <b>${money(r.annual_usd)}</b></span></div>`;
  } catch (error) { setState(el, "TCO: " + error.message, true); }
}

// ---------------------------------------------------------------------------------------------

export function insightTasks() {
  anomalyFetch = null;
  if (!$("ps-to").value) setState($("shift-result"), "Pick a target provider, or click one in the matrix, to re-price this view's traffic there.");
  return [timeline(), scenarios(), modelMatrix(), providerMatrix(), pricingRows.length ? Promise.resolve() : pricing()];
}

export async function fillModelChoices() {
  const models = await api("/api/costs", { since: "30d", by: "model", environment: "" });
  const names = models.rows.map((r) => r.model).filter(Boolean);
  $("sc-from").innerHTML = '<option value="">(no switch)</option>' + names.map((m) => `<option>${esc(m)}</option>`).join("");
  $("sc-to").innerHTML = '<option value="">–</option>' + names.map((m) => `<option>${esc(m)}</option>`).join("");
  $("ps-models").innerHTML = names.map((m) => `<option value="${esc(m)}"></option>`).join("");
}

export function wireInsights() {
  $("scenario-form").addEventListener("submit", scenarios);
  $("sc-horizon").addEventListener("change", () => scenarios());
  $("anomaly-status").addEventListener("change", () => timeline());
  $("mm-x").addEventListener("change", () => modelMatrix());
  $("pm-y").addEventListener("change", () => providerMatrix());
  $("shift-form").addEventListener("submit", shift);
  $("pricing-form").addEventListener("submit", pricing);
  $("tco-form").addEventListener("submit", pricing);
}
