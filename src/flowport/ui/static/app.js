// Flowport web UI: a small single-page app over the REST API v4 (no build step, no framework).
// The browser's session cookie signs every call in; changes carry the CSRF token (X-CSRF-Token).
"use strict";

const FINAL = new Set(["Complete", "Failed", "Canceled"]);
let me = null;
let timer = null;

function csrf() {
  const found = document.cookie.split("; ").find((c) => c.startsWith("flowport_csrf="));
  return found ? decodeURIComponent(found.split("=")[1]) : "";
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) { location.href = "/ui/login"; throw new Error("signed out"); }
  const text = await response.text();
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") && text ? JSON.parse(text) : text;
  if (!response.ok) {
    const message = data && data.exception ? data.exception.message : `${response.status} ${text}`;
    throw new Error(message);
  }
  return data;
}

// el("tag", {attr: value, onclick: fn}, child...) — text children are escaped by the DOM.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(...nodes) {
  const view = document.getElementById("view");
  view.replaceChildren(...nodes.filter((node) => node !== null && node !== undefined));
  view.focus();
}

function fail(error) {
  show(el("h1", {}, "Something went wrong"), el("p", { class: "message", role: "alert" }, error.message));
}

const canEdit = () => me && (me.role === "admin" || me.role === "editor");

// -- flows -------------------------------------------------------------------------------

async function flowsPage() {
  const search = el("input", { id: "search", type: "search", placeholder: "Name contains", "aria-label": "Search flows" });
  const kind = el("select", { id: "type", "aria-label": "Flow type" },
    el("option", { value: "" }, "All types"), el("option", { value: "batch" }, "batch"),
    el("option", { value: "streaming" }, "streaming"));
  const body = el("tbody");
  const flows = (await api("GET", "/v4/flows?noLimit=true")).data;
  const render = () => {
    const text = search.value.trim().toLowerCase();
    body.replaceChildren(...flows
      .filter((f) => (!text || f.name.toLowerCase().includes(text)) && (!kind.value || f.type === kind.value))
      .map((f) => el("tr", {},
        el("td", {}, el("a", { href: `#/flows/${f.id}` }, f.name)),
        el("td", {}, f.type), el("td", {}, f.description || ""), el("td", {}, f.updatedAt || ""))));
  };
  search.addEventListener("input", render);
  kind.addEventListener("change", render);
  render();
  show(el("h1", {}, "Flows"), el("div", { class: "toolbar" }, search, kind),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, "Type"),
      el("th", {}, "Description"), el("th", {}, "Updated"))), body));
}

// Stages without a position are laid out in columns by their distance from an origin.
function positions(stages, edges) {
  const depth = new Map(stages.map((s) => [s.name, 0]));
  for (let round = 0; round < stages.length; round++) {
    for (const e of edges) depth.set(e.to, Math.max(depth.get(e.to) || 0, (depth.get(e.from) || 0) + 1));
  }
  const rows = new Map();
  const placed = new Map();
  for (const s of stages) {
    if (s.position) { placed.set(s.name, { x: s.position.x, y: s.position.y }); continue; }
    const column = depth.get(s.name) || 0;
    const row = rows.get(column) || 0;
    rows.set(column, row + 1);
    placed.set(s.name, { x: 40 + column * 230, y: 40 + row * 120 });
  }
  return placed;
}

const W = 180, H = 56;

// The graph of a flow document: stages where their positions say (laid out when missing), arrows
// for edges, a red dot on each stage with issues. `editor` (optional) makes stages selectable and
// draggable: {selected, select(name), moved(name, x, y)}.
function graph(document_, issues, editor) {
  const stages = document_.stages || [];
  const edges = (document_.edges || []).map((e) => ({ from: e.from || e.source, to: e.to || e.target }));
  const at = positions(stages, edges);
  const xs = [...at.values()].map((p) => p.x), ys = [...at.values()].map((p) => p.y);
  const width = Math.max(640, ...xs.map((x) => x + W + 40)), height = Math.max(200, ...ys.map((y) => y + H + 40));
  const byStage = new Map();
  for (const issue of issues) {
    if (issue.instanceName) byStage.set(issue.instanceName, [...(byStage.get(issue.instanceName) || []), issue]);
  }
  const root = svg("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Graph of ${stages.length} stages` },
    svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
      markerWidth: "8", markerHeight: "8", orient: "auto-start-reverse" }, svg("path", { d: "M 0 0 L 10 5 L 0 10 z" }))));
  for (const e of edges) {
    const a = at.get(e.from), b = at.get(e.to);
    if (!a || !b) continue;
    root.append(svg("path", { class: "edge", "marker-end": "url(#arrow)", "data-edge": `${e.from}->${e.to}`,
      d: `M ${a.x + W} ${a.y + H / 2} C ${a.x + W + 40} ${a.y + H / 2}, ${b.x - 40} ${b.y + H / 2}, ${b.x} ${b.y + H / 2}` }));
  }
  for (const s of stages) {
    const p = at.get(s.name);
    const problems = byStage.get(s.name) || [];
    const plugin = s.plugin ? `${s.plugin.name || ""} ${s.plugin.version || ""}`.trim() : "";
    const chosen = editor && editor.selected === s.name;
    const group = svg("g", { class: `stage${problems.length ? " bad" : ""}${chosen ? " selected" : ""}`,
      "data-stage": s.name, tabindex: "0", role: editor ? "button" : "group",
      "aria-label": `${s.label || s.name}${problems.length ? `: ${problems.length} issue(s)` : ""}`,
      transform: `translate(${p.x} ${p.y})` },
      svg("title", {}, problems.length ? problems.map((i) => i.humanReadableMessage).join("\n") : s.name),
      svg("rect", { width: W, height: H, rx: 6 }),
      svg("text", { x: 10, y: 22 }, s.label || s.name),
      svg("text", { x: 10, y: 42, class: "plugin" }, plugin));
    if (problems.length) group.append(svg("circle", { class: "dot", cx: W - 10, cy: 10, r: 7, "data-issues": problems.length }));
    if (editor) {
      group.addEventListener("click", () => editor.select(s.name));
      group.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") editor.select(s.name); });
      group.addEventListener("pointerdown", (event) => drag(event, root, group, p, (x, y) => editor.moved(s.name, x, y)));
    }
    root.append(group);
  }
  return root;
}

// Drag a stage: follows the pointer in the graph's coordinates, reports where it was dropped.
function drag(event, root, group, start, dropped) {
  const matrix = root.getScreenCTM();
  if (!matrix) return;
  const inverse = matrix.inverse();
  const point = (e) => new DOMPoint(e.clientX, e.clientY).matrixTransform(inverse);
  const origin = point(event);
  let moved = null;
  const move = (e) => {
    const now = point(e);
    moved = { x: Math.max(0, Math.round(start.x + now.x - origin.x)), y: Math.max(0, Math.round(start.y + now.y - origin.y)) };
    group.setAttribute("transform", `translate(${moved.x} ${moved.y})`);
  };
  const up = () => {
    root.removeEventListener("pointermove", move);
    window.removeEventListener("pointerup", up);
    if (moved && (Math.abs(moved.x - start.x) > 2 || Math.abs(moved.y - start.y) > 2)) dropped(moved.x, moved.y);
  };
  root.addEventListener("pointermove", move);
  window.addEventListener("pointerup", up);
}

let pluginsCache = null;
async function plugins() {
  if (!pluginsCache) pluginsCache = (await api("GET", "/v4/stages")).data;
  return pluginsCache;
}

// One input per setting of a plugin's configuration schema (its types, defaults and descriptions).
function settingsForm(schema, values, changed) {
  const properties = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  return Object.entries(properties).map(([key, spec]) => {
    const choice = (spec.anyOf || []).find((option) => option.type !== "null") || spec;
    const type = choice.type || (choice.enum ? "string" : "object");
    const id = `setting-${key}`;
    const value = key in values ? values[key] : spec.default;
    let input;
    if (choice.enum || spec.enum) {
      input = el("select", { id }, (choice.enum || spec.enum).map((v) => el("option", { value: v, selected: v === value }, v)));
      input.addEventListener("change", () => changed(key, input.value));
    } else if (type === "boolean") {
      input = el("input", { id, type: "checkbox", checked: value ? "checked" : false });
      input.addEventListener("change", () => changed(key, input.checked));
    } else if (type === "integer" || type === "number") {
      input = el("input", { id, type: "number", value: value ?? "", step: type === "integer" ? "1" : "any" });
      input.addEventListener("change", () => changed(key, input.value === "" ? undefined : Number(input.value)));
    } else if (type === "string") {
      input = el("input", { id, value: value ?? "" });
      input.addEventListener("change", () => changed(key, input.value === "" && !required.has(key) ? undefined : input.value));
    } else {
      input = el("textarea", { id, rows: "3" }, value === undefined ? "" : JSON.stringify(value, null, 1));
      input.addEventListener("change", () => {
        try { changed(key, input.value.trim() ? JSON.parse(input.value) : undefined); input.setCustomValidity(""); }
        catch (error) { input.setCustomValidity("Not JSON"); input.reportValidity(); }
      });
    }
    return el("div", { class: "field" }, el("label", { for: id }, `${spec.title || key}${required.has(key) ? " *" : ""}`),
      input, spec.description ? el("small", {}, spec.description) : null);
  });
}

function freeName(doc, plugin) {
  const base = plugin.split("_").map((w) => w[0].toUpperCase() + w.slice(1)).join("");
  for (let n = 1; ; n++) {
    const name = `${base}_${String(n).padStart(2, "0")}`;
    if (!(doc.stages || []).some((s) => s.name === name)) return name;
  }
}

function records(rows) {
  if (!Array.isArray(rows) || !rows.length) return el("p", {}, rows === null || rows === undefined ? "—" : "(none)");
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r || {})))];
  return el("table", {}, el("thead", {}, el("tr", {}, keys.map((k) => el("th", {}, k)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, keys.map((k) => el("td", {}, r[k] === null ? "null" : typeof r[k] === "object" ? JSON.stringify(r[k]) : String(r[k])))))));
}

async function flowPage(id) {
  const [flow, validation, catalog] = await Promise.all([
    api("GET", `/v4/flows/${id}`), api("GET", `/v4/flows/${id}/validate`), plugins()]);
  const doc = JSON.parse(JSON.stringify(flow.document || {}));
  doc.stages = doc.stages || [];
  doc.edges = doc.edges || [];
  let issues = validation.issues || [];
  let dirty = false;
  const editor = { selected: null };
  const status = el("p", { class: "note", role: "status" });
  const canvas = el("div", { id: "canvas" });
  const panel = el("div", { id: "stage-panel" });
  const issueList = el("div", { id: "issues" });
  const output = el("div", { id: "preview" });
  const validity = el("span", { id: "validity" });
  const saveButton = el("button", { id: "save", type: "button", disabled: true, onclick: () => save() }, "Save");

  const touch = () => { dirty = true; saveButton.disabled = false; status.textContent = "Unsaved changes."; draw(); };
  const draw = () => {
    canvas.replaceChildren(graph(doc, issues, editor));
    validity.className = issues.length ? "status Failed" : "status Complete";
    validity.textContent = issues.length ? `${issues.length} issue(s)` : "Valid";
    issueList.replaceChildren(...(issues.length ? [el("h2", {}, "Issues"), el("ul", { class: "issues" }, issues.map((i) =>
      el("li", {}, `${i.instanceName || "(flow)"}: ${i.humanReadableMessage} [${i.code}]`)))] : []));
    drawPanel();
  };
  const drawPanel = () => {
    const stage = doc.stages.find((s) => s.name === editor.selected);
    if (!stage || !canEdit()) { panel.replaceChildren(); return; }
    const plugin = catalog.find((p) => p.name === stage.plugin.name);
    stage.configuration = stage.configuration || {};
    const others = doc.stages.filter((s) => s.name !== stage.name);
    const target = el("select", { id: "connect-to", "aria-label": "Connect to" }, others.map((s) => el("option", { value: s.name }, s.name)));
    const outgoing = doc.edges.filter((e) => e.from === stage.name);
    panel.replaceChildren(
      el("h2", {}, `Stage ${stage.name}`, el("small", {}, ` ${stage.plugin.name}`)),
      plugin ? el("p", {}, plugin.description || "") : el("p", { class: "message" }, "This plugin is not installed here."),
      el("form", { class: "form", "aria-label": `Settings of ${stage.name}`, onsubmit: (e) => e.preventDefault() },
        ...settingsForm(plugin ? plugin.configSchema : null, stage.configuration, (key, value) => {
          if (value === undefined) delete stage.configuration[key]; else stage.configuration[key] = value;
          touch();
        })),
      others.length ? el("div", { class: "toolbar" }, target, el("button", { id: "connect", type: "button", class: "secondary",
        onclick: () => {
          if (!doc.edges.some((e) => e.from === stage.name && e.to === target.value)) doc.edges.push({ from: stage.name, to: target.value });
          touch();
        } }, "Connect")) : null,
      outgoing.length ? el("ul", {}, outgoing.map((e) => el("li", {}, `→ ${e.to} `, el("button", { type: "button", class: "secondary",
        onclick: () => { doc.edges = doc.edges.filter((x) => x !== e); touch(); } }, "Remove edge")))) : null,
      el("div", { class: "toolbar" }, el("button", { id: "delete-stage", type: "button", class: "secondary", onclick: () => {
        doc.stages = doc.stages.filter((s) => s !== stage);
        doc.edges = doc.edges.filter((e) => e.from !== stage.name && e.to !== stage.name);
        editor.selected = null;
        touch();
      } }, "Delete stage")));
  };
  editor.select = (name) => { editor.selected = name; draw(); };
  editor.moved = (name, x, y) => { doc.stages.find((s) => s.name === name).position = { x, y }; touch(); };

  const save = async () => {
    try {
      await api("PATCH", `/v4/flows/${id}`, doc);
      dirty = false;
      saveButton.disabled = true;
      issues = (await api("GET", `/v4/flows/${id}/validate`)).issues || [];
      status.textContent = "Saved.";
      draw();
    } catch (error) { status.textContent = error.message; }
  };
  const pick = el("select", { id: "add-plugin", "aria-label": "Stage plugin" },
    ["origin", "processor", "destination", "executor"].map((kind) => el("optgroup", { label: kind },
      catalog.filter((p) => p.kind === kind).map((p) => el("option", { value: p.name }, p.label || p.name)))));
  const add = el("button", { id: "add-stage", type: "button", class: "secondary", onclick: () => {
    const name = freeName(doc, pick.value);
    const last = doc.stages.length ? positions(doc.stages, doc.edges).get(doc.stages[doc.stages.length - 1].name) : { x: -190, y: 40 };
    doc.stages.push({ name, plugin: { name: pick.value }, configuration: {}, position: { x: last.x + 230, y: last.y } });
    editor.selected = name;
    touch();
  } }, "Add stage");
  const preview = el("button", { id: "preview-button", type: "button", class: "secondary", onclick: async () => {
    if (dirty) { status.textContent = "Save first: the preview runs the stored flow."; return; }
    output.replaceChildren(el("p", { role: "status" }, "Previewing…"));
    try {
      const result = await api("POST", `/v4/flows/${id}/preview`, { rows: 10 });
      output.replaceChildren(el("h2", {}, "Preview"), ...result.data.map((stage) => el("section", { class: "preview-stage", "data-stage": stage.instanceName },
        el("h3", {}, stage.instanceName), el("h4", {}, "Input"), records(stage.input),
        el("h4", {}, "Output"), records(stage.output),
        stage.errors && stage.errors.length ? [el("h4", {}, "Errors"), records(stage.errors)] : null)));
    } catch (error) { output.replaceChildren(el("p", { class: "message" }, error.message)); }
  } }, "Preview");
  // Run with parameter overrides: one field per declared parameter, its default shown.
  const declared = Object.entries(doc.parameters || {});
  const overrides = declared.map(([name, value]) => el("input", { id: `param-${name}`, "data-parameter": name,
    placeholder: String(value), "aria-label": `Parameter ${name}` }));
  const runParameters = declared.length && canEdit() ? el("div", { class: "toolbar", id: "run-parameters" },
    el("span", {}, "Run with:"), declared.flatMap(([name], i) => [el("label", { for: `param-${name}` }, name), overrides[i]])) : null;
  const run = el("button", { id: "run", type: "button", onclick: async () => {
    if (dirty) { status.textContent = "Save first: a run runs the stored flow."; return; }
    const parameters = Object.fromEntries(overrides.filter((input) => input.value !== "")
      .map((input) => [input.dataset.parameter, input.value]));
    try {
      const group = await api("POST", `/v4/flows/${id}/run`, { parameters });
      location.hash = `#/jobs/${group.id}`;
    } catch (error) { status.textContent = error.message; }
  } }, "Run");
  const validate = el("button", { id: "validate", type: "button", class: "secondary", onclick: async () => {
    issues = (await api("GET", `/v4/flows/${id}/validate`)).issues || [];
    draw();
  } }, "Validate");
  draw();
  show(
    el("h1", {}, flow.name),
    el("p", {}, flow.description || ""),
    el("div", { class: "toolbar" }, canEdit() ? [run, saveButton, pick, add] : null, canEdit() ? preview : null, validate, validity),
    runParameters, status, canvas, panel, issueList, output,
    el("h2", {}, "Runs"), await runsTable(`/v4/jobGroups?flowId=${id}&limit=20`));
}

// -- jobs ---------------------------------------------------------------------------------

async function runsTable(path) {
  const groups = (await api("GET", path)).data;
  return el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Run"), el("th", {}, "Status"),
    el("th", {}, "Trigger"), el("th", {}, "Started"), el("th", {}, "Finished"))),
    el("tbody", {}, groups.map((g) => el("tr", {},
      el("td", {}, el("a", { href: `#/jobs/${g.id}` }, `#${g.id}`)),
      el("td", {}, el("span", { class: `status ${g.status}` }, g.status)),
      el("td", {}, g.trigger || ""), el("td", {}, g.startedAt || ""), el("td", {}, g.finishedAt || "")))));
}

async function jobsPage() {
  const status = el("select", { id: "status", "aria-label": "Status" }, el("option", { value: "" }, "Any status"),
    ...["Pending", "InProgress", "Complete", "Failed", "Canceled"].map((s) => el("option", { value: s }, s)));
  const holder = el("div");
  const load = async () => holder.replaceChildren(
    await runsTable(`/v4/jobGroups?limit=50${status.value ? `&status=${status.value}` : ""}`));
  status.addEventListener("change", () => load().catch(fail));
  await load();
  show(el("h1", {}, "Jobs"), el("div", { class: "toolbar" }, status), holder);
}

async function jobPage(id) {
  const title = el("h1", {}, `Run #${id}`);
  const state = el("p", {}, "Status: ", el("span", { id: "job-status", class: "status" }, "…"));
  const parameters = el("p", { id: "job-parameters" });
  const metrics = el("tbody", { id: "metrics" });
  const log = el("pre", { class: "log", id: "log", "aria-label": "Log" });
  const message = el("p", { class: "message", role: "alert" });
  const cancel = el("button", { id: "cancel", type: "button", class: "secondary", onclick: async () => {
    try { await api("POST", `/v4/jobGroups/${id}/cancel`); } catch (error) { message.textContent = error.message; }
  } }, "Cancel");
  show(title, state, parameters, message, canEdit() ? el("div", { class: "toolbar" }, cancel) : null,
    el("h2", {}, "Stages"),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Stage"), el("th", {}, "Input"),
      el("th", {}, "Output"), el("th", {}, "Errors"))), metrics),
    el("h2", {}, "Log"), log);
  const refresh = async () => {
    const [group, live] = await Promise.all([api("GET", `/v4/jobGroups/${id}`), api("GET", `/v4/jobGroups/${id}/metrics`)]);
    const badge = document.getElementById("job-status");
    if (!badge) return false;
    badge.textContent = group.status;
    const given = Object.entries(group.parameters || {});
    parameters.textContent = given.length ? `Parameters: ${given.map(([k, v]) => `${k}=${v}`).join(", ")}` : "";
    badge.className = `status ${group.status}`;
    if (group.error) message.textContent = group.error;
    metrics.replaceChildren(...Object.entries(live.stages || {}).map(([name, m]) => el("tr", {},
      el("td", {}, name), el("td", {}, m.inputRecords ?? ""), el("td", {}, m.outputRecords ?? ""),
      el("td", {}, m.errorRecords ?? ""))));
    log.textContent = await api("GET", `/v4/jobGroups/${id}/logs`);
    cancel.disabled = FINAL.has(group.status);
    return !FINAL.has(group.status);
  };
  const tick = async () => {
    try { if (await refresh()) timer = setTimeout(tick, 1000); } catch (error) { message.textContent = error.message; }
  };
  await tick();
}

// -- deployments ---------------------------------------------------------------------------

async function deploymentsPage() {
  const list = (await api("GET", "/v4/deployments?noLimit=true")).data;
  show(el("h1", {}, "Deployments"), el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Name"),
    el("th", {}, "Active release"), el("th", {}, "Updated"))),
    el("tbody", {}, list.map((d) => el("tr", {},
      el("td", {}, el("a", { href: `#/deployments/${d.id}` }, d.name)),
      el("td", {}, d.activeRelease ? `#${d.activeRelease.id}` : "none"), el("td", {}, d.updatedAt || ""))))));
}

// What is left of a value once empty lists, empty objects and nulls are taken out (undefined: nothing).
function prune(value) {
  if (Array.isArray(value)) {
    const kept = value.map(prune).filter((v) => v !== undefined);
    return kept.length ? kept : undefined;
  }
  if (value && typeof value === "object") {
    const kept = Object.entries(value).map(([k, v]) => [k, prune(v)]).filter(([, v]) => v !== undefined);
    return kept.length ? Object.fromEntries(kept) : undefined;
  }
  return value === null || value === undefined ? undefined : value;
}

// A diff (or any answer part) as nested lists: what changed, key by key.
function tree(value) {
  if (Array.isArray(value)) return el("ul", {}, value.map((item) => el("li", {}, tree(item))));
  if (value && typeof value === "object") {
    return el("ul", {}, Object.entries(value).map(([k, v]) => el("li", {}, el("strong", {}, `${k}: `),
      typeof v === "object" ? tree(v) : String(v))));
  }
  return String(value);
}

function diffView(diff) {
  const { from, to, ...changes } = diff;
  const kept = prune(changes);
  return el("section", { class: "diff", "aria-label": "Release diff" },
    el("h2", {}, `Changes from ${from ?? "nothing"} to ${to ?? "this release"}`),
    kept ? tree(kept) : el("p", {}, "No changes."));
}

async function upload(path, file) {
  const form = new FormData();
  form.append("data", file);
  const response = await fetch(path, { method: "POST", body: form, credentials: "same-origin",
    headers: { "X-CSRF-Token": csrf(), Accept: "application/json" } });
  const data = await response.json();
  if (!response.ok) throw new Error(data.exception ? data.exception.message : response.statusText);
  return data;
}

async function deploymentPage(id) {
  const deployment = await api("GET", `/v4/deployments/${id}?embed=releases`);
  const releases = deployment.releases.data;
  const active = releases.find((r) => r.active);
  const message = el("p", { class: "message", role: "alert" });
  const detail = el("div", { id: "detail" });
  const activate = async (release) => {
    const older = active && release.id < active.id;
    if (!confirm(`${older ? "Roll back to" : "Activate"} release #${release.id}? Runs of ${deployment.name} will use it.`)) return;
    try { await api("PATCH", `/v4/releases/${release.id}`, { active: true }); await deploymentPage(id); }
    catch (error) { message.textContent = error.message; }
  };
  const rows = releases.map((r) => el("tr", { "data-release": r.id },
    el("td", {}, `#${r.id}`), el("td", {}, r.active ? el("strong", { class: "status Complete" }, "active") : ""),
    el("td", {}, r.notes || ""), el("td", {}, r.createdAt || ""),
    el("td", {},
      !r.active && active ? el("button", { type: "button", class: "secondary", onclick: async () => {
        try { detail.replaceChildren(diffView(await api("GET", `/v4/releases/${r.id}/diff?against=active`))); }
        catch (error) { message.textContent = error.message; }
      } }, "Diff against active") : null,
      !r.active && canEdit() ? el("button", { type: "button", onclick: () => activate(r) },
        active && r.id < active.id ? "Roll back to this" : "Activate") : null)));
  const file = el("input", { id: "package", type: "file", accept: ".zip", "aria-label": "Package ZIP" });
  const importer = canEdit() ? el("div", { class: "toolbar" }, file,
    el("button", { id: "dry-run", type: "button", class: "secondary", onclick: async () => {
      if (!file.files.length) { message.textContent = "Choose a package ZIP first."; return; }
      try {
        const report = await upload(`/v4/deployments/${id}/releases/dryRun`, file.files[0]);
        const unresolved = report.unresolvedConnections || [];
        detail.replaceChildren(...[el("h2", {}, "Dry run: nothing is stored"),
          unresolved.length ? el("p", { class: "message" },
            `${unresolved.length} connection(s) would not resolve: the release would be stored, not activated.`) : null,
          report.diff ? diffView(report.diff) : tree(prune(report) || {})].filter(Boolean));
      } catch (error) { message.textContent = error.message; }
    } }, "Preview import"),
    el("button", { id: "import", type: "button", onclick: async () => {
      if (!file.files.length) { message.textContent = "Choose a package ZIP first."; return; }
      try {
        const report = await upload(`/v4/deployments/${id}/releases`, file.files[0]);
        await deploymentPage(id);
        document.getElementById("detail").replaceChildren(el("p", { role: "status" }, report.message || "Imported."));
      } catch (error) { message.textContent = error.message; }
    } }, "Import")) : null;
  const run = canEdit() && active ? el("button", { id: "run-deployment", type: "button", onclick: async () => {
    try { const started = await api("POST", `/v4/deployments/${id}/run`, {}); location.hash = `#/jobs/${started.data[0].id}`; }
    catch (error) { message.textContent = error.message; }
  } }, "Run") : null;
  show(el("h1", {}, deployment.name), el("div", { class: "toolbar" }, run), message,
    el("h2", {}, "Releases"),
    el("table", { id: "releases" }, el("thead", {}, el("tr", {}, el("th", {}, "Release"), el("th", {}, "State"),
      el("th", {}, "Notes"), el("th", {}, "Imported"), el("th", {}, ""))), el("tbody", {}, rows)),
    importer ? el("h2", {}, "Import a package") : null, importer, detail);
}

// -- connections ---------------------------------------------------------------------------

const VENDORS = ["postgresql", "mysql", "redshift", "sqlite", "duckdb", "http", "filesystem"];

function field(label, input) {
  const id = `f-${label.toLowerCase().replace(/[^a-z]+/g, "-")}`;
  input.id = id;
  return el("div", { class: "field" }, el("label", { for: id }, label), input);
}

async function connectionsPage(editing) {
  const rows = (await api("GET", "/v4/connections?noLimit=true")).data;
  const current = editing ? rows.find((c) => String(c.id) === String(editing)) : null;
  const message = el("p", { class: "message", role: "alert" });
  const name = el("input", { required: true, value: current ? current.name : "" });
  const vendor = el("select", {}, VENDORS.map((v) => el("option", { value: v, selected: current && current.vendor === v }, v)));
  const host = el("input", { value: current && current.host ? current.host : "" });
  const port = el("input", { type: "number", min: "1", max: "65535", value: current && current.port ? current.port : "" });
  const user = el("input", { autocomplete: "off", value: current && current.credentials[0] ? current.credentials[0].username : "" });
  // Write-only: never filled in; left empty on an edit, the stored secret stays.
  const password = el("input", { type: "password", autocomplete: "new-password",
    placeholder: current ? "unchanged unless typed" : "" });
  const save = async (event) => {
    event.preventDefault();
    const body = { name: name.value.trim(), vendor: vendor.value, host: host.value.trim() || null,
      port: port.value ? Number(port.value) : null };
    if (password.value || !current) body.credentials = user.value ? [{ username: user.value, password: password.value }] : [];
    try {
      if (current) await api("PATCH", `/v4/connections/${current.id}`, body);
      else await api("POST", "/v4/connections", body);
      // Back to the list: the route draws it when the address changes, else draw it here.
      if (location.hash !== "#/connections") location.hash = "#/connections";
      else await connectionsPage();
    } catch (error) { message.textContent = error.message; }
  };
  const form = canEdit() ? el("form", { id: "connection-form", class: "form", onsubmit: save,
    "aria-label": current ? `Edit ${current.name}` : "New connection" },
    el("h2", {}, current ? `Edit ${current.name}` : "New connection"), message,
    field("Name", name), field("Vendor", vendor), field("Host", host), field("Port", port),
    field("User", user), field("Password", password),
    el("div", { class: "toolbar" }, el("button", { type: "submit" }, current ? "Save" : "Create"),
      current ? el("a", { href: "#/connections" }, "Cancel") : null)) : null;
  const test = async (connection, cell) => {
    cell.textContent = "testing…";
    try { const result = await api("POST", `/v4/connections/${connection.id}/test`); cell.textContent = result.ok ? "OK" : result.message; }
    catch (error) { cell.textContent = error.message; }
  };
  show(el("h1", {}, "Connections"),
    el("table", { id: "connections" }, el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, "Vendor"),
      el("th", {}, "Host"), el("th", {}, "User"), el("th", {}, ""), el("th", {}, "Test result"))),
    el("tbody", {}, rows.map((c) => {
      const result = el("td", { class: "test-result", "aria-live": "polite" });
      return el("tr", { "data-connection": c.name },
        el("td", {}, c.name), el("td", {}, c.vendor), el("td", {}, [c.host, c.port].filter(Boolean).join(":")),
        el("td", {}, c.credentials[0] ? c.credentials[0].username : ""),
        el("td", {}, canEdit() ? el("a", { href: `#/connections/${c.id}` }, "Edit") : null,
          " ", canEdit() ? el("button", { type: "button", class: "secondary", onclick: () => test(c, result) }, "Test") : null),
        result);
    }))), form);
}

// -- schedules and locks ------------------------------------------------------------------

function target(schedule) {
  if (schedule.flow) return el("a", { href: `#/flows/${schedule.flow.id}` }, `flow ${schedule.flow.id}`);
  if (schedule.deployment) return el("a", { href: `#/deployments/${schedule.deployment.id}` }, `deployment ${schedule.deployment.id}`);
  return schedule.pipeline ? `pipeline ${schedule.pipeline.id}` : "";
}

async function schedulesPage() {
  const [schedules, locks] = await Promise.all([api("GET", "/v4/schedules?noLimit=true"), api("GET", "/v4/locks")]);
  const message = el("p", { class: "message", role: "alert" });
  const toggle = async (s) => {
    try { await api("POST", `/v4/schedules/${s.id}/${s.paused ? "resume" : "pause"}`); await schedulesPage(); }
    catch (error) { message.textContent = error.message; }
  };
  show(el("h1", {}, "Schedules"), message,
    el("table", { id: "schedules" }, el("thead", {}, el("tr", {}, ["Name", "Target", "Cron", "Next logical date",
      "Next start", "Last run", ""].map((h) => el("th", {}, h)))),
    el("tbody", {}, schedules.data.map((s) => el("tr", { "data-schedule": s.name },
      el("td", {}, s.name), el("td", {}, target(s)), el("td", {}, `${s.cron} (${s.timezone})`),
      el("td", {}, s.nextLogicalDate || ""), el("td", {}, s.paused ? "paused" : s.nextRunAt || ""),
      el("td", {}, s.lastRun ? el("a", { href: `#/jobs/${s.lastRun.id}` },
        el("span", { class: `status ${s.lastRun.status}` }, s.lastRun.status)) : ""),
      el("td", {}, canEdit() ? el("button", { type: "button", class: "secondary", onclick: () => toggle(s) },
        s.paused ? "Resume" : "Pause") : null))))),
    el("h2", {}, "Task locks held"),
    locks.data.length ? el("table", { id: "locks" }, el("thead", {}, el("tr", {}, ["Lock", "Task", "Run", "Since"]
      .map((h) => el("th", {}, h)))), el("tbody", {}, locks.data.map((l) => el("tr", {}, el("td", {}, l.name),
      el("td", {}, l.task), el("td", {}, l.run ? el("a", { href: `#/jobs/${l.run.id}` }, `#${l.run.id}`) : ""),
      el("td", {}, l.since || ""))))) : el("p", {}, "None."));
}

// -- routing ------------------------------------------------------------------------------

async function route() {
  clearTimeout(timer);
  const hash = location.hash || "#/flows";
  let match;
  try {
    if ((match = hash.match(/^#\/flows\/(\d+)$/))) await flowPage(match[1]);
    else if ((match = hash.match(/^#\/jobs\/(\d+)$/))) await jobPage(match[1]);
    else if (hash === "#/jobs") await jobsPage();
    else if ((match = hash.match(/^#\/deployments\/(\d+)$/))) await deploymentPage(match[1]);
    else if (hash === "#/deployments") await deploymentsPage();
    else if ((match = hash.match(/^#\/connections\/(\d+)$/))) await connectionsPage(match[1]);
    else if (hash === "#/connections") await connectionsPage();
    else if (hash === "#/schedules") await schedulesPage();
    else await flowsPage();
  } catch (error) { fail(error); }
}

document.getElementById("logout").addEventListener("click", async () => {
  await fetch("/ui/logout", { method: "POST", headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" });
  location.href = "/ui/login";
});

(async () => {
  try {
    me = await api("GET", "/v4/users/current");
    document.getElementById("who").textContent = `${me.name} (${me.role})`;
  } catch (error) { return; }
  window.addEventListener("hashchange", route);
  await route();
})();
