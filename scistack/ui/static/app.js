// The scistack web view: reads /api/* and draws; every user string goes in as text, never HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const STATUS_WORD = { done: "done", stale: "STALE", unknown: "?", failed: "FAILED", missing: "-" };
const STATES = ["current", "stale", "failed", "missing", "unknown"];
let generation = null;
let graphScale = null;  // the graph's zoom, kept across live reloads
let filters = { text: "", statuses: new Set(["done", "stale", "unknown", "failed", "missing"]) };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") node.addEventListener("click", v);
    else if (k === "class") node.className = v;
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) if (child !== "") node.append(child instanceof Node ? child : String(child));
  return node;
}

async function get(path) {
  const response = await fetch(path, { cache: "no-store" });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

let schemaKeys = [];

function addrText(addr) {  // schema keys in the project's order, then version keys
  const rank = k => (schemaKeys.includes(k) ? schemaKeys.indexOf(k) : schemaKeys.length);
  return Object.entries(addr || {}).sort((a, b) => rank(a[0]) - rank(b[0]))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
}

function valueLink(v, addr, version) {
  let h = `#/value?var=${encodeURIComponent(v)}&addr=${encodeURIComponent(JSON.stringify(addr))}`;
  if (version) h += `&version=${version}`;
  return h;
}

function params() {
  const hash = location.hash.slice(1) || "/";
  const [path, query] = hash.split("?");
  return { path, query: new URLSearchParams(query || "") };
}

// -- pipeline graph -----------------------------------------------------------------------
function countsText(counts) {
  const parts = [];
  for (const s of ["done", "stale", "failed", "missing", "unknown"]) {
    if (counts[s]) parts.push(`${counts[s]} ${STATUS_WORD[s] === "-" ? "missing" : STATUS_WORD[s] === "?" ? "unknown" : STATUS_WORD[s].toLowerCase()}`);
  }
  return parts.join(" · ") || "no values";
}

function legend() {
  return el("div", { class: "legend" }, STATES.map(s =>
    el("span", { class: `state-${s}` }, el("i", { class: "swatch" }), s === "current" ? "all current" : s === "stale" ? "some stale" : s)));
}

async function showGraph(main) {
  const g = await get("/api/graph");
  main.replaceChildren(el("h2", {}, "Pipeline"), legend());
  if (!g.nodes.length) { main.append(el("p", { class: "muted" }, "Nothing saved yet.")); return; }
  const pad = 12;
  const root = svg("svg", { class: "graph", width: g.width + 2 * pad, height: g.height + 2 * pad,
                            viewBox: `${-pad} ${-pad} ${g.width + 2 * pad} ${g.height + 2 * pad}` });
  const at = Object.fromEntries(g.nodes.map(n => [n.id, n]));
  for (const [a, b] of g.edges) {
    const s = at[a], t = at[b];
    if (!s || !t) continue;
    const x1 = s.x + g.node_w, y1 = s.y + g.node_h / 2, x2 = t.x, y2 = t.y + g.node_h / 2;
    const bend = Math.max(30, (x2 - x1) / 2);
    root.append(svg("path", { class: "edge", "data-from": a, "data-to": b,
      d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }));
  }
  const defs = svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8c959f" })));
  root.prepend(defs);
  for (const n of g.nodes) {
    const name = n.kind === "function" ? `ƒ ${n.name}` : n.name;
    const node = svg("g", { class: `node ${n.kind} state-${n.state}`, "data-id": n.id, "data-state": n.state,
                            "data-name": n.name, transform: `translate(${n.x},${n.y})` },
      svg("title", {}, `${n.kind} ${n.name}: ${n.state}\n${n.note || countsText(n.counts)}`),
      svg("rect", { width: g.node_w, height: g.node_h, rx: n.kind === "function" ? 14 : 3 }),
      n.kind === "function" ? "" : svg("rect", { class: "bar", width: 6, height: g.node_h - 4, x: 2, y: 2, rx: 2 }),
      svg("text", { x: 14, y: 18 }, n.kind === "raw" ? clip(name.slice(11), 22) : clip(name, 22)),
      svg("text", { class: "counts", x: 14, y: 34 }, clip(n.note || countsText(n.counts), 30)));
    if (n.kind !== "raw")  // raw files (a PathInput's) have no grid: a source, drawn only
      node.addEventListener("click", () => { location.hash = `#/node/${encodeURIComponent(n.id)}`; });
    root.append(node);
  }
  const box = el("div", { class: "graph-box" }, root);
  const natural = g.width + 2 * pad, room = () => box.clientWidth - 2;
  const zoom = scale => {
    graphScale = Math.min(2, Math.max(0.1, scale));
    root.setAttribute("width", Math.round(natural * graphScale));
    root.setAttribute("height", Math.round((g.height + 2 * pad) * graphScale));
  };
  const button = (label, title, fn) => el("button", { type: "button", title, onclick: fn }, label);
  main.append(el("div", { class: "zoom" }, button("−", "zoom out", () => zoom(graphScale / 1.25)),
    button("+", "zoom in", () => zoom(graphScale * 1.25)),
    button("fit", "the whole pipeline in the window", () => zoom(Math.min(1, room() / natural)))),
    box, el("p", { class: "muted" }, "Click a node for its grid of addresses."));
  // First view: the whole graph when the text stays readable (down to 60 %); else scroll.
  zoom(graphScale !== null ? graphScale : room() >= 0.6 * natural ? Math.min(1, room() / natural) : 1);
}

function clip(text, n) { return text.length > n ? text.slice(0, n - 1) + "…" : text; }

// -- a node's grid ------------------------------------------------------------------------
async function showGrid(main, node) {
  // the server filters and pages (a grid may have 300,000 addresses); the page draws one page
  let offset = 0, asked = 0, typing = null;
  const [kind, name] = [node.slice(0, node.indexOf(":")), node.slice(node.indexOf(":") + 1)];
  const title = el("h2", {}, kind === "fn" ? `ƒ ${name}` : name);
  const summary = el("p", { class: "muted" });
  const search = el("input", { type: "search", placeholder: "filter addresses (e.g. subject=1)", value: filters.text, id: "grid-filter" });
  const boxes = ["done", "stale", "unknown", "failed", "missing"].map(s => {
    const box = el("input", { type: "checkbox", "data-status": s });
    box.checked = filters.statuses.has(s);
    box.addEventListener("change", () => { box.checked ? filters.statuses.add(s) : filters.statuses.delete(s); offset = 0; load(); });
    return el("label", {}, box, ` ${STATUS_WORD[s]}`);
  });
  search.addEventListener("input", () => {
    filters.text = search.value;
    clearTimeout(typing);
    typing = setTimeout(() => { offset = 0; load(); }, 150);
  });
  const tableBox = el("div");
  main.replaceChildren(el("p", {}, el("a", { href: "#/" }, "← pipeline")), title, summary,
                       el("div", { class: "filters" }, search, boxes), tableBox);
  async function load() {
    const ask = ++asked;
    const query = new URLSearchParams({ node, offset: String(offset), statuses: [...filters.statuses].join(","),
                                        text: filters.text.trim() });
    const data = await get(`/api/grid?${query}`);
    if (ask === asked) draw(data);  // an answer to an older question is dropped
  }
  function draw(data) {
    summary.textContent = data.variables.map(v => `${v}: ${data.empty[v] || countsText(data.counts[v])}`).join("; ");
    const head = el("tr", {}, data.keys.map(k => el("th", {}, k)), data.variables.map(v => el("th", {}, v)));
    const body = data.addresses.map((addr, i) => el("tr", {},
      data.keys.map(k => el("td", {}, k in addr ? String(addr[k]) : "")),
      data.rows[i].map((c, j) => cell(c, data.variables[j]))));
    const shown = data.matching ? `${data.offset + 1}–${data.offset + body.length} of ${data.matching}` : "0 of 0";
    const all = data.matching === data.total ? "" : ` (${data.total} in all)`;
    const pager = el("p", { class: "muted", id: "grid-pages" }, `${shown} addresses${all} `);
    if (data.offset > 0) pager.append(el("button", { id: "grid-prev", onclick: () => { offset = Math.max(0, offset - data.limit); load(); } }, "← previous"));
    if (data.offset + body.length < data.matching) pager.append(el("button", { id: "grid-next", onclick: () => { offset += data.limit; load(); } }, "next →"));
    tableBox.replaceChildren(el("table", { class: "grid" }, el("thead", {}, head), el("tbody", {}, body)), pager);
  }
  await load();
}

function cell(c, v) {
  if (!c) return el("td", { class: "cell" });
  const td = el("td", { class: `cell s-${c.status}`, "data-status": c.status, "data-var": v,
                        "data-addr": JSON.stringify(c.addr), title: c.reason || c.status }, STATUS_WORD[c.status]);
  if (c.status !== "missing" && c.status !== "failed") {
    td.classList.add("link");
    td.addEventListener("click", () => { location.hash = valueLink(v, c.addr); });
  } else if (c.status === "failed") {  // the run that failed at this cell
    td.classList.add("link");
    td.addEventListener("click", () => { location.hash = c.run ? `#/run/${encodeURIComponent(c.run)}` : "#/runs"; });
  }
  return td;
}

// -- a value ------------------------------------------------------------------------------
async function showValue(main, q) {
  const v = q.get("var"), addr = JSON.parse(q.get("addr") || "{}"), version = q.get("version");
  let url = `/api/value?var=${encodeURIComponent(v)}&addr=${encodeURIComponent(JSON.stringify(addr))}`;
  if (version) url += `&version=${encodeURIComponent(version)}`;
  const d = await get(url);
  const back = el("p", {}, el("a", { href: `#/node/${encodeURIComponent("var:" + v)}` }, `← ${v} grid`));
  main.replaceChildren(back, el("h2", { id: "value-title" }, `${v}(${addrText(addr)})`));
  if (d.variants) {
    main.append(el("p", {}, `${d.variants.length} variants at this address:`),
      el("ul", {}, d.variants.map(r => el("li", {}, el("a", { href: valueLink(v, r.where) }, addrText(r.where))))));
    return;
  }
  const r = d.record;
  const status = d.why ? d.why.status : d.current ? "current" : "older version";
  main.append(
    el("table", { class: "kv" }, [
      ["status", el("span", { class: `badge state-${status === "current" || status === "raw" ? "current" : status}`, id: "value-status" }, status)],
      ["address", addrText(r.addr)], ["version keys", addrText(r.vkeys) || "none"],
      ["version", `${r.version}${d.current ? " (current)" : ""}`], ["oid", el("code", {}, r.oid)],
      ["kind", r.kind], ["summary", r.summary], ["saved", r.created_at],
    ].map(([k, x]) => el("tr", {}, el("th", {}, k), el("td", {}, x)))),
    el("h3", {}, "Preview"), previewOf(d.preview));
  if (d.why && d.why.status !== "raw" && d.why.reasons.length) {
    main.append(el("h3", {}, "Why"), el("div", { id: "why" },
      d.why.reasons.map(x => el("div", { class: "reason" }, el("b", {}, `${x.kind} ${x.name}: `), x.detail)),
      d.why.reasons.filter(x => x.diff).map(x => el("pre", { class: "diff" }, x.diff.split("\n").map(line =>
        el("span", { class: line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : "" }, line || " "))))));
  }
  if (d.provenance) main.append(el("h3", {}, "Provenance"), provenance(d.provenance));
  main.append(el("h3", {}, "Versions"), el("table", {}, el("tr", {}, ["version", "saved", "summary", "function", ""].map(h => el("th", {}, h))),
    d.versions.map(e => el("tr", {}, el("td", {}, el("a", { href: valueLink(v, r.where, e.version) }, e.version)),
      el("td", {}, e.created_at), el("td", {}, e.summary), el("td", {}, e.function || "raw"), el("td", {}, e.current ? "current" : "")))));
}

function provenance(p) {
  if (p.missing) return el("p", { class: "error" }, p.missing);
  const rows = [
    ["function", `${p.module}.${p.function}`],
    ["constants", Object.keys(p.constants).length ? el("code", {}, JSON.stringify(p.constants)) : "none"],
    ["inputs", el("ul", {}, p.inputs.map(i => el("li", {}, `${i.name}: `,
      i.var ? el("a", { href: valueLink(i.var, i.addr) }, `${i.var}(${addrText(i.addr)})`)
        : i.file ? el("span", {}, "file ", el("code", {}, i.file), ` (content ${i.oid.slice(0, 12)})`)
        : el("code", {}, i.oid.slice(0, 12)),
      i.members ? ` (aggregate of ${i.members})` : "", i.merge.length ? ` (merge of ${i.merge.join(" + ")})` : "")))],
    ["git commit", p.git_commit ? `${p.git_commit.slice(0, 12)}${p.git_dirty ? " (dirty)" : ""}` : "not in git"],
    ["environment", `${p.runtime || "Python ?"} on ${p.host || "?"}`],
    ["started", `${p.started} (${p.duration.toFixed(3)} s)`],
  ];
  const box = el("div", {}, el("table", { class: "kv" }, rows.map(([k, x]) => el("tr", {}, el("th", {}, k), el("td", {}, x)))));
  if (p.code) box.append(el("details", {}, el("summary", {}, "code"), el("pre", {}, p.code)));
  return box;
}

function previewOf(p) {
  if (p.kind === "line") return linePlot(p);
  if (p.kind === "image") return imagePlot(p);
  if (p.kind === "table") {
    return el("div", {}, el("table", { class: "preview-table" }, el("tr", {}, p.columns.map(c => el("th", {}, c))),
      p.rows.map(row => el("tr", {}, row.map(x => el("td", {}, x === null ? "" : String(x)))))),
      el("p", { class: "muted" }, `${p.shape[0]} rows × ${p.shape[1]} columns`));
  }
  return el("pre", { class: "preview-text" }, p.text);
}

function linePlot(p) {
  const W = 640, H = 220, L = 50, B = 20;
  const ys = p.y.filter(y => y !== null);
  let lo = Math.min(...ys), hi = Math.max(...ys);
  if (!ys.length) { lo = 0; hi = 1; }
  if (hi === lo) { hi += 0.5; lo -= 0.5; }
  const xmax = Math.max(1, p.n - 1);
  const px = x => L + (x / xmax) * (W - L - 8), py = y => 6 + (1 - (y - lo) / (hi - lo)) * (H - B - 12);
  const root = svg("svg", { class: "plot line", width: W, height: H, viewBox: `0 0 ${W} ${H}` });
  let segment = [];
  const flush = () => { if (segment.length) root.append(svg("polyline", { points: segment.join(" ") })); segment = []; };
  p.x.forEach((x, i) => { if (p.y[i] === null) flush(); else segment.push(`${px(x).toFixed(1)},${py(p.y[i]).toFixed(1)}`); });
  flush();
  root.append(svg("text", { x: 2, y: 12 }, fmt(hi)), svg("text", { x: 2, y: H - B }, fmt(lo)),
              svg("text", { x: L, y: H - 4 }, "0"), svg("text", { x: W - 40, y: H - 4 }, String(p.n - 1)));
  return root;
}

function imagePlot(p) {
  const rows = p.z.length, cols = rows ? p.z[0].length : 0;
  const canvas = el("canvas", { class: "plot image", width: cols, height: rows });
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(cols, rows);
  const lo = p.min ?? 0, span = (p.max ?? 1) - lo || 1;
  p.z.forEach((row, i) => row.forEach((z, j) => {
    const k = 4 * (i * cols + j), t = z === null ? null : (z - lo) / span;
    const [r, g, b] = t === null ? [220, 220, 220] : viridis(t);
    img.data.set([r, g, b, 255], k);
  }));
  ctx.putImageData(img, 0, 0);
  canvas.style.width = "480px";  // stretched to a readable box, like imshow's aspect="auto"
  canvas.style.height = `${Math.round(Math.min(320, Math.max(120, (480 * rows) / Math.max(cols, 1))))}px`;
  return el("div", {}, canvas, el("p", { class: "muted" }, `${p.shape[0]} × ${p.shape[1]}, ${fmt(p.min)} … ${fmt(p.max)}`));
}

function viridis(t) {  // a few stops of a perceptually even colour map, linearly blended
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = Math.min(0.9999, Math.max(0, t)) * (stops.length - 1), i = Math.floor(x), f = x - i;
  return stops[i].map((c, k) => Math.round(c + f * (stops[i + 1][k] - c)));
}

function fmt(x) { return x === null || x === undefined ? "?" : Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(2) : String(+x.toFixed(4)); }

// -- runs ---------------------------------------------------------------------------------
async function showRuns(main) {
  const data = await get("/api/runs");
  main.replaceChildren(el("h2", {}, "Runs"));
  if (!data.runs.length) { main.append(el("p", { class: "muted" }, "No for_each runs yet.")); return; }
  main.append(el("table", { class: "runs" }, el("tr", {}, ["started", "function", "ran", "cached", "failed", "missing", "duration", ""].map(h => el("th", {}, h))),
    data.runs.map(r => el("tr", { class: r.counts.failed ? "failed" : "" }, el("td", {}, when(r.t)), el("td", {}, r.function),
      ["ran", "cached", "failed", "missing"].map(s => el("td", {}, r.counts[s] || 0)), el("td", {}, `${r.duration.toFixed(2)} s`),
      el("td", {}, el("a", { href: `#/run/${encodeURIComponent(r.run_id)}` }, "details"))))));
}

function when(t) { return t ? `${t.slice(0, 19).replace("T", " ")} UTC` : "?"; }

function countList(counts) {
  const order = ["ran", "cached", "failed", "missing", "skipped", "would_run"];
  return Object.entries(counts).filter(([, n]) => n).sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]))
    .map(([k, n]) => `${n} ${k.replace("_", " ")}`).join(", ") || "nothing";
}

async function showRun(main, id) {
  // the first failures with their tracebacks, then the combinations a page at a time (failures first)
  const ask = offset => get(`/api/run?id=${encodeURIComponent(id)}&offset=${offset}`);
  const data = await ask(0);
  const r = data.run;
  main.replaceChildren(el("p", {}, el("a", { href: "#/runs" }, "← runs")), el("h2", {}, `for_each(${r.function})`),
    el("p", {}, `${when(r.t)}: ${countList(r.counts)} in ${r.duration.toFixed(2)} s; outputs ${r.outputs.join(", ") || "?"}`));
  for (const f of data.failures) {
    main.append(el("div", { class: "failure" }, el("h3", {}, addrText(f.combo)), el("p", { class: "error" }, f.error || ""),
      el("pre", { class: "traceback" }, f.traceback || "(no traceback recorded)")));
  }
  if (data.failed > data.failures.length) {
    main.append(el("p", { class: "muted", id: "more-failures" },
      `${data.failed - data.failures.length} more failures: their errors are at the top of the table below`));
  }
  const tableBox = el("div", {});
  main.append(el("h3", {}, "Combinations"), tableBox);
  const draw = page => {
    const rows = page.items.map(i => el("tr", {}, el("td", {}, addrText(i.combo)), el("td", {}, i.status),
      el("td", {}, `${i.duration.toFixed(3)} s`), el("td", { class: "error" }, i.error || "")));
    const pager = el("p", { class: "muted", id: "run-pages" },
      page.total ? `${page.offset + 1}–${page.offset + rows.length} of ${page.total} combinations ` : "no combinations recorded ");
    const go = offset => ask(offset).then(draw);
    if (page.offset > 0) pager.append(el("button", { id: "run-prev", onclick: () => go(Math.max(0, page.offset - page.limit)) }, "← previous"));
    if (page.offset + rows.length < page.total) pager.append(el("button", { id: "run-next", onclick: () => go(page.offset + page.limit) }, "next →"));
    tableBox.replaceChildren(el("table", { class: "run-items" },
      el("tr", {}, ["address", "status", "duration", "error"].map(h => el("th", {}, h))), rows), pager);
  };
  draw(data);
}

// -- routing and live updates -------------------------------------------------------------
async function render(event) {
  const main = document.getElementById("main");
  if (event) main.replaceChildren(el("p", { class: "muted" }, "computing…"));  // a navigation
  const { path, query } = params();
  try {
    if (path.startsWith("/node/")) await showGrid(main, decodeURIComponent(path.slice(6)));
    else if (path === "/value") await showValue(main, query);
    else if (path === "/runs") await showRuns(main);
    else if (path.startsWith("/run/")) await showRun(main, decodeURIComponent(path.slice(5)));
    else await showGraph(main);
    document.body.dataset.generation = String(generation);
  } catch (err) {
    main.replaceChildren(el("p", { class: "error" }, String(err.message || err)));
  }
}

async function poll() {
  try {
    const { generation: now } = await get("/api/generation");
    if (generation !== null && now !== generation) {
      generation = now;
      const focused = document.activeElement && document.activeElement.id;
      await render();
      if (focused) document.getElementById(focused)?.focus();
    }
    generation = now;
    document.getElementById("live").textContent = `live · checked ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    document.getElementById("live").textContent = "server not reachable";
  }
  setTimeout(poll, 1000);
}

async function start() {
  const p = await get("/api/project");
  generation = p.generation;
  schemaKeys = p.schema_keys;
  document.getElementById("project").textContent = `${p.name} · ${p.root}`;
  const warning = document.getElementById("warning");
  warning.textContent = p.warning || "";
  warning.hidden = !p.warning;
  window.addEventListener("hashchange", render);
  await render();
  setTimeout(poll, 1000);
}

start();
