// pgsched dashboard charts: hand-drawn SVG (no library, no CDN: the CSP allows 'self' only).
// renderCharts(container, stats) draws throughput, failures and latency from /dashboard/api/stats.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART_W = 600;
const CHART_H = 140;
const PAD = { left: 44, right: 8, top: 22, bottom: 20 };

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * step).find((m) => m >= value);
}

function fmtAxis(value, unit) {
  if (unit === "s") return value >= 1 ? `${value.toFixed(value < 10 ? 1 : 0)} s` : `${Math.round(value * 1000)} ms`;
  return value >= 1000 ? `${(value / 1000).toFixed(1)}k` : String(Math.round(value * 10) / 10);
}

function bucketLabel(at, bucket) {
  const d = new Date(at);
  const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return bucket >= 3600 ? `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${hm}` : hm;
}

// series: [{key, label, cls, kind: "bar" | "line"}]; bars stack, lines overlay.
function chart(title, stats, series, unit) {
  const start = new Date(stats.since).getTime();
  const step = stats.bucket_seconds * 1000;
  const slots = Math.floor((Date.now() - start) / step) + 1; // the bucket under way is the last one
  const byTime = new Map(stats.points.map((p) => [Math.round((new Date(p.at).getTime() - start) / step), p]));
  const value = (p, key) => (p && p[key] !== null && p[key] !== undefined ? Number(p[key]) : 0);
  const bars = series.filter((s) => s.kind === "bar");
  const lines = series.filter((s) => s.kind === "line");
  let peak = 0;
  for (const p of byTime.values()) {
    peak = Math.max(peak, bars.reduce((n, s) => n + value(p, s.key), 0), ...lines.map((s) => value(p, s.key)));
  }
  const top = niceMax(peak);
  const plotW = CHART_W - PAD.left - PAD.right;
  const plotH = CHART_H - PAD.top - PAD.bottom;
  const x = (i) => PAD.left + (i / slots) * plotW;
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${CHART_W} ${CHART_H}`, role: "img", "aria-label": title });
  svg.append(svgEl("text", { x: 4, y: 14, class: "chart-title" }, title));
  for (const frac of [0, 0.5, 1]) {
    svg.append(svgEl("line", { x1: PAD.left, x2: CHART_W - PAD.right, y1: y(top * frac), y2: y(top * frac), class: "grid" }));
    svg.append(svgEl("text", { x: PAD.left - 4, y: y(top * frac) + 4, class: "axis", "text-anchor": "end" }, fmtAxis(top * frac, unit)));
  }
  svg.append(svgEl("text", { x: PAD.left, y: CHART_H - 4, class: "axis" }, bucketLabel(start, stats.bucket_seconds)));
  svg.append(svgEl("text", { x: CHART_W - PAD.right, y: CHART_H - 4, class: "axis", "text-anchor": "end" }, "now"));
  const barW = Math.max(1, plotW / slots - 1);
  for (const [i, p] of byTime) {
    if (i < 0 || i >= slots) continue;
    let base = 0;
    for (const s of bars) {
      const v = value(p, s.key);
      if (!v) continue;
      const rect = svgEl("rect", { x: x(i), y: y(base + v), width: barW, height: Math.max(1, y(base) - y(base + v)), class: s.cls });
      rect.append(svgEl("title", {}, `${bucketLabel(p.at, stats.bucket_seconds)} ${s.label}: ${fmtAxis(v, unit)}`));
      svg.append(rect);
      base += v;
    }
  }
  for (const s of lines) {
    const pts = [...byTime].filter(([i]) => i >= 0 && i < slots).sort((a, b) => a[0] - b[0])
      .map(([i, p]) => `${x(i) + barW / 2},${y(value(p, s.key))}`);
    if (pts.length) svg.append(svgEl("polyline", { points: pts.join(" "), class: `line ${s.cls}` }));
  }
  const legend = document.createElement("div");
  legend.className = "legend";
  for (const s of series) {
    const item = document.createElement("span");
    item.className = `key ${s.cls}`;
    item.textContent = s.label;
    legend.append(item);
  }
  const box = document.createElement("figure");
  box.className = "chart-box";
  box.append(svg, legend);
  return box;
}

function renderCharts(container, stats) {
  const empty = !stats.points.length;
  const figures = [
    chart("Throughput (jobs finished per bucket)", stats, [
      { key: "succeeded", label: "succeeded", cls: "s-ok", kind: "bar" },
      { key: "dead", label: "dead", cls: "s-bad", kind: "bar" },
      { key: "cancelled", label: "cancelled", cls: "s-muted", kind: "bar" },
    ], "n"),
    chart("Failures (failed attempts, dead jobs)", stats, [
      { key: "failed", label: "failed attempts", cls: "s-warn", kind: "bar" },
      { key: "dead", label: "dead", cls: "s-bad", kind: "line" },
    ], "n"),
    chart("Latency (wait before start, run time)", stats, [
      { key: "wait_avg", label: "avg wait", cls: "s-warn", kind: "line" },
      { key: "run_avg", label: "avg run", cls: "s-ok", kind: "line" },
      { key: "run_max", label: "max run", cls: "s-accent", kind: "line" },
    ], "s"),
  ];
  const note = document.createElement("p");
  note.className = "muted";
  note.textContent = empty
    ? "No finished jobs in this window yet (the leader rolls history up every prune interval)."
    : `${stats.points.length} buckets of ${stats.bucket_seconds / 60} min since ${new Date(stats.since).toLocaleString()}`;
  container.replaceChildren(note, ...figures);
}

window.renderCharts = renderCharts;
