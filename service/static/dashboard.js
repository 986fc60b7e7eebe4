// prompt-tagger dashboard: plain JS + inline SVG, no external resources.
"use strict";
const KEY = new URLSearchParams(location.hash.slice(1)).get("key");
const COLORS = {
  programming: "#4e79a7", roleplay: "#e15759", translation: "#76b7b2", writing: "#f28e2b", general_qa: "#59a14f",
  education: "#edc948", science: "#b07aa1", technology: "#9c755f", health: "#ff9da7", finance: "#2f6b3a",
  legal: "#7f7f7f", marketing: "#d37295", other: "#bab0ac",
};
const LANG_COLOR = "#4e79a7";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const pct = (x) => (x === 0 ? "0" : (100 * x).toFixed(x >= 0.1 ? 0 : 1)) + "%";
const fmt = (n) => n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(Math.round(n));

async function api(path) {
  const r = await fetch(path, { headers: KEY ? { Authorization: "Bearer " + KEY } : {} });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}${r.status === 401 ? " (open the page as /#key=YOUR_KEY)" : ""}`);
  return r.json();
}

function el(tag, attrs = {}, parent = null, text = null) {
  const e = tag === "svg" || ["path", "g", "line", "text", "rect", "title"].includes(tag)
    ? document.createElementNS(SVG, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== null) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}

function colorOf(cat, i) { return COLORS[cat] || `hsl(${(i * 47) % 360} 55% 55%)`; }

function drawArea(stats) {
  const box = $("area"), legend = $("area-legend");
  box.replaceChildren(); legend.replaceChildren();
  const buckets = stats.buckets.filter((b) => b.total > 0);
  if (!buckets.length) { el("div", { class: "empty" }, box, "no confident requests yet"); return 0; }
  const totals = {};
  for (const b of buckets) for (const g of b.groups) totals[g.category] = (totals[g.category] || 0) + g.share;
  const cats = Object.keys(totals).sort((a, b) => totals[b] - totals[a]);
  const W = 860, H = 330, L = 40, R = 12, T = 10, B = 48;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": "weekly category share" }, box);
  const xs = buckets.length === 1 ? [L, W - R] : buckets.map((_, i) => L + (i * (W - L - R)) / (buckets.length - 1));
  const pts = buckets.length === 1 ? [buckets[0], buckets[0]] : buckets;
  const y = (v) => T + (1 - v) * (H - T - B);
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e5e7eb" }, svg);
    el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, svg, pct(v));
  }
  const base = pts.map(() => 0);
  cats.forEach((cat, ci) => {
    const share = pts.map((b) => (b.groups.find((g) => g.category === cat) || { share: 0 }).share);
    const top = base.map((v, i) => v + share[i]);
    const d = "M" + xs.map((x, i) => `${x.toFixed(1)},${y(top[i]).toFixed(1)}`).join("L")
      + "L" + xs.map((x, i) => `${x.toFixed(1)},${y(base[i]).toFixed(1)}`).reverse().join("L") + "Z";
    const p = el("path", { d, fill: colorOf(cat, ci), class: "area", "data-category": cat, stroke: "#fff", "stroke-width": 0.6 }, svg);
    el("title", {}, p, `${cat}: ${share.map(pct).join(" → ")}`);
    top.forEach((v, i) => { base[i] = v; });
    el("span", { style: `--c:${colorOf(cat, ci)}` }, legend, `${cat} ${pct(totals[cat] / buckets.length)}`);
  });
  const step = Math.max(1, Math.ceil(buckets.length / 10));
  buckets.forEach((b, i) => {
    if (i % step) return;
    const x = buckets.length === 1 ? (L + W - R) / 2 : xs[i];
    const anchor = buckets.length === 1 ? "middle" : i === 0 ? "start" : i >= buckets.length - step ? "end" : "middle";
    el("text", { x, y: H - B + 16, "text-anchor": anchor }, svg, b.bucket);
    const un = b.unclassified / Math.max(1, b.unclassified + b.total);
    el("text", { x, y: H - B + 32, "text-anchor": anchor, fill: "#9ca3af" }, svg, `unclass. ${pct(un)}`);
  });
  return cats.length;
}

function drawLangs(stats) {
  const box = $("langs");
  box.replaceChildren();
  const b = stats.buckets[0];
  if (!b || !b.groups.length) { el("div", { class: "empty" }, box, "no data yet"); return 0; }
  const rows = b.groups.slice(0, 12);
  const rest = b.groups.slice(12).reduce((s, g) => s + g.share, 0);
  if (rest > 0) rows.push({ language: "others", share: rest, value: 0 });
  const W = 380, RH = 24, H = rows.length * RH + 6, L = 54;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": "language share" }, box);
  const max = Math.max(...rows.map((r) => r.share));
  rows.forEach((r, i) => {
    const w = ((W - L - 52) * r.share) / max;
    el("text", { x: L - 8, y: i * RH + 17, "text-anchor": "end" }, svg, r.language);
    const bar = el("rect", { x: L, y: i * RH + 5, width: Math.max(1, w).toFixed(1), height: RH - 8, rx: 3,
      fill: LANG_COLOR, "fill-opacity": 0.35 + 0.65 * (r.share / max), class: "bar" }, svg);
    el("title", {}, bar, `${r.language}: ${pct(r.share)}`);
    el("text", { x: L + w + 6, y: i * RH + 17 }, svg, pct(r.share));
  });
  return rows.length;
}

function drawMatrix(stats) {
  const box = $("matrix");
  box.replaceChildren();
  const b = stats.buckets[0];
  if (!b || !b.groups.length) { el("div", { class: "empty" }, box, "no data yet"); return 0; }
  const byModel = {};
  for (const g of b.groups) (byModel[g.model] ||= {})[g.category] = g.value;
  const models = Object.keys(byModel).map((m) => [m, Object.values(byModel[m]).reduce((a, c) => a + c, 0)])
    .sort((a, c) => c[1] - a[1]).slice(0, 20);
  const cats = Object.keys(COLORS).filter((c) => b.groups.some((g) => g.category === c));
  const table = el("table", {}, box);
  const hr = el("tr", {}, el("thead", {}, table));
  el("th", {}, hr, "model");
  el("th", {}, hr, "requests");
  for (const c of cats) el("th", {}, hr, c);
  const tbody = el("tbody", {}, table);
  for (const [m, total] of models) {
    const tr = el("tr", {}, tbody);
    el("td", {}, tr, m);
    el("td", {}, tr, fmt(total));
    for (const c of cats) {
      const s = (byModel[m][c] || 0) / total;
      el("td", { style: `background: color-mix(in srgb, ${COLORS[c]} ${Math.round(s * 85)}%, white)`, title: `${m} · ${c}` }, tr, s ? pct(s) : "·");
    }
  }
  return models.length;
}

let last = null;
async function refreshCounters() {
  const v = await api("/v1/live");
  $("model").textContent = `model ${v.model_version} · up ${Math.round(v.uptime_s)} s`;
  const rate = last ? Math.max(0, (v.classified - last.classified) / Math.max(0.1, v.uptime_s - last.uptime_s)) : 0;
  last = v;
  const items = [
    ["classified", fmt(v.classified)], ["per second", rate.toFixed(1)],
    ["unclassified", v.classified ? pct(v.unclassified / v.classified) : "–"], ["languages", v.languages],
    ["queue depth", v.queue_depth], ["rows stored", fmt(v.rows_written)],
  ];
  $("counters").replaceChildren(...items.map(([k, val]) => {
    const d = el("div", { class: "counter" });
    el("div", { class: "v" }, d, String(val));
    el("div", { class: "k" }, d, k);
    return d;
  }));
}

async function refreshCharts() {
  const w = $("weight").value;
  const [area, langs, matrix] = await Promise.all([
    api(`/v1/stats?bucket=week&group_by=category&weight=${w}`),
    api(`/v1/stats?bucket=all&group_by=language&weight=${w}`),
    api(`/v1/stats?bucket=all&group_by=model,category&weight=${w}`),
  ]);
  const n = [drawArea(area), drawLangs(langs), drawMatrix(matrix)];
  document.body.dataset.rendered = n.join(",");
}

async function tick(fn) {
  try { await fn(); $("error").textContent = ""; } catch (e) { $("error").textContent = String(e.message || e); }
}

$("weight").addEventListener("change", () => tick(refreshCharts));
tick(refreshCounters);
tick(refreshCharts);
setInterval(() => tick(refreshCounters), 2000);
setInterval(() => tick(refreshCharts), 15000);
