// pgsched dashboard: plain JavaScript over the JSON API, with a bearer token kept in localStorage.
// Every value is rendered with textContent (never innerHTML), so user data cannot run as code.
// Each page has a hash URL (#/jobs/123, #/queues/emails ...); lists are keyed tables updated in place
// every 2 s, so paging, selection and text selections survive the refresh.
"use strict";

const TOKEN_KEY = "pgsched.token";
const THEME_KEY = "pgsched.theme";
const PAGE = 50;
const MAX_REFRESH_ROWS = 1000; // the API's page-size cap: past it a list stops auto-refreshing
const RANK = { read: 1, write: 2, admin: 3 };
const JOB_VIEWS = ["all", "available", "scheduled", "retrying", "running", "succeeded", "dead", "cancelled"];
// scope stays null until /whoami answers: nothing is routed or drawn before the page knows what the token may do.
const S = { scope: null, route: { view: "overview" }, queues: [], lastStats: 0, jobs: null, dead: null, jobSig: "", scheduleName: null };

// ---------------------------------------------------------------- DOM and formatting helpers
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const $ = (id) => document.getElementById(id);
const pad = (n, w = 2) => String(n).padStart(w, "0");
const can = (scope) => RANK[S.scope] >= RANK[scope];
const stateBadge = (s) => el("span", { class: `state ${s}` }, s);
const link = (href, text) => el("a", { href, onclick: (ev) => ev.stopPropagation() }, text);
const enc = encodeURIComponent;

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function fmtDur(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const s = Math.max(0, seconds);
  if (s < 1) return `${(s * 1000).toFixed(1)} ms`;
  if (s < 60) return `${s.toFixed(3)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${(s % 60).toFixed(1)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

const between = (a, b) => (a && b ? (new Date(b) - new Date(a)) / 1000 : null);
const fmtBytes = (n) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

function flash(message) {
  $("flash").hidden = !message;
  $("flash").textContent = message || "";
}

// Two clicks for anything destructive, without a blocking dialog.
function confirmed(button, label) {
  if (button.dataset.armed) return true;
  const original = button.textContent;
  button.dataset.armed = "1";
  button.textContent = label;
  setTimeout(() => { delete button.dataset.armed; button.textContent = original; }, 4000);
  return false;
}

// ---------------------------------------------------------------- API
class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.field ? `${err.field}: ${err.message}` : err.message || `HTTP ${status}`);
    this.status = status;
  }
}

// The API's own root: "" at /, "/prefix" when the app is mounted under a prefix of another app.
const API_ROOT = location.pathname.replace(/\/[^/]*$/, "");

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${localStorage.getItem(TOKEN_KEY) || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API_ROOT + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.status === 401) signOut("Your token was refused; sign in again.");
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

async function attempt(fn, what) {
  try {
    const result = await fn();
    flash("");
    return result;
  } catch (error) {
    flash(`${what} failed: ${error.message}`);
    return undefined;
  }
}

// ---------------------------------------------------------------- keyed tables (rows updated in place)
class KeyedTable {
  // columns: [{label, render(row) -> Node|string, sort?(row) -> value, cls?}]
  constructor(container, columns, { onOpen, selectable, empty } = {}) {
    this.columns = columns;
    this.onOpen = onOpen;
    this.selectable = selectable;
    this.rows = new Map(); // key -> {tr, sig, data}
    this.order = [];
    this.selected = new Set();
    this.sort = null;
    this.empty = empty || "nothing here";
    this.onSelect = () => {};
    const head = el("tr", {}, selectable ? el("th", { class: "pick" }, el("input", { type: "checkbox", "aria-label": "select all", onchange: (ev) => this.selectAll(ev.target.checked) })) : null,
      columns.map((c) => el("th", { class: c.cls || "", onclick: c.sort ? () => this.sortBy(c) : null, title: c.sort ? "sort the loaded rows" : null }, c.label)));
    this.tbody = el("tbody");
    this.table = el("table", { class: "keyed" }, el("thead", {}, head), this.tbody);
    container.replaceChildren(this.table);
  }

  rowFor(item) {
    const key = String(item.id ?? item.name);
    const sig = JSON.stringify(item);
    let entry = this.rows.get(key);
    if (entry && entry.sig === sig) return entry;
    const cells = this.columns.map((c) => el("td", { class: c.cls || "" }, c.render ? c.render(item) : item[c.key] ?? "–"));
    if (!entry) {
      const tr = el("tr", { class: this.onOpen ? "clickable" : "", "data-key": key, tabindex: this.onOpen ? "0" : null,
        onclick: (ev) => { if (this.onOpen && !window.getSelection().toString()) this.onOpen(entry.data, ev); },
        onkeydown: (ev) => { if (this.onOpen && ev.key === "Enter" && ev.target === entry.tr) this.onOpen(entry.data, ev); } });
      entry = { tr, sig: "", data: item, pick: null };
      if (this.selectable) {
        entry.pick = el("input", { type: "checkbox", "aria-label": `select ${key}`, onclick: (ev) => ev.stopPropagation(), onchange: (ev) => { ev.target.checked ? this.selected.add(key) : this.selected.delete(key); this.onSelect(); } });
      }
      this.rows.set(key, entry);
    }
    entry.sig = sig;
    entry.data = item;
    entry.tr.replaceChildren(...(entry.pick ? [el("td", { class: "pick" }, entry.pick)] : []), ...cells);
    return entry;
  }

  // Replace the contents with items (in order), reusing rows whose data did not change.
  update(items) {
    const keep = new Set();
    this.order = items.map((item) => { const e = this.rowFor(item); keep.add(e.tr.dataset.key); return e.tr.dataset.key; });
    for (const key of [...this.rows.keys()]) if (!keep.has(key)) { this.rows.delete(key); this.selected.delete(key); }
    this.render();
  }

  append(items) {
    for (const item of items) {
      const e = this.rowFor(item);
      if (!this.order.includes(e.tr.dataset.key)) this.order.push(e.tr.dataset.key);
    }
    this.render();
  }

  render() {
    let keys = this.order;
    if (this.sort) {
      const { col, dir } = this.sort;
      keys = [...keys].sort((a, b) => {
        const va = col.sort(this.rows.get(a).data), vb = col.sort(this.rows.get(b).data);
        return (va > vb ? 1 : va < vb ? -1 : 0) * dir;
      });
    }
    const trs = keys.map((k) => this.rows.get(k).tr);
    if (!trs.length) trs.push(el("tr", {}, el("td", { colspan: this.columns.length + (this.selectable ? 1 : 0), class: "muted" }, this.empty)));
    // Move nodes only where the order changed, so a row being read is not re-created.
    trs.forEach((tr, i) => { if (this.tbody.children[i] !== tr) this.tbody.insertBefore(tr, this.tbody.children[i] || null); });
    while (this.tbody.children.length > trs.length) this.tbody.lastChild.remove();
    this.onSelect();
  }

  sortBy(col) {
    const dir = this.sort && this.sort.col === col ? -this.sort.dir : 1;
    this.sort = { col, dir };
    this.table.querySelectorAll("th").forEach((th) => th.removeAttribute("aria-sort"));
    this.render();
  }

  selectAll(on) {
    for (const [key, e] of this.rows) { e.pick.checked = on; on ? this.selected.add(key) : this.selected.delete(key); }
    this.onSelect();
  }

  get size() { return this.order.length; }
}

// ---------------------------------------------------------------- sign in, scope, theme
function showLogin(message) {
  S.scope = null;
  $("login").hidden = false;
  $("nav").hidden = true;
  $("logout").hidden = true;
  document.querySelectorAll(".view").forEach((v) => (v.hidden = true));
  $("login-error").textContent = message || "";
}

function signOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  if (message) showLogin(message); else location.reload(); // a reload drops every rendered action
}

async function login(event) {
  event.preventDefault();
  localStorage.setItem(TOKEN_KEY, $("token").value.trim());
  try {
    await whoami();
    $("token").value = "";
    route(); // the scope is known: start() would only ask /whoami again
  } catch (error) {
    localStorage.removeItem(TOKEN_KEY);
    showLogin(error.status === 401 ? "That token was not accepted." : error.message);
  }
}

async function whoami() {
  const me = await api("GET", "/dashboard/api/whoami");
  S.scope = me.scope;
  // A token that may not act sees no action at all (not disabled buttons that fail).
  if (!can("write")) document.querySelectorAll(".needs-write").forEach((n) => n.remove());
  if (!can("admin")) document.querySelectorAll(".needs-admin").forEach((n) => n.remove());
  $("status").dataset.scope = me.scope;
}

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme; else delete document.documentElement.dataset.theme;
  const dark = theme ? theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  $("theme").textContent = dark ? "Light" : "Dark";
}

function toggleTheme() {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  localStorage.setItem(THEME_KEY, dark ? "light" : "dark");
  applyTheme(dark ? "light" : "dark");
}

// ---------------------------------------------------------------- routing
function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, "") || "overview";
  const [path, query] = raw.split("?");
  const [head, ...rest] = path.split("/");
  const id = rest.length ? decodeURIComponent(rest.join("/")) : null;
  const params = new URLSearchParams(query || "");
  const detail = { jobs: "job", queues: "queue", schedules: "schedule", workers: "worker", workflows: "workflow" };
  if (id && detail[head]) return { view: detail[head], id, params };
  const known = ["overview", "jobs", "workflows", "schedules", "dead", "workers", "new"];
  return { view: known.includes(head) ? head : "overview", id: null, params };
}

function route() {
  S.route = parseRoute();
  const { view } = S.route;
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  const nav = { job: "jobs", queue: "overview", schedule: "schedules", worker: "workers", workflow: "workflows" }[view] || view;
  document.querySelectorAll(".view").forEach((v) => (v.hidden = v.id !== `view-${view}`));
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === nav));
  if (view === "jobs") enterJobs();
  if (view === "dead") enterDead();
  if (view === "job") S.jobSig = "";
  if (view === "workflow") workflowSig = "";  // workflows.js
  if (view === "schedule" && S.scheduleName !== S.route.id) { S.scheduleName = null; }
  if (view === "overview") S.lastStats = 0;
  refresh();
}

const REFRESH = {
  overview: refreshOverview, jobs: refreshJobs, job: refreshJob, queue: refreshQueue, schedules: refreshSchedules,
  schedule: refreshSchedule, dead: refreshDead, workers: refreshWorkers, worker: refreshWorker, new: async () => {},
  workflows: () => refreshWorkflows(), workflow: () => refreshWorkflow(),  // workflows.js
};
let refreshing = false;

async function refresh() {
  if (!S.scope || refreshing) return;
  refreshing = true;
  try {
    await REFRESH[S.route.view]();
    $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("status").textContent = `error: ${error.message}`;
  } finally {
    refreshing = false;
  }
}

// ---------------------------------------------------------------- overview and queues
async function loadQueues() {
  S.queues = (await api("GET", "/queues")).items;
  return S.queues;
}

function queueLimits(q) {
  const parts = [];
  if (q.paused) parts.push("paused");
  if (q.concurrency_limit !== null) parts.push(`concurrency ${q.concurrency_limit}`);
  if (q.rate_limit !== null) parts.push(`rate ${q.rate_limit}/${q.rate_period_seconds} s`);
  if (q.running_keys) parts.push(`${q.running_keys} keys running`);
  return parts.length ? el("span", { class: q.paused ? "state dead" : "" }, parts.join(", ")) : "–";
}

function pauseButton(q) {
  if (!can("admin")) return null;
  return el("button", { class: "secondary small", "data-queue": q.queue, onclick: async (ev) => {
    ev.stopPropagation();
    const verb = q.paused ? "resume" : "pause";
    const ok = await attempt(() => api("PATCH", `/queues/${enc(q.queue)}`, { paused: !q.paused }), `${verb} queue ${q.queue}`);
    if (ok !== undefined) refresh();
  } }, q.paused ? "resume" : "pause");
}

const QUEUE_COLUMNS = [
  { label: "queue", key: "queue", sort: (q) => q.queue },
  { label: "due", key: "due", sort: (q) => q.due }, { label: "scheduled", key: "scheduled", cls: "opt", sort: (q) => q.scheduled },
  { label: "running", key: "running", sort: (q) => q.running }, { label: "succeeded", key: "succeeded", cls: "opt", sort: (q) => q.succeeded },
  { label: "dead", key: "dead", sort: (q) => q.dead }, { label: "cancelled", key: "cancelled", cls: "opt" },
  { label: "oldest waiting", cls: "opt", render: (q) => (q.oldest_due_seconds === null ? "–" : fmtDur(q.oldest_due_seconds)) },
  { label: "limits", render: queueLimits },
  { label: "", render: pauseButton },
];

const WORKER_COLUMNS = [
  { label: "id", key: "id" }, { label: "role", key: "role" },
  { label: "host", cls: "opt", render: (w) => `${w.host}:${w.pid}` },
  { label: "queues", render: (w) => w.queues.join(", ") || "–" },
  { label: "heartbeat", render: (w) => `${fmtDur(w.heartbeat_age_seconds)} ago` },
  { label: "alive", render: (w) => (w.alive ? (w.is_leader ? "yes (leader)" : "yes") : "no") },
];

let queueTable = null;
let workerTable = null;

async function refreshOverview() {
  const [queues, workers, leader] = await Promise.all([loadQueues(), api("GET", "/workers"), api("GET", "/leader")]);
  if (!queueTable || !$("queues").contains(queueTable.table)) {
    queueTable = new KeyedTable($("queues"), QUEUE_COLUMNS, { onOpen: (q) => (location.hash = `#/queues/${enc(q.queue)}`) });
  }
  queueTable.update(queues.map((q) => ({ id: q.queue, ...q })));
  if (!workerTable || !$("workers").contains(workerTable.table)) {
    workerTable = new KeyedTable($("workers"), WORKER_COLUMNS, { onOpen: (w) => (location.hash = `#/workers/${w.id}`) });
  }
  workerTable.update(workers.items.map(({ heartbeat_at, ...w }) => ({ ...w, heartbeat_age_seconds: Math.round(w.heartbeat_age_seconds) })));
  const lead = leader.leader;
  $("leader").replaceChildren(lead
    ? el("p", {}, "Leader: ", el("span", { class: "leader" }, `${lead.role} #${lead.id} on ${lead.host} (pid ${lead.pid})`))
    : el("p", { class: "error" }, "No leader: cron and crash recovery are paused until a scheduler or worker runs."));
  if (Date.now() - S.lastStats > 30000) {
    S.lastStats = Date.now();
    await drawCharts($("charts"), $("c-window").value, $("c-queue").value.trim(), $("c-task").value.trim());
  }
}

async function drawCharts(container, window, queue, task) {
  const params = new URLSearchParams({ window });
  if (queue) params.set("queue", queue);
  if (task) params.set("task", task);
  try {
    renderCharts(container, await api("GET", `/dashboard/api/stats?${params}`));
  } catch (error) {
    container.replaceChildren(el("p", { class: "error" }, `charts: ${error.message}`));
  }
}

// "succeeded 90d · dead 30d (default) · ...": what the queue's finished jobs are kept (GET /retention?queue=).
function retentionText(retention) {
  if (!retention) return "–";
  return retention.items.map((r) => `${r.state} ${r.keep}${r.source === "default" ? " (default)" : ""}`).join(" · ");
}

async function refreshQueue() {
  const name = S.route.id;
  const [queues, retention] = await Promise.all([loadQueues(), api("GET", `/retention?queue=${enc(name)}`).catch(() => null)]);
  const q = queues.find((x) => x.queue === name);
  const detail = $("queue-detail");
  if (!q) {
    detail.replaceChildren(el("h2", {}, `Queue ${name}`), el("p", { class: "muted" }, "No jobs and no settings for this queue."));
    return;
  }
  const counts = ["due", "scheduled", "running", "succeeded", "dead", "cancelled"];
  detail.replaceChildren(
    el("h2", {}, `Queue ${q.queue} `, q.paused ? stateBadge("paused") : null),
    el("div", { class: "stat-row" }, counts.map((c) => el("a", { class: "stat", href: `#/jobs?view=${c === "due" ? "available" : c}&queue=${enc(q.queue)}` }, el("b", {}, String(q[c])), c))),
    el("div", { class: "kv" }, ["oldest waiting", q.oldest_due_seconds === null ? "–" : fmtDur(q.oldest_due_seconds), "limits", queueLimits(q), "kept", retentionText(retention)].map((v) => el("div", {}, v))),
    el("div", { class: "row" }, pauseButton(q), link(`#/jobs?queue=${enc(q.queue)}`, "All jobs of this queue →")));
  if (S.lastStats !== name) {
    S.lastStats = name;
    await drawCharts($("queue-charts"), "1h", name, "");
  }
}

// ---------------------------------------------------------------- jobs
function jobTime(view) {
  if (view === "running") return { label: "started", at: (j) => j.started_at, dur: "elapsed", len: (j) => j.elapsed_seconds };
  if (["available", "scheduled", "retrying"].includes(view)) return { label: "run at", at: (j) => j.run_at, dur: "waited", len: (j) => (view === "available" ? between(j.run_at, new Date().toISOString()) : null) };
  if (view === "all") return { label: "created", at: (j) => j.created_at, dur: "run time", len: (j) => between(j.started_at, j.finished_at) };
  return { label: "finished", at: (j) => j.finished_at, dur: "run time", len: (j) => between(j.started_at, j.finished_at) };
}

function jobColumns(view) {
  const t = jobTime(view);
  return [
    { label: "id", key: "id", sort: (j) => j.id },
    { label: "task", key: "task", sort: (j) => j.task }, { label: "queue", key: "queue", cls: "opt", sort: (j) => j.queue },
    { label: "state", render: (j) => stateBadge(j.state), sort: (j) => j.state },
    { label: "attempt", cls: "opt", render: (j) => `${j.attempt}/${j.max_attempts}`, sort: (j) => j.attempt },
    { label: t.label, cls: "time", render: (j) => fmtTime(t.at(j)), sort: (j) => t.at(j) || "" },
    { label: t.dur, render: (j) => fmtDur(t.len(j)), sort: (j) => t.len(j) ?? -1 },
    { label: "args", cls: "args", render: (j) => el("code", { title: fmtBytes(j.args_bytes) }, j.args_bytes > 300 ? `${j.args_preview}… (${fmtBytes(j.args_bytes)})` : j.args_preview) },
    { label: "last error", cls: "opt err", render: (j) => j.last_error || "" },
  ];
}

function jobFilters() {
  const p = S.route.params;
  return { view: JOB_VIEWS.includes(p.get("view")) ? p.get("view") : "all", queue: p.get("queue") || "", task: p.get("task") || "", args: p.get("args") || "", tag: p.get("tag") || "", meta: p.get("meta") || "" };
}

function enterJobs() {
  const f = jobFilters();
  const key = JSON.stringify(f);
  $("f-queue").value = f.queue;
  $("f-task").value = f.task;
  $("f-search").value = f.args;
  $("f-tag").value = f.tag;
  $("f-meta").value = f.meta;
  if (S.jobs && S.jobs.key === key) return; // coming back to the same list keeps its rows and page
  const table = new KeyedTable($("jobs-table"), jobColumns(f.view), { onOpen: (j) => (location.hash = `#/jobs/${j.id}`), selectable: can("write") });
  table.onSelect = () => {
    if (!$("bulk-bar")) return;
    $("bulk-bar").hidden = table.selected.size === 0;
    $("bulk-count").textContent = `${table.selected.size} selected`;
  };
  S.jobs = { key, filters: f, table, cursor: null };
  $("jobs-note").textContent = "";
  $("bulk-message").textContent = "";
  renderTabs(null);
}

function jobsUrl(f, limit, cursor) {
  const params = new URLSearchParams({ limit: String(limit) });
  if (f.args) params.set("args", f.args); else if (!f.tag && !f.meta) params.set("view", f.view);
  if (f.tag) params.set("tag", f.tag);
  if (f.meta) params.set("meta", f.meta);
  if (f.queue) params.set("queue", f.queue);
  if (f.task) params.set("task", f.task);
  if (cursor) params.set("cursor", cursor);
  return `/dashboard/api/jobs?${params}`;
}

function listHash(changes) {
  const f = { ...jobFilters(), ...changes };
  const params = new URLSearchParams();
  for (const k of ["view", "queue", "task", "args", "tag", "meta"]) if (f[k] && !(k === "view" && f[k] === "all")) params.set(k, f[k]);
  return `#/jobs${params.toString() ? `?${params}` : ""}`;
}

function renderTabs(counts) {
  const f = S.jobs.filters;
  $("job-tabs").replaceChildren(...JOB_VIEWS.map((v) =>
    el("a", { href: listHash({ view: v, args: "", tag: "", meta: "" }), role: "tab", "data-view": v, class: !f.args && !f.tag && !f.meta && f.view === v ? "tab active" : "tab", "aria-selected": String(!f.args && !f.tag && !f.meta && f.view === v) },
      v, counts && counts[v] !== undefined ? el("span", { class: "count" }, counts[v]) : null)));
}

async function tabCounts(queueFilter) {
  const [queues, extra] = await Promise.all([loadQueues(), api("GET", "/dashboard/api/counts")]);
  const sum = (k) => queues.filter((q) => !queueFilter || q.queue === queueFilter).reduce((n, q) => n + q[k], 0);
  const counts = { available: sum("due"), scheduled: sum("scheduled"), running: sum("running"), succeeded: sum("succeeded"), dead: sum("dead"), cancelled: sum("cancelled") };
  counts.all = counts.available + counts.scheduled + counts.running + counts.succeeded + counts.dead + counts.cancelled;
  counts.retrying = queueFilter ? "…" : `${extra.retrying}${extra.retrying_capped ? "+" : ""}`;
  return counts;
}

async function refreshJobs() {
  const jobs = S.jobs;
  const shown = jobs.table.size;
  const [counts] = await Promise.all([
    tabCounts(jobs.filters.queue),
    shown > MAX_REFRESH_ROWS ? null : api("GET", jobsUrl(jobs.filters, Math.max(PAGE, shown), null)).then((page) => {
      if (S.jobs !== jobs) return;
      jobs.table.update(page.items);
      jobs.cursor = page.next_cursor;
      $("jobs-more").hidden = !jobs.cursor;
      $("jobs-note").textContent = page.searched_newest ? `Args search looks at the newest ${page.searched_newest.toLocaleString()} jobs.` : "";
    }),
  ]);
  if (shown > MAX_REFRESH_ROWS) $("jobs-note").textContent = `Auto-refresh paused: ${shown} rows loaded.`;
  if (S.jobs === jobs) renderTabs(counts);
}

async function moreJobs() {
  const jobs = S.jobs;
  const page = await attempt(() => api("GET", jobsUrl(jobs.filters, PAGE, jobs.cursor)), "Load more");
  if (!page || S.jobs !== jobs) return;
  jobs.table.append(page.items);
  jobs.cursor = page.next_cursor;
  $("jobs-more").hidden = !jobs.cursor;
}

async function applyJobFilters(event) {
  event.preventDefault();
  const search = $("f-search").value.trim();
  const changes = { queue: $("f-queue").value.trim(), task: $("f-task").value.trim(), args: "", tag: $("f-tag").value.trim(), meta: $("f-meta").value.trim() };
  if (changes.meta) {
    try { JSON.parse(changes.meta); } catch (error) { flash(`Meta: not valid JSON (${error.message})`); return; }
  }
  if (/^\d+$/.test(search)) { location.hash = `#/jobs/${search}`; return; }
  if (search.startsWith("{")) {
    try { JSON.parse(search); } catch (error) { flash(`Search: not valid JSON (${error.message})`); return; }
    changes.args = search;
  } else if (search) {
    const found = await attempt(() => api("GET", `/dashboard/api/run-key?run_key=${enc(search)}`), `Run key ${search}`);
    if (found) location.hash = `#/jobs/${found.id}`;
    return;
  }
  flash("");
  location.hash = listHash(changes);
}

async function bulkAction(event) {
  const button = event.target.closest("button[data-bulk]");
  if (!button) return;
  const action = button.dataset.bulk;
  const ids = [...S.jobs.table.selected].map(Number);
  if (action === "delete" && !confirmed(button, `Delete ${ids.length}? Click again`)) return;
  const result = await attempt(() => api("POST", "/dashboard/api/jobs/bulk", { action, ids }), `Bulk ${action}`);
  if (!result) return;
  const failed = Object.entries(result.failed);
  $("bulk-message").textContent = `${action}: ${Object.keys(result.done).length} done` +
    (failed.length ? `, ${failed.length} refused (${failed.slice(0, 3).map(([id, why]) => `#${id}: ${why}`).join("; ")})` : ".");
  S.jobs.table.selectAll(false);
  refresh();
}

// ---------------------------------------------------------------- one job
function selectionInside(node) {
  const sel = window.getSelection();
  return sel && !sel.isCollapsed && node.contains(sel.anchorNode);
}

async function refreshJob() {
  const detail = $("job-detail");
  let job;
  try {
    job = await api("GET", `/jobs/${enc(S.route.id)}`);
  } catch (error) {
    detail.replaceChildren(el("h2", {}, `Job ${S.route.id}`), el("p", { class: "error" }, error.message));
    S.jobSig = "";
    return;
  }
  const sig = JSON.stringify(job);
  if (sig === S.jobSig) return; // unchanged: leave the page (and any selection) alone
  if (selectionInside(detail)) { $("status").textContent = "paused while you select text"; return; }
  S.jobSig = sig;
  renderJob(detail, job);
}

function jobAction(label, method, path, cls) {
  return el("button", { class: cls || "secondary", onclick: async (ev) => {
    if (cls === "danger" && !confirmed(ev.target, "Click again to delete")) return;
    const ok = await attempt(() => api(method, path), `${label} job`);
    if (ok === undefined) return;
    if (method === "DELETE") location.hash = "#/jobs"; else refresh();
  } }, label);
}

function renderJob(detail, job) {
  const running = job.state === "running";
  const elapsed = running ? between(job.started_at, new Date().toISOString()) : between(job.started_at, job.finished_at);
  const args = JSON.stringify(job.args, null, 2);
  const big = args.length > 200000;
  const argsPre = el("pre", { id: "job-args", class: "scroll" }, big ? `${args.slice(0, 200000)}\n… (${fmtBytes(args.length)} in all)` : args);
  detail.replaceChildren(
    el("h2", {}, `Job ${job.id} · ${job.task} `, stateBadge(job.state)),
    can("write") ? el("div", { class: "actions row" },
      ["queued", "running"].includes(job.state) ? jobAction("Cancel", "POST", `/jobs/${job.id}/cancel`) : null,
      job.state !== "running" ? jobAction("Retry", "POST", `/jobs/${job.id}/retry`) : null,
      ["succeeded", "dead", "cancelled"].includes(job.state) ? jobAction("Delete", "DELETE", `/jobs/${job.id}`, "danger") : null) : null,
    el("div", { class: "kv" },
      ["queue", link(`#/queues/${enc(job.queue)}`, job.queue), "priority", job.priority, "attempt", `${job.attempt} of ${job.max_attempts}`,
       "worker", job.worker_id ? link(`#/workers/${job.worker_id}`, String(job.worker_id)) : "–",
       "created", fmtTime(job.created_at), "run at", fmtTime(job.run_at), "started", fmtTime(job.started_at),
       "finished", fmtTime(job.finished_at), "waited", fmtDur(between(job.run_at, job.started_at)),
       running ? "running for" : "ran for", fmtDur(elapsed), "run key", job.run_key ?? "–",
       "schedule", job.schedule_name ? link(`#/schedules/${enc(job.schedule_name)}`, job.schedule_name) : "–",
       "progress", job.progress == null ? "–" : `${Math.round(job.progress * 100)}%${job.progress_message ? ` · ${job.progress_message}` : ""} (${fmtTime(job.progress_at)})`,
       "snoozes", String(job.snoozes ?? 0),
       "lease until", job.lease_until ? fmtTime(job.lease_until) : "–",
       "tags", (job.tags || []).length ? el("span", {}, ...job.tags.map((t) => link(`#/jobs?tag=${enc(t)}`, t)).flatMap((a) => [a, " "])) : "–",
       "deadline", job.expires_at ? `${fmtTime(job.expires_at)}${job.expired ? " (expired)" : ""}` : "–"].map((v) => el("div", {}, v))),
    el("h3", {}, "Meta"), el("pre", { id: "job-meta", class: "scroll" }, JSON.stringify(job.meta || {}, null, 2)),
    el("h3", {}, "Args"), argsPre,
    el("h3", {}, "Result"), el("pre", { class: "scroll" }, JSON.stringify(job.result, null, 2)),
    el("h3", {}, `Attempts with errors (${job.errors.length})`),
    ...job.errors.map((e) => el("details", { class: "attempt" },
      el("summary", {}, el("strong", {}, e.attempt == null ? "never started" : `attempt ${e.attempt}`), ` at ${fmtTime(e.at)} `,
        el("code", { class: "kind" }, e.kind || "exception"), ": ", el("span", { class: "err" }, e.error)),
      e.traceback ? el("pre", { class: "scroll" }, e.traceback) : el("p", { class: "muted" }, "no traceback"))));
}

// ---------------------------------------------------------------- schedules
function scheduleButton(label, fn) {
  return el("button", { class: "secondary small", onclick: async (ev) => {
    ev.stopPropagation();
    if (await attempt(fn, label) !== undefined) refresh();
  } }, label);
}

let scheduleTable = null;

async function refreshSchedules() {
  const page = await api("GET", "/schedules?limit=200");
  if (!scheduleTable || !$("schedules-table").contains(scheduleTable.table)) {
    scheduleTable = new KeyedTable($("schedules-table"), [
      { label: "name", key: "name", sort: (s) => s.name },
      { label: "cron", render: (s) => el("code", {}, s.cron) }, { label: "zone", key: "timezone", cls: "opt" },
      { label: "task", key: "task", sort: (s) => s.task }, { label: "enabled", render: (s) => (s.enabled ? "yes" : "paused") },
      { label: "next fire", cls: "time", render: (s) => fmtTime(s.next_fire_at), sort: (s) => s.next_fire_at || "" },
      { label: "last fired", cls: "opt", render: (s) => fmtTime(s.last_fired_at) },
      { label: "error", cls: "opt err", render: (s) => s.last_error || "" },
      { label: "", render: (s) => (can("write") ? el("span", { class: "actions" },
        s.enabled ? scheduleButton("Pause", () => api("PATCH", `/schedules/${enc(s.name)}`, { enabled: false }))
                  : scheduleButton("Resume", () => api("PATCH", `/schedules/${enc(s.name)}`, { enabled: true })),
        scheduleButton("Trigger now", () => api("POST", `/schedules/${enc(s.name)}/trigger`))) : null) },
    ], { onOpen: (s) => (location.hash = `#/schedules/${enc(s.name)}`), empty: "no schedules yet" });
  }
  scheduleTable.update(page.items);
}

function zoned(iso, zone) {
  const when = new Date(iso);
  try {
    const local = new Intl.DateTimeFormat(undefined, { timeZone: zone, year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" }).format(when);
    return `${local} (${zone})`;
  } catch (error) {
    return fmtTime(iso);
  }
}

async function refreshSchedule() {
  const name = S.route.id;
  const [schedule, runs] = await Promise.all([api("GET", `/schedules/${enc(name)}`), api("GET", `/schedules/${enc(name)}/runs?limit=10`)]);
  const preview = await api("POST", "/schedules/preview", { cron: schedule.cron, timezone: schedule.timezone, count: 5 });
  const detail = $("schedule-detail");
  if (selectionInside(detail)) return;
  detail.replaceChildren(
    el("h2", {}, `Schedule ${schedule.name} `, schedule.enabled ? null : stateBadge("paused")),
    el("div", { class: "kv" }, ["cron", el("code", {}, schedule.cron), "time zone", schedule.timezone, "task", schedule.task,
      "queue", schedule.queue ?? "default", "next fire", schedule.next_fire_at ? zoned(schedule.next_fire_at, schedule.timezone) : "–",
      "last fired", schedule.last_fired_at ? zoned(schedule.last_fired_at, schedule.timezone) : "–"].map((v) => el("div", {}, v))),
    el("h3", {}, `Upcoming fire times in ${schedule.timezone}`),
    el("ol", { id: "schedule-upcoming", class: "mono" }, preview.fires.map((f) => el("li", {}, zoned(f, schedule.timezone)))),
    el("h3", {}, "Last runs"),
    el("div", { class: "table-wrap" }, (() => {
      const box = el("div");
      new KeyedTable(box, [{ label: "job", key: "id" }, { label: "state", render: (j) => stateBadge(j.state) },
        { label: "instant", render: (j) => fmtTime(j.run_at) }, { label: "finished", render: (j) => fmtTime(j.finished_at) }],
        { onOpen: (j) => (location.hash = `#/jobs/${j.id}`), empty: "not fired yet" }).update(runs.items);
      return box;
    })()));
  if (S.scheduleName !== name && $("schedule-edit")) {
    S.scheduleName = name;
    renderScheduleEdit(schedule);
  }
}

function renderScheduleEdit(s) {
  const field = (label, id, value, tag = "input") => el("label", {}, label, tag === "textarea" ? el("textarea", { id }, value) : el("input", { id, value }));
  const error = el("p", { id: "edit-error", class: "error" });
  const form = el("form", { id: "schedule-edit-form", class: "stack", onsubmit: async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      const changes = { cron: $("e-cron").value, timezone: $("e-tz").value.trim(), task: $("e-task").value.trim(), args: readArgs("e-args") };
      if ($("e-queue").value.trim()) changes.queue = $("e-queue").value.trim(); // empty: keep it (none: the task's queue)
      await api("PATCH", `/schedules/${enc(s.name)}`, changes);
      error.textContent = "";
      $("edit-saved").textContent = `Saved at ${new Date().toLocaleTimeString()}.`;
      refresh();
    } catch (err) {
      error.textContent = err.message;
    }
  } },
    field("Cron", "e-cron", s.cron), field("Time zone", "e-tz", s.timezone), field("Task", "e-task", s.task),
    field("Queue", "e-queue", s.queue ?? ""), field("Args (JSON object)", "e-args", JSON.stringify(s.args ?? {}, null, 2), "textarea"),
    el("div", { class: "row" }, el("button", { type: "submit" }, "Save"),
      el("button", { type: "button", id: "schedule-delete", class: "danger", onclick: async (ev) => {
        if (!confirmed(ev.target, "Click again to delete")) return;
        try { await api("DELETE", `/schedules/${enc(s.name)}`); location.hash = "#/schedules"; } catch (err) { error.textContent = err.message; }
      } }, "Delete schedule")),
    error, el("p", { id: "edit-saved", class: "note" }));
  $("schedule-edit").replaceChildren(el("h2", {}, "Edit"), form);
}

function readArgs(id) {
  const text = $(id).value.trim() || "{}";
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`args: not valid JSON (${error.message})`);
  }
}

async function previewSchedule() {
  $("schedule-error").textContent = "";
  try {
    const tz = $("s-tz").value || "UTC";
    const result = await api("POST", "/schedules/preview", { cron: $("s-cron").value, timezone: tz, count: 5 });
    $("schedule-preview").replaceChildren(...result.fires.map((f) => el("li", {}, zoned(f, tz))));
  } catch (error) {
    $("schedule-preview").replaceChildren();
    $("schedule-error").textContent = error.message;
  }
}

async function createSchedule(event) {
  event.preventDefault();
  $("schedule-error").textContent = "";
  try {
    await api("POST", "/schedules", {
      name: $("s-name").value.trim(), cron: $("s-cron").value, timezone: $("s-tz").value.trim() || "UTC",
      task: $("s-task").value.trim(), args: readArgs("s-args"),
    });
    $("schedule-form").reset();
    $("schedule-preview").replaceChildren();
    refresh();
  } catch (error) {
    $("schedule-error").textContent = error.message;
  }
}

// ---------------------------------------------------------------- dead letter
function deadFilters() {
  return { queue: S.route.params.get("queue") || "", task: S.route.params.get("task") || "" };
}

function enterDead() {
  const f = deadFilters();
  $("d-queue").value = f.queue;
  $("d-task").value = f.task;
  const key = JSON.stringify(f);
  if (S.dead && S.dead.key === key) return;
  const table = new KeyedTable($("dead-table"), [
    { label: "id", key: "id", sort: (j) => j.id },
    { label: "task", key: "task", sort: (j) => j.task }, { label: "queue", key: "queue", cls: "opt", sort: (j) => j.queue },
    { label: "attempts", key: "attempt", cls: "opt" }, { label: "died", cls: "time", render: (j) => fmtTime(j.finished_at), sort: (j) => j.finished_at || "" },
    { label: "last error", cls: "err", render: (j) => (j.errors.length ? String(j.errors[j.errors.length - 1].error).slice(0, 300) : "–") },
    { label: "", render: (j) => (can("write") ? el("span", { class: "actions" }, el("button", { class: "secondary small", onclick: async (ev) => {
      ev.stopPropagation();
      if (await attempt(() => api("POST", `/jobs/${j.id}/retry`), `Retry job ${j.id}`) !== undefined) refresh();
    } }, "Retry")) : null) },
  ], { onOpen: (j) => (location.hash = `#/jobs/${j.id}`), empty: "no dead jobs" });
  S.dead = { key, filters: f, table, cursor: null };
  $("dead-message").textContent = "";
}

function deadUrl(f, limit, cursor) {
  const params = new URLSearchParams({ limit: String(limit) });
  if (f.queue) params.set("queue", f.queue);
  if (f.task) params.set("task", f.task);
  if (cursor) params.set("cursor", cursor);
  return `/dead?${params}`;
}

const slim = (j) => ({ id: j.id, task: j.task, queue: j.queue, attempt: j.attempt, finished_at: j.finished_at, errors: j.errors.slice(-1) });

async function refreshDead() {
  const dead = S.dead;
  if (dead.table.size > MAX_REFRESH_ROWS) return;
  const page = await api("GET", deadUrl(dead.filters, Math.max(PAGE, dead.table.size), null));
  if (S.dead !== dead) return;
  dead.table.update(page.items.map(slim));
  dead.cursor = page.next_cursor;
  $("dead-more").hidden = !dead.cursor;
}

async function moreDead() {
  const dead = S.dead;
  const page = await attempt(() => api("GET", deadUrl(dead.filters, PAGE, dead.cursor)), "Load more");
  if (!page || S.dead !== dead) return;
  dead.table.append(page.items.map(slim));
  dead.cursor = page.next_cursor;
  $("dead-more").hidden = !dead.cursor;
}

async function deadBulk(event, path, verb) {
  if (verb === "purged" && !confirmed(event.target, "Click again to purge")) return;
  const f = S.dead.filters;
  const body = {};
  if (f.queue) body.queue = f.queue;
  if (f.task) body.task = f.task;
  const scope = f.queue || f.task ? ` (${[f.queue && `queue ${f.queue}`, f.task && `task ${f.task}`].filter(Boolean).join(", ")})` : "";
  try {
    const result = await api("POST", path, body);
    const n = verb === "retried" ? result.retried : result.purged;
    $("dead-message").textContent = n ? `${verb === "retried" ? "Retried" : "Purged"} ${n} dead job${n === 1 ? "" : "s"}${scope}.` : `No dead jobs${scope}.`;
  } catch (error) {
    $("dead-message").textContent = `${verb === "retried" ? "Retry all" : "Purge"} failed: ${error.message}`;
  }
  refresh();
}

// ---------------------------------------------------------------- workers
function workerCard(w, jobs) {
  return el("div", { class: "worker", "data-worker": w.id },
    el("h3", {}, link(`#/workers/${w.id}`, `${w.role} #${w.id}`), ` on ${w.host} (pid ${w.pid}) `, w.is_leader ? el("span", { class: "leader" }, "leader") : null,
      w.alive ? null : el("span", { class: "state dead" }, "not alive")),
    el("p", { class: "muted" }, `queues ${w.queues.join(", ") || "–"} · concurrency ${w.concurrency} · heartbeat ${fmtDur(w.heartbeat_age_seconds)} ago · up since ${fmtTime(w.started_at)}${w.version ? ` · ${w.version}` : ""}`),
    jobs.length
      ? el("ul", { class: "running-jobs" }, jobs.map((j) => el("li", {}, link(`#/jobs/${j.id}`, `#${j.id}`), ` ${j.task} (${j.queue}) running for ${fmtDur(j.elapsed_seconds)}`)))
      : el("p", { class: "muted" }, "idle"));
}

async function refreshWorkers() {
  const [workers, running] = await Promise.all([api("GET", "/workers"), api("GET", "/dashboard/api/jobs?view=running&limit=1000")]);
  const byWorker = new Map();
  for (const j of running.items) byWorker.set(j.worker_id, [...(byWorker.get(j.worker_id) || []), j]);
  $("workers-list").replaceChildren(...(workers.items.length ? workers.items.map((w) => workerCard(w, byWorker.get(w.id) || [])) : [el("p", { class: "muted" }, "No worker is registered.")]));
}

async function refreshWorker() {
  const id = Number(S.route.id);
  const [workers, running] = await Promise.all([api("GET", "/workers"), api("GET", `/dashboard/api/jobs?view=running&limit=1000&worker=${id}`)]);
  const w = workers.items.find((x) => x.id === id);
  $("worker-detail").replaceChildren(w ? workerCard(w, running.items) : el("p", { class: "muted" }, `Worker ${id} is not registered (stopped, or removed by the leader).`));
}

// ---------------------------------------------------------------- new job
async function createJob(event) {
  event.preventDefault();
  $("job-error").textContent = "";
  $("job-created").textContent = "";
  try {
    const body = { task: $("j-task").value.trim(), args: readArgs("j-args") };
    if ($("j-queue").value.trim()) body.queue = $("j-queue").value.trim(); // else the task's declared queue
    if ($("j-delay").value) body.delay_seconds = Number($("j-delay").value);
    if ($("j-key").value.trim()) body.run_key = $("j-key").value.trim();
    const job = await api("POST", "/jobs", body);
    $("job-created").replaceChildren("Enqueued job ", link(`#/jobs/${job.id}`, String(job.id)), ` (${job.state}).`);
    $("job-created").dataset.jobId = job.id;
  } catch (error) {
    $("job-error").textContent = error.message;
  }
}

// ---------------------------------------------------------------- start
async function start() {
  try {
    await whoami();
  } catch (error) {
    if (error.status !== 401) showLogin(error.message);
    return;
  }
  route();
}

document.addEventListener("DOMContentLoaded", () => {
  applyTheme(localStorage.getItem(THEME_KEY));
  $("theme").addEventListener("click", toggleTheme);
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => signOut(""));
  $("job-filters").addEventListener("submit", applyJobFilters);
  $("jobs-more").addEventListener("click", moreJobs);
  $("bulk-bar")?.addEventListener("click", bulkAction);
  $("schedule-form")?.addEventListener("submit", createSchedule);
  $("s-preview")?.addEventListener("click", previewSchedule);
  $("job-form").addEventListener("submit", createJob);
  $("dead-filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const params = new URLSearchParams();
    if ($("d-queue").value.trim()) params.set("queue", $("d-queue").value.trim());
    if ($("d-task").value.trim()) params.set("task", $("d-task").value.trim());
    location.hash = `#/dead${params.toString() ? `?${params}` : ""}`;
  });
  $("dead-more").addEventListener("click", moreDead);
  $("dead-retry-all")?.addEventListener("click", (ev) => deadBulk(ev, "/dead/retry", "retried"));
  $("dead-purge")?.addEventListener("click", (ev) => deadBulk(ev, "/dead/purge", "purged"));
  $("chart-filters").addEventListener("change", () => { S.lastStats = 0; refresh(); });
  $("chart-filters").addEventListener("submit", (ev) => { ev.preventDefault(); S.lastStats = 0; refresh(); });
  window.addEventListener("hashchange", () => { if (S.scope) route(); }); // before /whoami answers, sign-in routes
  if (localStorage.getItem(TOKEN_KEY)) start(); else showLogin("");
  setInterval(() => { if (!document.hidden) refresh(); }, 2000);
});
