/* Actions of the Cost Management page beyond budgets: export a report (A3.10), schedule a cost
   review (A3.14), budget and cost alerts with their channels (A3.3/A3.9), cost experiments (A3.11),
   and "Apply in gateway" on recommendations (A3.4-A3.8, A3.13). Each goes through the REST API, is
   hidden where the key's role may not take it (from /api/me), and shows the server's error. */

import { api, can, dialog, download, esc, hooks, money, setState, state, table, toast } from "./core.js";

const $ = (id) => document.getElementById(id);
const available = { gateway: null, applied: new Map() };

function remember(policies) {
  available.applied = new Map((policies || []).filter((p) => p.recommendation_id).map((p) => [p.recommendation_id, p.id]));
}

// ---------------------------------------------------------------------------------------------
// A3.10 export a report

function currentPeriod() {
  const now = new Date();
  return `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, "0")}`;
}

function exportReport() {
  dialog("Export cost report", [
    { name: "format", label: "Format", type: "select", value: "xlsx", options: [["xlsx", "Excel (Summary, Detailed, Chart data, Budgets)"], ["csv", "CSV"], ["pdf", "PDF with charts"], ["focus", "FOCUS 1.2 (CSV)"]] },
    { name: "kind", label: "Report", type: "select", value: "summary", options: [["summary", "Summary"], ["detailed", "Detailed"], ["chargeback", "Chargeback by cost center"]] },
    { name: "period", label: "Period (2026-10, 2026-Q4, 2026 or 2026-10-01..2026-10-31)", required: true, value: currentPeriod() },
    { name: "departments", label: "Departments (comma separated; empty = all you may see)", value: state.department.join(",") },
    { name: "cost_center", label: "Cost center (optional)", value: state.cost_center },
  ], async (v) => {
    const name = await download("/api/reports/export", { format: v.format, kind: v.kind, period: v.period.trim(),
      department: v.departments.split(",").map((d) => d.trim()).filter(Boolean), cost_center: v.cost_center.trim() });
    toast(`Downloaded ${name}`);
    return false;
  }, { okLabel: "Download" });
}

// ---------------------------------------------------------------------------------------------
// A3.14 scheduled cost reviews

async function channelOptions() {
  try { return (await api("/api/alerts/channels")).map((c) => [c.name, `${c.name} (${c.kind})`]); } catch (error) { return []; }
}

async function scheduleReview() {
  const channels = await channelOptions();
  dialog("Schedule a cost review", [
    { name: "name", label: "Name", required: true, value: "Monthly cost review" },
    { name: "recurrence", label: "Recurrence", type: "select", value: "monthly", options: [["weekly", "Weekly"], ["monthly", "Monthly"], ["quarterly", "Quarterly"]] },
    { name: "format", label: "Pre-report format", type: "select", value: "pdf", options: [["pdf", "PDF"], ["xlsx", "Excel"], ["csv", "CSV"], ["focus", "FOCUS"]] },
    { name: "kind", label: "Report", type: "select", value: "summary", options: [["summary", "Summary"], ["detailed", "Detailed"], ["chargeback", "Chargeback"]] },
    { name: "departments", label: "Departments (comma separated; empty = all)", value: state.department.join(",") },
    { name: "channels", label: channels.length ? "Send to (alert channels)" : "Send to (no alert channel yet: add one under Alerts)", type: "select", multiple: true, options: channels },
    { name: "folder", label: "Subfolder of the server's reports folder (optional)", value: "" },
  ], (v) => api("/api/reports/schedules", {}, { method: "POST", body: { name: v.name, recurrence: v.recurrence, format: v.format, kind: v.kind,
    departments: v.departments.split(",").map((d) => d.trim()).filter(Boolean), channels: v.channels, ...(v.folder.trim() ? { folder: v.folder.trim() } : {}) } }));
}

async function schedules() {
  const el = $("schedules");
  $("new-schedule").classList.toggle("hidden", !can("reports.schedule"));
  try {
    const data = await api("/api/reports/schedules");
    const rows = Array.isArray(data) ? data : data.schedules || [];
    table(el, [
      { key: "name", label: "Review" }, { key: "recurrence", label: "Every" }, { key: "format", label: "Format" }, { key: "kind", label: "Report" },
      { key: "channels", label: "Sent to", html: (s) => esc((s.channels || []).join(", ") || "–") },
      { key: "departments", label: "Departments", html: (s) => esc((s.departments || []).join(", ") || "all") },
      { key: "folder", label: "Folder", html: (s) => esc(s.folder || "–") },
      { label: "", html: (s) => (can("reports.schedule") ? `<button data-del-schedule="${esc(s.id)}">Delete</button>` : "") },
    ], rows);
    if (!rows.length) setState(el, "No scheduled reviews" + (can("reports.schedule") ? ": use “Schedule review”." : "."));
    el.querySelectorAll("[data-del-schedule]").forEach((b) => b.addEventListener("click", () =>
      api(`/api/reports/schedules/${b.dataset.delSchedule}`, {}, { method: "DELETE" }).then(schedules, (e) => toast(e.message, "critical"))));
  } catch (error) {
    setState(el, error.status === 404 ? "Scheduled reviews need the reports API (GET /api/reports/schedules), which this server does not have." : "Could not load schedules: " + error.message, error.status !== 404);
  }
}

// ---------------------------------------------------------------------------------------------
// A3.3 / A3.9 alerts

function paramsText(rule) {
  const p = rule.params || {};
  if (rule.kind === "budget") return `${p.budget === "*" ? "every budget" : p.budget}${p.percent ? ` at ${p.percent}%` : ""} (${(p.levels || []).join(", ")})`;
  if (rule.kind === "absolute_spend") return `spend over ${money(p.amount_usd)} per ${p.period}`;
  if (rule.kind === "percent_increase") return `spend up ${p.percent}% ${p.period} over ${p.period}`;
  if (rule.kind === "cost_per_request") return `cost per request over ${money(p.amount_usd)} (${p.window})`;
  return JSON.stringify(p);
}

async function alerts() {
  const el = $("alert-rules");
  const write = can("alerts.write");
  for (const id of ["new-budget-alert", "new-cost-alert", "new-channel"]) $(id).classList.toggle("hidden", !write);
  try {
    const [rules, channels] = await Promise.all([api("/api/alerts/rules"), api("/api/alerts/channels")]);
    table(el, [
      { key: "name", label: "Rule" }, { key: "kind", label: "Kind" },
      { key: "scope", label: "Scope", html: (r) => esc(Object.entries(r.scope || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "fleet") },
      { key: "params", label: "Condition", html: (r) => esc(paramsText(r)) },
      { key: "channels", label: "Notify", html: (r) => esc((r.channels || []).join(", ") || "dashboard only") },
      { label: "", html: (r) => (write ? `<button data-del-rule="${esc(r.name)}">Delete</button>` : "") },
    ], rules);
    if (!rules.length) setState(el, "No alert rules" + (write ? ": add a budget or cost alert." : "."));
    $("alert-channels").textContent = channels.length ? "Channels: " + channels.map((c) => `${c.name} (${c.kind})`).join(", ") : "No notification channel yet.";
    el.querySelectorAll("[data-del-rule]").forEach((b) => b.addEventListener("click", () =>
      api(`/api/alerts/rules/${encodeURIComponent(b.dataset.delRule)}`, {}, { method: "DELETE" }).then(alerts, (e) => toast(e.message, "critical"))));
  } catch (error) { setState(el, "Could not load alerts: " + error.message, true); }
}

async function budgetAlert() {
  const [budgets, channels] = await Promise.all([api("/api/budgets").catch(() => []), channelOptions()]);
  dialog("Budget alert", [
    { name: "name", label: "Name", required: true, value: "budget-80" },
    { name: "budget", label: "Budget", type: "select", options: [["*", "Every budget"], ...budgets.map((b) => [b.name, b.name])] },
    { name: "percent", label: "Alert at % of the budget (e.g. 80)", type: "number", required: true, value: "80", min: 1, step: "0.1" },
    { name: "channels", label: "Notify", type: "select", multiple: true, options: channels },
  ], (v) => api("/api/alerts/rules", {}, { method: "POST", body: { name: v.name, kind: "budget", params: { budget: v.budget, percent: v.percent }, channels: v.channels } }));
}

async function costAlert() {
  const channels = await channelOptions();
  dialog("Cost alert", [
    { name: "name", label: "Name", required: true, value: state.department.length ? `${state.department[0]}-daily-spend` : "fleet-daily-spend" },
    { name: "scope", label: "Scope", type: "select", value: state.agent ? `agent=${state.agent}` : state.department.length ? `department=${state.department[0]}` : "",
      options: [["", "Fleet"], ...state.department.map((d) => [`department=${d}`, `department ${d}`]), ...(state.agent ? [[`agent=${state.agent}`, `agent ${state.agent}`]] : [])] },
    { name: "kind", label: "Threshold type", type: "select", value: "absolute_spend", options: [["absolute_spend", "Spend above an amount"], ["percent_increase", "Spend up by a percentage"], ["cost_per_request", "Cost per request above an amount"]] },
    { name: "amount", label: "Amount (USD) or percentage", required: true, value: "100" },
    { name: "period", label: "Period", type: "select", value: "day", options: [["day", "per day"], ["week", "per week"], ["month", "per month"]] },
    { name: "severity", label: "Severity", type: "select", value: "warning", options: [["info", "info"], ["warning", "warning"], ["critical", "critical"]] },
    { name: "channels", label: "Notify", type: "select", multiple: true, options: channels },
  ], (v) => {
    const params = v.kind === "percent_increase" ? { percent: v.amount, period: v.period, severity: v.severity }
      : v.kind === "cost_per_request" ? { amount_usd: v.amount, severity: v.severity } : { amount_usd: v.amount, period: v.period, severity: v.severity };
    const scope = v.scope ? Object.fromEntries([v.scope.split("=")]) : {};
    return api("/api/alerts/rules", {}, { method: "POST", body: { name: v.name, kind: v.kind, scope, params, channels: v.channels } });
  });
}

function newChannel() {
  dialog("Notification channel", [
    { name: "name", label: "Name", required: true, value: "finops-slack" },
    { name: "kind", label: "Kind", type: "select", value: "slack", options: [["slack", "Slack incoming webhook"], ["webhook", "Webhook (JSON POST)"], ["email", "Email (SMTP)"], ["pagerduty", "PagerDuty"]] },
    { name: "target", label: "Webhook URL / email recipients / PagerDuty routing key", required: true },
    { name: "smtp_host", label: "Email only: SMTP host", value: "" },
    { name: "sender", label: "Email only: from address", value: "" },
  ], (v) => {
    const config = { slack: { url: v.target }, webhook: { url: v.target }, pagerduty: { routing_key: v.target },
      email: { to: v.target.split(",").map((t) => t.trim()).filter(Boolean), smtp_host: v.smtp_host, from: v.sender } }[v.kind];
    return api("/api/alerts/channels", {}, { method: "POST", body: { name: v.name, kind: v.kind, config } });
  });
}

// ---------------------------------------------------------------------------------------------
// A3.11 cost experiments

async function experiments() {
  const el = $("experiments");
  $("new-experiment").classList.toggle("hidden", !can("budgets.write"));
  try {
    const rows = await api("/api/experiments");
    table(el, [{ key: "name", label: "Experiment" }, { key: "control", label: "Control" }, { key: "treatment", label: "Treatment" },
      { key: "hypothesis", label: "Hypothesis" }, { key: "created_at", label: "Created", html: (e) => esc(String(e.created_at || "").slice(0, 10)) }],
    rows, (row) => analyze(row.name));
    if (!rows.length) setState(el, "No experiments" + (can("budgets.write") ? ": use “New experiment”." : "."));
  } catch (error) { setState(el, "Could not load experiments: " + error.message, true); }
}

async function analyze(name) {
  const el = $("experiment-result");
  setState(el, "Analysing…");
  try {
    const r = await api(`/api/experiments/${encodeURIComponent(name)}`);
    const arm = (a) => (a ? `${a.requests.toLocaleString()} requests · ${money(a.mean_cost_per_request_usd)} per request` : "no data yet");
    const d = r.difference;
    el.innerHTML = `<div class="facts"><span><b>${esc(name)}</b></span><span>control: ${arm(r.arms.control)}</span><span>treatment: ${arm(r.arms.treatment)}</span>` +
      (d ? `<span>difference ${money(d.mean_cost_per_request_usd)} (${esc(d.relative_pct ?? "–")}%), ${esc(d.confidence)} CI ${money(d.ci_low_usd)} … ${money(d.ci_high_usd)}</span>` : "") +
      `<span>verdict: <b>${esc(typeof r.verdict === "string" ? r.verdict : JSON.stringify(r.verdict))}</b></span></div>`;
  } catch (error) { setState(el, "Could not analyse: " + error.message, true); }
}

function newExperiment() {
  dialog("Create a cost experiment", [
    { name: "name", label: "Name (its events carry tags.experiment=<name>, tags.arm=control|treatment)", required: true, value: "exp-" },
    { name: "hypothesis", label: "Hypothesis", type: "textarea", value: "gpt-4o-mini answers support tickets as well at a third of the cost" },
    { name: "control", label: "Control (e.g. the current model or prompt)", required: true, value: "gpt-4o" },
    { name: "treatment", label: "Treatment", required: true, value: "gpt-4o-mini" },
  ], (v) => api("/api/experiments", {}, { method: "POST", body: v }), { okLabel: "Create", intro: "Success metrics: cost per request, quality score and latency per arm, with Welch's interval and the required sample size." });
}

// ---------------------------------------------------------------------------------------------
// A3.4-A3.8 / A3.13: recommendations -> gateway policies

const POLICY = {
  model_downgrade: (s) => ({ kind: "model_downgrade", params: { from_model: s.model, to_model: s.to_model } }),
  caching: () => ({ kind: "cache", params: { mode: "exact", ttl_s: 3600 } }),
  provider_switch: (s) => ({ kind: "provider_switch", params: { model: s.model, from_provider: s.provider, to_provider: s.to_provider } }),
  output_cap: (s) => ({ kind: "max_output_tokens", params: { max_output_tokens: Number(s.max_output_tokens) } }),
};

let probing = null;
function probeGateway() {
  if (!probing) probing = probe();
  return probing;
}

async function probe() {
  if (available.gateway !== null) return;
  try { remember((await api("/api/gateway/policies")).policies); available.gateway = true; }
  catch (error) {
    // 404: no gateway on this server; 403: it exists, this key may not read it. Anything else is a
    // failure to show (it used to hide the gateway silently for the rest of the session): asked again next render.
    if (error.status === 404) available.gateway = false;
    else if (error.status === 403) available.gateway = true;
    else { probing = null; toast(`Gateway policies: ${error.message}`, "critical"); }
  }
}

export function applyButton(rec) {
  if (["declined", "implemented"].includes(rec.status)) return "";
  if (available.applied.has(rec.id)) return `<span class="tag good" data-policy="${available.applied.get(rec.id)}">gateway policy #${available.applied.get(rec.id)}</span>`;
  const policy = POLICY[rec.kind] && available.gateway && can("gateway.write");
  return `<button data-apply="${rec.id}" class="${policy ? "action" : ""}">${policy ? "Apply in gateway" : "Savings & steps"}</button>`;
}

function applyRecommendation(rec) {
  const steps = `<p>Saves <b>${money(rec.savings_monthly_usd)}</b> a month (${money(rec.savings_annual_usd)} a year) on ${money(rec.current_cost_monthly_usd)};
    effort ${esc(rec.effort)}, risk ${esc(rec.risk)}. Quality: ${esc(rec.quality_impact)}.</p><ol>${(rec.steps || []).map((s) => `<li>${esc(s)}</li>`).join("")}</ol>
    <p class="muted">Rollback: ${esc((rec.rollback || []).join(" "))}</p>`;
  const make = POLICY[rec.kind];
  if (!make || !available.gateway || !can("gateway.write")) {
    const why = !make ? "This change is made in the agents themselves (no gateway policy does it)."
      : !available.gateway ? "The gateway policy API is not available on this server: follow the steps." : "Your key's role may not change gateway policies.";
    dialog(rec.title, [], async () => false, { okLabel: "Close", intro: steps + `<p class="muted">${why}</p>` });
    return;
  }
  const policy = make(rec.scope || {});
  const agents = rec.affected_agents || [];
  dialog(`Apply in gateway: ${rec.title}`, [
    { name: "scope", label: "Apply to", type: "select", value: agents.length === 1 ? `agent=${agents[0]}` : "",
      options: [["", "The whole fleet"], ...agents.map((a) => [`agent=${a}`, `agent ${a}`])] },
    { name: "params", label: `Policy ${policy.kind} parameters (JSON)`, type: "textarea", value: JSON.stringify(policy.params) },
    { name: "note", label: "Note", value: `from recommendation #${rec.id}` },
  ], async (v) => {
    let params;
    try { params = JSON.parse(v.params); } catch (error) { throw new Error("parameters: not valid JSON (" + error.message + ")"); }
    const scope = v.scope ? Object.fromEntries([v.scope.split("=")]) : {};
    const made = await api("/api/gateway/policies", {}, { method: "POST", body: { kind: policy.kind, scope, params, recommendation_id: rec.id, note: v.note } });
    available.applied.set(rec.id, made.id);
    toast(`Gateway policy #${made.id} (${made.kind}) is active; running gateways pick it up within seconds.`);
  }, { okLabel: "Create policy", intro: steps });
}
hooks.apply = (rec) => rec && applyRecommendation(rec);

async function policies() {
  const panel = $("policies-panel");
  await probeGateway();
  panel.classList.toggle("hidden", !available.gateway);
  if (!available.gateway) return;
  const el = $("policies");
  try {
    const data = await api("/api/gateway/policies");
    const rows = data.policies || [];
    remember(rows);
    table(el, [{ key: "id", label: "#", num: true }, { key: "kind", label: "Policy" },
      { key: "scope", label: "Scope", html: (p) => esc(Object.entries(p.scope || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "fleet") },
      { key: "params", label: "Parameters", html: (p) => `<code>${esc(JSON.stringify(p.params))}</code>` },
      { key: "recommendation_id", label: "From rec.", num: true }, { key: "created_by", label: "By" },
      { label: "", html: (p) => (can("gateway.write") ? `<button data-del-policy="${p.id}">Remove</button>` : "") }], rows);
    if (!rows.length) setState(el, "No gateway policies yet: apply a recommendation.");
    el.querySelectorAll("[data-del-policy]").forEach((b) => b.addEventListener("click", () =>
      api(`/api/gateway/policies/${b.dataset.delPolicy}`, {}, { method: "DELETE" }).then(policies, (e) => toast(e.message, "critical"))));
  } catch (error) { setState(el, "Could not load policies: " + error.message, true); }
}

// ---------------------------------------------------------------------------------------------

export function actionTasks() {
  $("export-report").classList.toggle("hidden", !can("costs.read"));
  return [alerts(), experiments(), schedules(), policies()];
}

export async function prepareActions() {
  await probeGateway();
}

export function wireActions() {
  $("export-report").addEventListener("click", exportReport);
  $("new-schedule").addEventListener("click", () => scheduleReview().catch((e) => toast(e.message, "critical")));
  $("new-budget-alert").addEventListener("click", () => budgetAlert().catch((e) => toast(e.message, "critical")));
  $("new-cost-alert").addEventListener("click", () => costAlert().catch((e) => toast(e.message, "critical")));
  $("new-channel").addEventListener("click", newChannel);
  $("new-experiment").addEventListener("click", newExperiment);
}
