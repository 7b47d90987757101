// pgsched dashboard: reads the JSON API with a bearer token kept in sessionStorage.
// Every value is rendered with textContent (never innerHTML), so user data cannot run as code.
"use strict";

const TOKEN_KEY = "pgsched.token";
const state = { view: "overview", cursor: null, selectedJob: null, selectedSchedule: null, samples: [], lastTotal: null };

// ---------------------------------------------------------------- DOM helpers
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const $ = (id) => document.getElementById(id);
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
const json = (value) => JSON.stringify(value, null, 2);
const stateBadge = (s) => el("span", { class: `state ${s}` }, s);

function table(columns, rows, onClick) {
  const head = el("tr", {}, columns.map((c) => el("th", {}, c.label)));
  const body = rows.map((row) =>
    el("tr", onClick ? { class: "clickable", onclick: () => onClick(row) } : {},
      columns.map((c) => el("td", {}, c.render ? c.render(row) : row[c.key] ?? "–"))));
  if (!rows.length) body.push(el("tr", {}, el("td", { colspan: columns.length, class: "muted" }, "nothing here")));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, body));
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
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(API_ROOT + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.status === 401) logout("Your token was refused; sign in again.");
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// ---------------------------------------------------------------- login
function showLogin(message) {
  $("login").hidden = false;
  $("nav").hidden = true;
  $("logout").hidden = true;
  document.querySelectorAll(".view").forEach((v) => (v.hidden = true));
  $("login-error").textContent = message || "";
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(message);
}

async function login(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  try {
    await api("GET", "/queues");
    $("token").value = "";
    start();
  } catch (error) {
    logout(error.status === 401 ? "That token was not accepted." : error.message);
  }
}

// ---------------------------------------------------------------- views
function show(view) {
  state.view = view;
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  document.querySelectorAll(".view").forEach((v) => (v.hidden = v.id !== `view-${view}`));
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === view));
  refresh();
}

async function refresh() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return;
  try {
    await ({ overview: refreshOverview, jobs: refreshJobs, schedules: refreshSchedules, dead: refreshDead, new: async () => {} })[state.view]();
    $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("status").textContent = `error: ${error.message}`;
  }
}

async function refreshOverview() {
  const [queues, workers, leader] = await Promise.all([api("GET", "/queues"), api("GET", "/workers"), api("GET", "/leader")]);
  const total = queues.items.reduce((n, q) => n + q.succeeded + q.dead + q.cancelled, 0);
  const now = Date.now();
  if (state.lastTotal !== null) {
    const rate = Math.max(0, total - state.lastTotal.total) / ((now - state.lastTotal.at) / 1000);
    state.samples.push(rate);
    state.samples = state.samples.slice(-60);
  }
  state.lastTotal = { total, at: now };
  $("chart").replaceChildren(sparkline(state.samples));
  $("queues").replaceChildren(table(
    [
      { label: "queue", key: "queue" }, { label: "due", key: "due" }, { label: "scheduled", key: "scheduled" },
      { label: "running", key: "running" }, { label: "succeeded", key: "succeeded" }, { label: "dead", key: "dead" },
      { label: "cancelled", key: "cancelled" },
      { label: "oldest waiting", render: (q) => (q.oldest_due_seconds === null ? "–" : `${q.oldest_due_seconds.toFixed(1)} s`) },
      { label: "limits", render: queueLimits },
      { label: "", render: pauseButton },
    ],
    queues.items));
  const lead = leader.leader;
  $("leader").replaceChildren(lead
    ? el("p", {}, "Leader: ", el("span", { class: "leader" }, `${lead.role} #${lead.id} on ${lead.host} (pid ${lead.pid})`))
    : el("p", { class: "error" }, "No leader: cron and crash recovery are paused until a scheduler or worker runs."));
  $("workers").replaceChildren(table(
    [
      { label: "id", key: "id" }, { label: "role", key: "role" }, { label: "host", render: (w) => `${w.host}:${w.pid}` },
      { label: "queues", render: (w) => w.queues.join(", ") || "–" },
      { label: "heartbeat", render: (w) => `${w.heartbeat_age_seconds.toFixed(1)} s ago` },
      { label: "alive", render: (w) => (w.alive ? "yes" : "no") },
    ],
    workers.items));
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
  return el("button", { class: "secondary", "data-queue": q.queue, onclick: async (ev) => {
    ev.stopPropagation();
    try {
      await api("PATCH", `/queues/${encodeURIComponent(q.queue)}`, { paused: !q.paused });
      await refresh();
    } catch (error) {
      $("status").textContent = `error: ${error.message}`;
    }
  } }, q.paused ? "resume" : "pause");
}

function sparkline(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 600 120");
  svg.setAttribute("preserveAspectRatio", "none");
  const max = Math.max(1, ...values);
  const points = values.map((v, i) => `${(i / 59) * 600},${115 - (v / max) * 105}`).join(" ");
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points);
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#2f6fde");
  line.setAttribute("stroke-width", "2");
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", "8");
  label.setAttribute("y", "16");
  label.setAttribute("font-size", "12");
  label.setAttribute("fill", "#6b7383");
  label.textContent = values.length ? `now ${values[values.length - 1].toFixed(1)}/s, peak ${max.toFixed(1)}/s` : "collecting…";
  svg.append(line, label);
  return svg;
}

function jobQuery(cursor) {
  const params = new URLSearchParams({ limit: "50" });
  for (const [key, id] of [["state", "f-state"], ["queue", "f-queue"], ["task", "f-task"]]) {
    if ($(id).value.trim()) params.set(key, $(id).value.trim());
  }
  if (cursor) params.set("cursor", cursor);
  return `/jobs?${params}`;
}

const JOB_COLUMNS = [
  { label: "id", key: "id" }, { label: "task", key: "task" }, { label: "queue", key: "queue" },
  { label: "state", render: (j) => stateBadge(j.state) }, { label: "attempt", render: (j) => `${j.attempt}/${j.max_attempts}` },
  { label: "run at", render: (j) => fmtTime(j.run_at) }, { label: "args", render: (j) => el("code", {}, JSON.stringify(j.args)) },
];

async function refreshJobs() {
  const page = await api("GET", jobQuery(null));
  state.cursor = page.next_cursor;
  $("jobs-table").replaceChildren(table(JOB_COLUMNS, page.items, (job) => selectJob(job.id)));
  $("jobs-more").hidden = !state.cursor;
  if (state.selectedJob) await renderJob(state.selectedJob);
}

async function moreJobs() {
  const page = await api("GET", jobQuery(state.cursor));
  state.cursor = page.next_cursor;
  $("jobs-table").querySelector("tbody").append(...table(JOB_COLUMNS, page.items, (job) => selectJob(job.id)).querySelectorAll("tbody tr"));
  $("jobs-more").hidden = !state.cursor;
}

async function selectJob(id) {
  state.selectedJob = id;
  await renderJob(id);
}

async function renderJob(id) {
  let job;
  try {
    job = await api("GET", `/jobs/${id}`);
  } catch (error) {
    state.selectedJob = null;
    $("job-detail").hidden = true;
    return;
  }
  const act = (label, method, path, cls) =>
    el("button", { class: cls || "secondary", onclick: async () => {
      try { await api(method, path); } catch (error) { alert(error.message); }
      refresh();
    } }, label);
  const detail = $("job-detail");
  detail.hidden = false;
  detail.replaceChildren(
    el("h2", {}, `Job ${job.id} · ${job.task} `, stateBadge(job.state)),
    el("div", { class: "actions row" },
      ["queued", "running"].includes(job.state) ? act("Cancel", "POST", `/jobs/${job.id}/cancel`) : null,
      job.state !== "running" ? act("Retry", "POST", `/jobs/${job.id}/retry`) : null,
      ["succeeded", "dead", "cancelled"].includes(job.state) ? act("Delete", "DELETE", `/jobs/${job.id}`, "danger") : null),
    el("div", { class: "kv" },
      ["queue", job.queue, "priority", job.priority, "attempt", `${job.attempt} of ${job.max_attempts}`,
       "worker", job.worker_id ?? "–", "run at", fmtTime(job.run_at), "started", fmtTime(job.started_at),
       "finished", fmtTime(job.finished_at), "created", fmtTime(job.created_at), "run key", job.run_key ?? "–",
       "schedule", job.schedule_name ?? "–"].map((v) => el("div", {}, v))),
    el("h2", {}, "Args"), el("pre", { id: "job-args" }, json(job.args)),
    el("h2", {}, "Result"), el("pre", {}, json(job.result)),
    el("h2", {}, `Attempts with errors (${job.errors.length})`),
    ...job.errors.map((e) => el("div", {},
      el("p", {}, el("strong", {}, `attempt ${e.attempt}`), ` at ${fmtTime(e.at)}: `, e.error),
      e.traceback ? el("pre", {}, e.traceback) : null)));
}

async function refreshSchedules() {
  const page = await api("GET", "/schedules?limit=200");
  const action = (label, fn) => el("button", { class: "secondary", onclick: async (ev) => {
    ev.stopPropagation();
    try { await fn(); } catch (error) { alert(error.message); }
    refresh();
  } }, label);
  $("schedules-table").replaceChildren(table(
    [
      { label: "name", key: "name" }, { label: "cron", render: (s) => el("code", {}, s.cron) }, { label: "zone", key: "timezone" },
      { label: "task", key: "task" }, { label: "enabled", render: (s) => (s.enabled ? "yes" : "paused") },
      { label: "next fire", render: (s) => fmtTime(s.next_fire_at) }, { label: "last fired", render: (s) => fmtTime(s.last_fired_at) },
      { label: "error", render: (s) => s.last_error || "" },
      { label: "", render: (s) => el("span", { class: "actions" },
        s.enabled ? action("Pause", () => api("PATCH", `/schedules/${encodeURIComponent(s.name)}`, { enabled: false }))
                  : action("Resume", () => api("PATCH", `/schedules/${encodeURIComponent(s.name)}`, { enabled: true })),
        action("Trigger now", () => api("POST", `/schedules/${encodeURIComponent(s.name)}/trigger`))) },
    ],
    page.items, (s) => selectSchedule(s)));
  if (state.selectedSchedule) await renderSchedule(state.selectedSchedule);
}

async function selectSchedule(schedule) {
  state.selectedSchedule = schedule;
  await renderSchedule(schedule);
}

async function renderSchedule(schedule) {
  const name = encodeURIComponent(schedule.name);
  const [runs, preview] = await Promise.all([
    api("GET", `/schedules/${name}/runs?limit=10`),
    api("POST", "/schedules/preview", { cron: schedule.cron, timezone: schedule.timezone, count: 5 }),
  ]);
  const detail = $("schedule-detail");
  detail.hidden = false;
  detail.replaceChildren(
    el("h2", {}, `Schedule ${schedule.name}`),
    el("p", {}, "Next instants: ", preview.fires.map((f) => fmtTime(f)).join(" · ")),
    el("h2", {}, "Last runs"),
    table([{ label: "job", key: "id" }, { label: "state", render: (j) => stateBadge(j.state) },
           { label: "instant", render: (j) => fmtTime(j.run_at) }, { label: "finished", render: (j) => fmtTime(j.finished_at) }],
          runs.items, (job) => { show("jobs"); selectJob(job.id); }));
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
    const result = await api("POST", "/schedules/preview", { cron: $("s-cron").value, timezone: $("s-tz").value || "UTC", count: 5 });
    $("schedule-preview").replaceChildren(...result.fires.map((f) => el("li", {}, `${f}  (${fmtTime(f)})`)));
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

async function refreshDead() {
  const page = await api("GET", "/dead?limit=100");
  const retry = (job) => el("button", { class: "secondary", onclick: async (ev) => {
    ev.stopPropagation();
    try { await api("POST", `/jobs/${job.id}/retry`); } catch (error) { alert(error.message); }
    refresh();
  } }, "Retry");
  $("dead-table").replaceChildren(table(
    [
      { label: "id", key: "id" }, { label: "task", key: "task" }, { label: "queue", key: "queue" },
      { label: "attempts", key: "attempt" }, { label: "died", render: (j) => fmtTime(j.finished_at) },
      { label: "last error", render: (j) => (j.errors.length ? j.errors[j.errors.length - 1].error : "–") },
      { label: "", render: (j) => el("span", { class: "actions" }, retry(j)) },
    ],
    page.items, (job) => { show("jobs"); selectJob(job.id); }));
}

async function deadBulk(path, confirmText) {
  if (confirmText && !confirm(confirmText)) return;
  try {
    const result = await api("POST", path, {});
    $("dead-message").textContent = JSON.stringify(result);
  } catch (error) {
    $("dead-message").textContent = error.message;
  }
  refresh();
}

async function createJob(event) {
  event.preventDefault();
  $("job-error").textContent = "";
  $("job-created").textContent = "";
  try {
    const body = { task: $("j-task").value.trim(), queue: $("j-queue").value.trim() || "default", args: readArgs("j-args") };
    if ($("j-delay").value) body.delay_seconds = Number($("j-delay").value);
    if ($("j-key").value.trim()) body.run_key = $("j-key").value.trim();
    const job = await api("POST", "/jobs", body);
    $("job-created").textContent = `Enqueued job ${job.id} (${job.state}).`;
    $("job-created").dataset.jobId = job.id;
  } catch (error) {
    $("job-error").textContent = error.message;
  }
}

// ---------------------------------------------------------------- start
function start() {
  const view = (location.hash || "#overview").slice(1);
  show(["overview", "jobs", "schedules", "dead", "new"].includes(view) ? view : "overview");
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => logout(""));
  $("job-filters").addEventListener("submit", (e) => { e.preventDefault(); state.selectedJob = null; $("job-detail").hidden = true; refresh(); });
  $("jobs-more").addEventListener("click", moreJobs);
  $("schedule-form").addEventListener("submit", createSchedule);
  $("s-preview").addEventListener("click", previewSchedule);
  $("job-form").addEventListener("submit", createJob);
  $("dead-retry-all").addEventListener("click", () => deadBulk("/dead/retry", "Retry every dead job?"));
  $("dead-purge").addEventListener("click", () => deadBulk("/dead/purge", "Delete every dead job for good?"));
  window.addEventListener("hashchange", start);
  if (sessionStorage.getItem(TOKEN_KEY)) start(); else showLogin("");
  setInterval(refresh, 2000);
});
