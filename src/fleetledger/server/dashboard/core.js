/* fleetledger dashboard core: the view state held in the URL, the API client, formatting, charts,
   tables, dialogs and toasts. Money arrives as decimal strings; it is converted for display only.
   No business rule lives here: the server computes, the page shows. */

export const charts = {};
export const me = { role: "viewer", departments: [], actions: [] };
export const rates = { USD: "1" };
export const decimals = { USD: 2 };
export const hooks = { render: async () => {} };

/** resolves once the (async) ECharts script has run; every API answer waits for it, so any panel
    drawing after a request finds the library */
export const echartsReady = new Promise((resolve, reject) => {
  if (window.echarts) { resolve(); return; }
  const tag = document.getElementById("echarts-script");
  tag.addEventListener("load", () => resolve());
  tag.addEventListener("error", () => reject(new Error("the chart library did not load")));
});

// ---------------------------------------------------------------------------------------------
// state <-> URL

const LISTS = ["department", "agent_ids"];
const TEXTS = ["provider", "cost_center", "agent", "family", "category", "agent_status"];

export function readState() {
  const q = new URLSearchParams(location.search);
  const out = {
    range: q.get("range") || "30d",
    since: q.get("since") || "",
    until: q.get("until") || "",
    environment: q.has("environment") ? q.get("environment") : "production",
    by: q.get("by") || "provider",
    currency: q.get("currency") || "USD",
  };
  for (const key of LISTS) out[key] = (q.get(key) || "").split(",").filter(Boolean);
  for (const key of TEXTS) out[key] = q.get(key) || "";
  return out;
}

export const state = readState();

export function writeState(changes) {
  Object.assign(state, changes);
  const q = new URLSearchParams();
  if (state.range !== "30d") q.set("range", state.range);
  if (state.range === "custom") { if (state.since) q.set("since", state.since); if (state.until) q.set("until", state.until); }
  for (const key of LISTS) if (state[key].length) q.set(key, state[key].join(","));
  for (const key of TEXTS) if (state[key]) q.set(key, state[key]);
  if (state.environment !== "production") q.set("environment", state.environment);
  if (state.by !== "provider") q.set("by", state.by);
  if (state.currency !== "USD") q.set("currency", state.currency);
  history.pushState(null, "", location.pathname + (q.toString() ? "?" + q : ""));
  return hooks.render();
}

window.addEventListener("popstate", () => { Object.assign(state, readState()); hooks.render(); });

export function rangeParams() {
  if (state.range === "custom" && state.since) {
    const p = { since: state.since };
    if (state.until) p.until = state.until;
    return p;
  }
  return { since: state.range };
}

/** models of each family, filled from the server's model matrix (the family rule lives server-side) */
export const families = {};

export function whereParams(extra = {}) {
  const where = [];
  if (state.department.length) where.push("department=" + state.department.join(","));
  for (const key of ["provider", "environment", "cost_center", "category"]) if (state[key]) where.push(`${key}=${state[key]}`);
  if (state.family && families[state.family]) where.push("model=" + families[state.family].join(","));
  if (state.agent_status) where.push(`tag.agent_status=${state.agent_status}`);
  if (state.agent_ids.length && !("agent" in extra)) where.push("agent=" + state.agent_ids.join(","));
  for (const [k, v] of Object.entries(extra)) where.push(`${k}=${v}`);
  return where;
}

// ---------------------------------------------------------------------------------------------
// API

function authHeaders() {
  const key = sessionStorage.getItem("fleetledger-key");
  return key ? { Authorization: "Bearer " + key } : {};
}

export async function api(path, params = {}, options = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
    else if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const headers = { ...authHeaders(), ...(options.headers || {}) };
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(url, { ...options, headers, body: options.body ? JSON.stringify(options.body) : undefined });
  if (response.status === 204) { await echartsReady; return {}; }
  const body = await response.json().catch(() => ({}));
  await echartsReady;
  if (!response.ok) {
    const error = new Error((body.error && body.error.message) || body.detail && JSON.stringify(body.detail) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

/** GET shared by the panels of one render (the same trend or budget status is asked for twice) */
const shared = new Map();
export function apiShared(path, params = {}) {
  const key = path + "?" + JSON.stringify(params);
  if (!shared.has(key)) shared.set(key, api(path, params).catch((error) => { shared.delete(key); throw error; }));
  return shared.get(key);
}
export function newRender() { shared.clear(); }

/** a file download through fetch (so the API key header is sent); returns the saved file name */
export async function download(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
    else if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const response = await fetch(url, { headers: authHeaders() });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error((body.error && body.error.message) || `${response.status} ${response.statusText}`);
  }
  const disposition = response.headers.get("Content-Disposition") || "";
  const name = (disposition.match(/filename="?([^";]+)"?/) || [])[1] || "fleetledger-report";
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.appendChild(link);
  link.click();
  setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  return name;
}

/** may this key take this server action (from /api/me, the server's role table)? */
export function can(action) {
  return (me.actions || []).includes(action);
}

// ---------------------------------------------------------------------------------------------
// formatting

export function money(usd) {
  if (usd === null || usd === undefined) return "–";
  const rate = Number(rates[state.currency] || 1);
  const places = decimals[state.currency] ?? 2;
  const value = Number(usd) * rate;
  const small = value !== 0 && Math.abs(value) < 1 ? Math.min(4, places + 2) : places;
  return new Intl.NumberFormat(undefined, { style: "currency", currency: state.currency,
    minimumFractionDigits: small, maximumFractionDigits: small }).format(value);
}

export const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

export function table(el, columns, rows, onClick) {
  if (!rows.length) { el.innerHTML = '<div class="state">No data for these filters.</div>'; return; }
  el.innerHTML = "<table><thead><tr>" + columns.map((c) => `<th class="${c.num ? "num" : ""}">${esc(c.label)}</th>`).join("") +
    "</tr></thead><tbody>" + rows.map((r, i) => `<tr data-i="${i}" class="${onClick ? "click" : ""}${r._class ? " " + r._class : ""}">` +
      columns.map((c) => `<td class="${c.num ? "num" : ""}"${c.key ? ` data-col="${c.key}"` : ""}>${c.html ? c.html(r) : c.money ? money(r[c.key]) : esc(r[c.key] ?? "–")}</td>`).join("") + "</tr>").join("") +
    "</tbody></table>";
  if (onClick) el.querySelectorAll("tbody tr").forEach((tr) => tr.addEventListener("click", () => onClick(rows[Number(tr.dataset.i)])));
}

export function setState(el, message, error = false) {
  el.innerHTML = `<div class="state${error ? " error" : ""}">${esc(message)}</div>`;
}

export function chart(id) {
  const el = document.getElementById(id);
  if (charts[id] && charts[id].getDom() !== el) { charts[id].dispose(); delete charts[id]; }
  if (!charts[id]) { el.innerHTML = ""; charts[id] = echarts.init(el); }
  return charts[id];
}

export function chartError(id, error) {
  if (charts[id]) { charts[id].dispose(); delete charts[id]; }
  setState(document.getElementById(id), "Could not load: " + error.message, true);
}

export function loading(id) {
  const el = document.getElementById(id);
  if (!charts[id]) setState(el, "Loading…");
}

export const axisMoney = { type: "value", axisLabel: { formatter: (v) => money(v) } };

// ---------------------------------------------------------------------------------------------
// toasts and dialogs

export function toast(message, level = "info") {
  const el = document.createElement("div");
  el.className = "toast " + level;
  el.textContent = message;
  document.getElementById("toasts").appendChild(el);
  setTimeout(() => el.remove(), 12000);
}

/** fields: {name, label, required, value, type: text|number|select|textarea|checkbox, options: [[value, label]]} */
export function dialog(title, fields, submit, { okLabel = "Save", intro = "" } = {}) {
  const box = document.getElementById("dialog");
  const form = document.getElementById("dialog-form");
  const input = (f) => {
    const common = `name="${f.name}" ${f.required ? "required" : ""} aria-label="${esc(f.label)}"`;
    if (f.type === "select") return `<select ${common}${f.multiple ? " multiple" : ""}>${f.options.map(([v, l]) =>
      `<option value="${esc(v)}" ${String(v) === String(f.value ?? "") ? "selected" : ""}>${esc(l)}</option>`).join("")}</select>`;
    if (f.type === "textarea") return `<textarea ${common} rows="3">${esc(f.value || "")}</textarea>`;
    if (f.type === "checkbox") return `<input type="checkbox" ${common} ${f.value ? "checked" : ""}>`;
    return `<input type="${f.type || "text"}" ${common} value="${esc(f.value ?? "")}"${f.step ? ` step="${f.step}"` : ""}${f.min !== undefined ? ` min="${f.min}"` : ""}>`;
  };
  form.innerHTML = `<h3>${esc(title)}</h3>${intro ? `<div class="intro">${intro}</div>` : ""}` +
    fields.map((f) => `<label${f.type === "checkbox" ? ' class="check"' : ""}>${esc(f.label)}${input(f)}</label>`).join("") +
    `<div class="error" id="dialog-error" role="alert"></div><div class="buttons"><button value="cancel" formnovalidate type="button" id="dialog-cancel">Cancel</button> <button value="ok" class="action" id="dialog-ok">${esc(okLabel)}</button></div>`;
  form.querySelector("#dialog-cancel").addEventListener("click", () => box.close());
  form.onsubmit = async (event) => {
    event.preventDefault();
    const values = {};
    for (const f of fields) {
      const el = form.elements[f.name];
      values[f.name] = f.type === "checkbox" ? el.checked : f.multiple ? [...el.selectedOptions].map((o) => o.value) : el.value;
    }
    const ok = document.getElementById("dialog-ok");
    ok.disabled = true;
    try { const done = await submit(values); box.close(); if (done !== false) hooks.render(); }
    catch (error) { document.getElementById("dialog-error").textContent = error.message; }
    finally { ok.disabled = false; }
  };
  box.showModal();
}

export function pct(value, digits = 1) {
  return value === null || value === undefined ? "–" : `${Number(value).toFixed(digits)}%`;
}
