// pgsched dashboard: the workflow pages (#/workflows, #/workflows/ID), over GET /workflows and
// GET /workflows/{id}. Uses the helpers of dashboard.js (el, api, KeyedTable ...), called only after
// both scripts loaded. Steps are listed in creation order, which is a topological order: each step
// comes after the steps it waits for; "level" is its depth in the graph (0: no dependency).
"use strict";

let workflowTable = null;
let workflowSig = "";

const progress = (w) => `${w.succeeded + w.dead + w.cancelled}/${w.steps}`;

async function refreshWorkflows() {
  const page = await api("GET", `/workflows?limit=${PAGE}`);
  if (!workflowTable || !$("workflows-table").contains(workflowTable.table)) {
    workflowTable = new KeyedTable($("workflows-table"), [
      { label: "id", key: "id", sort: (w) => w.id },
      { label: "name", render: (w) => w.name || "–" },
      { label: "kind", key: "kind" },
      { label: "state", render: (w) => stateBadge(w.state), sort: (w) => w.state },
      { label: "ended", render: progress },
      { label: "waiting", key: "waiting", cls: "opt" }, { label: "running", key: "running", cls: "opt" },
      { label: "dead", key: "dead" }, { label: "created", render: (w) => fmtTime(w.created_at), cls: "opt" },
    ], { onOpen: (w) => (location.hash = `#/workflows/${w.id}`), empty: "no workflows" });
  }
  workflowTable.update(page.items);
}

function levels(steps) {
  const depth = new Map();
  for (const s of steps) depth.set(s.id, s.depends_on.reduce((d, id) => Math.max(d, (depth.get(id) ?? -1) + 1), 0));
  return depth;
}

function stepRetry(step) {
  return el("button", { class: "secondary small", onclick: async (ev) => {
    ev.stopPropagation();
    if (await attempt(() => api("POST", `/jobs/${step.id}/retry`), `Retry step ${step.id}`) !== undefined) refresh();
  } }, "Retry");
}

function renderWorkflow(detail, w) {
  const depth = levels(w.items);
  const unfinished = w.waiting + w.queued + w.running;
  const cancel = el("button", { class: "danger", onclick: async (ev) => {
    if (!confirmed(ev.target, "Click again to cancel every unfinished step")) return;
    if (await attempt(() => api("POST", `/workflows/${w.id}/cancel`), "Cancel workflow") !== undefined) refresh();
  } }, "Cancel workflow");
  const rows = w.items.map((s) => el("tr", { "data-step": s.id },
    el("td", {}, String(depth.get(s.id))),
    el("td", {}, link(`#/jobs/${s.id}`, `#${s.id}`)),
    el("td", { style: null }, "\u2003".repeat(Math.min(depth.get(s.id), 12)), s.task),
    el("td", {}, stateBadge(s.state)),
    el("td", {}, s.depends_on.length ? s.depends_on.map((id) => `#${id}`).join(" ") : "–"),
    el("td", { class: "opt" }, `${s.attempt}/${s.max_attempts}`),
    el("td", { class: "opt" }, fmtTime(s.started_at)),
    el("td", {}, fmtDur(s.duration_seconds)),
    el("td", { class: "err" }, s.last_error || ""),
    el("td", {}, can("write") && ["dead", "cancelled"].includes(s.state) ? stepRetry(s) : null)));
  detail.replaceChildren(
    el("h2", {}, `Workflow ${w.id}${w.name ? ` · ${w.name}` : ""} (${w.kind}) `, stateBadge(w.state)),
    el("p", { class: "muted" }, `${progress(w)} steps ended: ${w.succeeded} succeeded, ${w.dead} dead, ${w.cancelled} cancelled; `
      + `${w.running} running, ${w.queued} queued, ${w.waiting} waiting · created ${fmtTime(w.created_at)}`
      + (w.finished_at ? ` · last step ended ${fmtTime(w.finished_at)}` : "")),
    can("write") && unfinished ? el("div", { class: "actions row" }, cancel) : null,
    el("div", { class: "table-wrap" }, el("table", { class: "keyed", id: "workflow-steps" },
      el("thead", {}, el("tr", {}, ["level", "step", "task", "state", "after", "attempt", "started", "ran for", "error", ""]
        .map((h, i) => el("th", { class: [5, 6].includes(i) ? "opt" : "" }, h)))),
      el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 10, class: "muted" }, "no steps left (retention)"))))));
}

async function refreshWorkflow() {
  const detail = $("workflow-detail");
  let w;
  try {
    w = await api("GET", `/workflows/${enc(S.route.id)}`);
  } catch (error) {
    detail.replaceChildren(el("h2", {}, `Workflow ${S.route.id}`), el("p", { class: "error" }, error.message));
    workflowSig = "";
    return;
  }
  const sig = JSON.stringify(w);
  if (sig === workflowSig) return;
  if (selectionInside(detail)) { $("status").textContent = "paused while you select text"; return; }
  workflowSig = sig;
  renderWorkflow(detail, w);
}
