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
      group.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); editor.select(s.name); return; }
        // Arrow keys move the stage (Shift: further): dragging without a mouse.
        const step = event.shiftKey ? 50 : 10;
        const delta = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[event.key];
        if (delta && editor.movable) {
          event.preventDefault();
          editor.focus = s.name;
          editor.moved(s.name, Math.max(0, p.x + delta[0]), Math.max(0, p.y + delta[1]));
        }
      });
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
    if (editor.focus) {
      const again = canvas.querySelector(`g.stage[data-stage="${CSS.escape(editor.focus)}"]`);
      if (again) again.focus();
    }
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
  editor.movable = canEdit();
  editor.select = (name) => { editor.selected = name; editor.focus = name; draw(); };
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
  const overrides = overrideFields(doc.parameters);
  const runParameters = canEdit() ? overrides.node : null;
  const run = el("button", { id: "run", type: "button", onclick: async () => {
    if (dirty) { status.textContent = "Save first: a run runs the stored flow."; return; }
    const parameters = overrides.values();
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
    el("h2", { id: "history-title" }, "Run history"),
    el("p", {}, el("a", { href: `#/jobs?flowId=${id}` }, "All runs of this flow")),
    await historyGrid(id, doc));
}

// Run with parameter overrides: a field per declared parameter, its default as the placeholder.
function overrideFields(declared) {
  const entries = Object.entries(declared || {});
  const inputs = entries.map(([name, value]) => el("input", { id: `param-${name}`, "data-parameter": name,
    placeholder: String(value) }));
  const node = entries.length ? el("div", { class: "toolbar", id: "run-parameters", role: "group", "aria-label": "Run with parameters" },
    el("span", {}, "Run with:"), entries.flatMap(([name], i) => [el("label", { for: `param-${name}` }, `Parameter ${name}`), inputs[i]])) : null;
  const values = () => Object.fromEntries(inputs.filter((input) => input.value !== "")
    .map((input) => [input.dataset.parameter, input.value]));
  return { node, values };
}

// What became of one stage in one run: a state (its colour) and the words shown in the cell.
function stageOutcome(group, stage) {
  const result = group.result;
  if (!result) {
    const state = FINAL.has(group.status) ? group.status : "InProgress";
    return { state, text: state === "InProgress" ? "Running" : group.status };
  }
  const failedAt = result.error && result.error.stage;
  if (failedAt === stage) return { state: "Failed", text: "Failed" };
  const m = (result.stages || {})[stage];
  if (!m) return { state: "NotRun", text: "Not run" };
  if (m.errorRecords) return { state: "Errors", text: `${m.errorRecords} error${m.errorRecords === 1 ? "" : "s"}` };
  if (group.status === "Failed") return { state: "Stopped", text: "Stopped" };
  if (group.status === "Canceled") return { state: "Canceled", text: "Canceled" };
  return { state: "Complete", text: `OK, ${m.outputRecords ?? 0} out` };
}

// Runs × stages of a flow, each cell coloured by what became of the stage (the words say it too).
async function historyGrid(flowId, doc) {
  const groups = (await api("GET", `/v4/jobGroups?flowId=${flowId}&limit=20`)).data;
  if (!groups.length) return el("p", { id: "history" }, "No runs yet.");
  const stages = (doc.stages || []).map((s) => s.name);
  for (const g of groups) {
    for (const name of Object.keys((g.result && g.result.stages) || {})) if (!stages.includes(name)) stages.push(name);
  }
  const legend = [["Complete", "OK"], ["Errors", "error records"], ["Failed", "failed here"], ["Stopped", "stopped by another stage"],
    ["Canceled", "canceled"], ["InProgress", "running"], ["NotRun", "not run"]];
  return el("div", { id: "history" },
    el("div", { class: "grid-scroll" }, el("table", { class: "history", "aria-labelledby": "history-title" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Run"), el("th", { scope: "col" }, "Started"),
        stages.map((name) => el("th", { scope: "col" }, name)))),
      el("tbody", {}, groups.map((g) => el("tr", { "data-run": g.id },
        el("th", { scope: "row" }, el("a", { href: `#/jobs/${g.id}` }, `#${g.id}`), " ",
          el("span", { class: `status ${g.status}` }, g.status)),
        el("td", {}, g.startedAt || g.createdAt || ""),
        stages.map((name) => {
          const outcome = stageOutcome(g, name);
          return el("td", { class: `cell ${outcome.state}`, "data-stage": name, "data-state": outcome.state,
            title: `${name} in run #${g.id}: ${outcome.text}` }, outcome.text);
        })))))),
    el("p", { class: "legend" }, "Cells: ", legend.map(([state, words]) => el("span", { class: `cell ${state}` }, words))));
}

// -- jobs ---------------------------------------------------------------------------------

const STATUSES = ["Created", "Pending", "InProgress", "Complete", "Failed", "Canceled"];

// What a run ran: a link to its flow, deployment or pipeline (named when the names are known).
function runTarget(group, names) {
  const named = (kind, ref) => (names && names[kind] && names[kind].get(ref.id)) || `${kind} #${ref.id}`;
  if (group.pipeline) return el("a", { href: `#/pipelines/${group.pipeline.id}` }, named("pipeline", group.pipeline));
  if (group.deployment) return el("a", { href: `#/deployments/${group.deployment.id}` }, named("deployment", group.deployment));
  if (group.flow) return el("a", { href: `#/flows/${group.flow.id}` }, named("flow", group.flow));
  return "";
}

function runsTable(groups, names) {
  return el("table", { id: "runs" }, el("thead", {}, el("tr", {}, ["Run", "Status", "What", "Trigger", "Logical date",
    "Started", "Finished"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, groups.map((g) => el("tr", { "data-run": g.id },
      el("td", {}, el("a", { href: `#/jobs/${g.id}` }, `#${g.id}`)),
      el("td", {}, el("span", { class: `status ${g.status}` }, g.status)),
      el("td", {}, runTarget(g, names)),
      el("td", {}, g.trigger || ""), el("td", {}, g.logicalDate || ""),
      el("td", {}, g.startedAt || ""), el("td", {}, g.finishedAt || "")))));
}

function choice(id, label, options, value) {
  const select = el("select", { id }, options.map(([v, text]) => el("option", { value: v, selected: String(v) === String(value ?? "") }, text)));
  return { select, node: el("div", { class: "field inline" }, el("label", { for: id }, label), select) };
}

const byId = (rows) => new Map(rows.map((r) => [r.id, r.name]));

// Jobs, filtered by status, flow, deployment and schedule; the filters are in the address (#/jobs?status=Failed).
async function jobsPage(params) {
  const [flows, deployments, schedules, pipelines] = await Promise.all([api("GET", "/v4/flows?noLimit=true"),
    api("GET", "/v4/deployments?noLimit=true"), api("GET", "/v4/schedules?noLimit=true"), api("GET", "/v4/pipelines?noLimit=true")]);
  const names = { flow: byId(flows.data), deployment: byId(deployments.data), pipeline: byId(pipelines.data) };
  const filters = {
    status: choice("filter-status", "Status", [["", "Any status"], ...STATUSES.map((s) => [s, s])], params.get("status")),
    flowId: choice("filter-flow", "Flow", [["", "Any flow"], ...flows.data.map((f) => [f.id, f.name])], params.get("flowId")),
    deploymentId: choice("filter-deployment", "Deployment", [["", "Any deployment"], ...deployments.data.map((d) => [d.id, d.name])],
      params.get("deploymentId")),
    scheduleId: choice("filter-schedule", "Schedule", [["", "Any schedule"], ...schedules.data.map((x) => [x.id, x.name])],
      params.get("scheduleId")),
  };
  const holder = el("div", { id: "runs-holder" });
  const summary = el("p", { id: "runs-count", role: "status" });
  const load = async () => {
    const query = new URLSearchParams();
    for (const [key, filter] of Object.entries(filters)) if (filter.select.value) query.set(key, filter.select.value);
    // The address keeps the filters (a link or a reload shows the same list) without drawing the page again.
    history.replaceState(null, "", `#/jobs${query.toString() ? `?${query}` : ""}`);
    query.set("limit", "50");
    const page = await api("GET", `/v4/jobGroups?${query}`);
    summary.textContent = page.count > page.data.length ? `The latest ${page.data.length} of ${page.count} runs.` : `${page.count} run(s).`;
    holder.replaceChildren(runsTable(page.data, names));
  };
  for (const filter of Object.values(filters)) filter.select.addEventListener("change", () => load().catch(fail));
  await load();
  show(el("h1", {}, "Jobs"), el("form", { class: "toolbar filters", "aria-label": "Filter jobs", onsubmit: (e) => e.preventDefault() },
    Object.values(filters).map((f) => f.node)), summary, holder);
}

// The first error records the run's error stage stored, and a download of all of them (editors only).
async function errorRecordsSection(id, section) {
  const found = await api("GET", `/v4/jobGroups/${id}/errorRecords`);
  const parts = [el("h2", {}, "Error records")];
  parts.push(el("p", { id: "error-count" }, `The run counted ${found.errorRecords} error record(s)` +
    (found.stored ? `; its error stage stored ${found.count}.` : ".")));
  if (found.message) parts.push(el("p", { class: "note" }, found.message));
  if (found.data.length) {
    if (found.count > found.data.length) parts.push(el("p", {}, `The first ${found.data.length} of ${found.count}:`));
    parts.push(el("div", { class: "grid-scroll" }, el("table", { id: "error-records" },
      el("thead", {}, el("tr", {}, ["Stage", "Code", "Message", "Record"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, found.data.map((r) => el("tr", {}, el("td", {}, r.stage || ""), el("td", {}, r.code || ""),
        el("td", {}, r.message || ""), el("td", {}, el("code", {}, JSON.stringify(r.record)))))))));
  }
  if (found.count) {
    parts.push(el("p", {}, el("a", { id: "download-errors", href: `/v4/jobGroups/${id}/errorRecords/download`, download: "" },
      `Download all ${found.count} error records (JSON Lines)`)));
  }
  section.replaceChildren(...parts);
}

// The name of what a run ran, for its page (a number when it is gone).
async function targetNames(group) {
  const names = { flow: new Map(), deployment: new Map(), pipeline: new Map() };
  const paths = { flow: "flows", deployment: "deployments", pipeline: "pipelines" };
  for (const kind of Object.keys(paths)) {
    if (!group[kind]) continue;
    try { names[kind].set(group[kind].id, (await api("GET", `/v4/${paths[kind]}/${group[kind].id}`)).name); } catch (error) { /* deleted */ }
  }
  return names;
}

async function jobPage(id) {
  const title = el("h1", {}, `Run #${id}`);
  const state = el("p", {}, "Status: ", el("span", { id: "job-status", class: "status" }, "…"));
  const what = el("p", { id: "job-target" });
  const parameters = el("p", { id: "job-parameters" });
  const metrics = el("tbody", { id: "metrics" });
  const log = el("pre", { class: "log", id: "log", "aria-label": "Log", tabindex: "0" });
  const message = el("p", { class: "message", role: "alert" });
  const errors = el("section", { id: "errors", "aria-label": "Error records" });
  let errorsShown = false;
  let names = null;
  const cancel = el("button", { id: "cancel", type: "button", class: "secondary", onclick: async () => {
    if (!confirm(`Cancel run #${id}? Its destinations are left as they were.`)) return;
    try { await api("POST", `/v4/jobGroups/${id}/cancel`); } catch (error) { message.textContent = error.message; }
  } }, "Cancel run");
  // A streaming job: its totals while it runs, and Stop (drains the micro-batch in flight) instead of Cancel.
  const stream = el("p", { id: "stream-stats", role: "status" });
  const stop = el("button", { id: "stop", type: "button", hidden: true, onclick: async () => {
    if (!confirm(`Stop run #${id}? The micro-batch in flight is committed and acknowledged first.`)) return;
    try { await api("POST", `/v4/jobGroups/${id}/stop`); } catch (error) { message.textContent = error.message; }
  } }, "Stop");
  show(title, state, what, parameters, stream, message,
    canEdit() ? el("div", { class: "toolbar" }, stop, cancel) : null,
    el("h2", {}, "Stages"),
    el("table", {}, el("thead", {}, el("tr", {}, ["Stage", "Input", "Output", "Errors"].map((h) => el("th", { scope: "col" }, h)))), metrics),
    canEdit() ? errors : null,
    el("h2", {}, "Log"), log);
  const refresh = async () => {
    const [group, live] = await Promise.all([api("GET", `/v4/jobGroups/${id}`), api("GET", `/v4/jobGroups/${id}/metrics`)]);
    const badge = document.getElementById("job-status");
    if (!badge) return false;
    // The status, the buttons and a stream's totals come from one answer (the metrics'), shown at once
    // (before the awaits below): never a step apart.
    const status = live.status || group.status;
    badge.textContent = status;
    const ended = FINAL.has(status);
    cancel.disabled = ended;
    if (live.streaming) { stop.hidden = ended; cancel.hidden = true; }
    const streaming = live.streaming;
    if (streaming) {
      stream.textContent = `Streaming: ${streaming.batches} micro-batches, ${streaming.records} records, ` +
        `${streaming.recordsPerSecond} records/s, ${streaming.failures} failures` +
        (streaming.lag !== null && streaming.lag !== undefined ? `, lag ${streaming.lag}` : "") +
        (streaming.lastError ? `; last error: ${streaming.lastError}` : "") + (streaming.stopped ? " (stopped)" : "");
    }
    const given = Object.entries(group.parameters || {});
    parameters.textContent = given.length ? `Parameters: ${given.map(([k, v]) => `${k}=${v}`).join(", ")}` : "";
    if (!names) names = await targetNames(group);
    what.replaceChildren("Ran ", runTarget(group, names), group.trigger ? ` (${group.trigger})` : "",
      group.logicalDate ? ` for ${group.logicalDate}` : "");
    badge.className = `status ${status}`;
    if (group.error) message.textContent = group.error;
    metrics.replaceChildren(...Object.entries(live.stages || {}).map(([name, m]) => el("tr", {},
      el("td", {}, name), el("td", {}, m.inputRecords ?? ""), el("td", {}, m.outputRecords ?? ""),
      el("td", {}, m.errorRecords ?? ""))));
    log.textContent = await api("GET", `/v4/jobGroups/${id}/logs`);
    if (ended && canEdit() && !errorsShown && !group.pipeline) {
      errorsShown = true;
      await errorRecordsSection(id, errors).catch((error) => errors.replaceChildren(el("p", { class: "message" }, error.message)));
    }
    return !ended;
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

const VALUE_RULE_TYPES = [["fileLocation", "File location"], ["s3Bucket", "S3 bucket"], ["tableName", "Table name"], ["parameter", "Parameter"]];

// The import rules of a deployment: object rules (a package's connection uuid → a local connection) and
// value rules (ordered literal or /regex/ rewrites), edited as tables and saved whole.
async function rulesEditor(id, suggestions) {
  const [objects, values, connections] = await Promise.all([api("GET", `/v4/deployments/${id}/objectImportRules`),
    api("GET", `/v4/deployments/${id}/valueImportRules`), api("GET", "/v4/connections?noLimit=true")]);
  const editable = canEdit();
  const objectRules = objects.data.map((r) => ({ uuid: r.onCondition.uuid, id: r.withCondition.id }));
  const valueRules = values.data.map((r) => ({ type: r.type, on: r.on, with: r.with }));
  const objectBody = el("tbody", { id: "object-rules" });
  const valueBody = el("tbody", { id: "value-rules" });
  const objectNote = el("p", { class: "note", role: "status", id: "object-rules-status" });
  const valueNote = el("p", { class: "note", role: "status", id: "value-rules-status" });
  const known = el("datalist", { id: "package-connections" });
  const fillKnown = () => known.replaceChildren(...suggestions.map((c) => el("option", { value: c.uuid }, c.label)));
  const connectionName = (cid) => (connections.data.find((c) => c.id === cid) || { name: `#${cid}` }).name;
  const remove = (label, list, index, redraw) => el("button", { type: "button", class: "secondary", "aria-label": `Remove ${label} ${index + 1}`,
    onclick: () => { list.splice(index, 1); redraw(); } }, "Remove");

  const drawObjects = () => objectBody.replaceChildren(...(objectRules.length ? objectRules.map((rule, i) => el("tr", { "data-rule": i },
    el("td", {}, editable ? el("input", { id: `object-uuid-${i}`, value: rule.uuid, list: "package-connections", size: "38",
      "aria-label": `Package connection uuid, object rule ${i + 1}`, oninput: (e) => { rule.uuid = e.target.value.trim(); } }) : rule.uuid),
    el("td", {}, editable ? el("select", { id: `object-local-${i}`, "aria-label": `Local connection, object rule ${i + 1}`,
      onchange: (e) => { rule.id = Number(e.target.value); } },
      el("option", { value: "" }, "Choose…"),
      connections.data.map((c) => el("option", { value: c.id, selected: c.id === rule.id }, `${c.name} (${c.vendor})`))) : connectionName(rule.id)),
    editable ? el("td", {}, remove("object rule", objectRules, i, drawObjects)) : null))
    : [el("tr", {}, el("td", { colspan: editable ? "3" : "2" }, "No object rules."))]));
  const move = (i, by) => { const [rule] = valueRules.splice(i, 1); valueRules.splice(i + by, 0, rule); drawValues(); };
  const drawValues = () => valueBody.replaceChildren(...(valueRules.length ? valueRules.map((rule, i) => el("tr", { "data-rule": i },
    el("td", {}, String(i + 1)),
    el("td", {}, editable ? el("select", { id: `value-type-${i}`, "aria-label": `Kind, value rule ${i + 1}`,
      onchange: (e) => { rule.type = e.target.value; } }, VALUE_RULE_TYPES.map(([v, text]) => el("option", { value: v, selected: v === rule.type }, text)))
      : (VALUE_RULE_TYPES.find(([v]) => v === rule.type) || [rule.type, rule.type])[1]),
    el("td", {}, editable ? el("input", { id: `value-on-${i}`, value: rule.on, "aria-label": `Replace (text or /regex/), value rule ${i + 1}`,
      oninput: (e) => { rule.on = e.target.value; } }) : rule.on),
    el("td", {}, editable ? el("input", { id: `value-with-${i}`, value: rule.with, "aria-label": `With, value rule ${i + 1}`,
      oninput: (e) => { rule.with = e.target.value; } }) : rule.with),
    editable ? el("td", { class: "actions" },
      el("button", { type: "button", class: "secondary", "aria-label": `Move value rule ${i + 1} up`, disabled: i === 0, onclick: () => move(i, -1) }, "Up"),
      el("button", { type: "button", class: "secondary", "aria-label": `Move value rule ${i + 1} down`, disabled: i === valueRules.length - 1,
        onclick: () => move(i, 1) }, "Down"),
      remove("value rule", valueRules, i, drawValues)) : null))
    : [el("tr", {}, el("td", { colspan: editable ? "5" : "4" }, "No value rules."))]));
  drawObjects();
  drawValues();
  fillKnown();
  const save = async (kind, body, note) => {
    note.textContent = "Saving…";
    try {
      await api("PATCH", `/v4/deployments/${id}/${kind}ImportRules`, body);
      note.textContent = "Saved: the rules apply to the next import.";
    } catch (error) { note.textContent = error.message; }
  };
  const section = el("section", { id: "rules", "aria-labelledby": "rules-title" },
    el("h2", { id: "rules-title" }, "Import rules"), known,
    el("h3", {}, "Object rules: package connections to local ones"),
    el("table", { class: "rules" }, el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Connection uuid in the package"),
      el("th", { scope: "col" }, "Local connection"), editable ? el("th", { scope: "col" }, el("span", { class: "sr-only" }, "Actions")) : null)), objectBody),
    editable ? el("div", { class: "toolbar" },
      el("button", { id: "add-object-rule", type: "button", class: "secondary", onclick: () => { objectRules.push({ uuid: "", id: null }); drawObjects(); } }, "Add object rule"),
      el("button", { id: "save-object-rules", type: "button", onclick: () => {
        if (objectRules.some((r) => !r.uuid || !r.id)) { objectNote.textContent = "Every object rule needs a uuid and a local connection."; return; }
        save("object", objectRules.map((r) => ({ tableName: "connections", onCondition: { uuid: r.uuid }, withCondition: { id: r.id } })), objectNote);
      } }, "Save object rules")) : null,
    objectNote,
    el("h3", {}, "Value rules, applied in order"),
    el("table", { class: "rules" }, el("thead", {}, el("tr", {}, ["#", "Kind", "Replace (text or /regex/)", "With"].map((h) => el("th", { scope: "col" }, h)),
      editable ? el("th", { scope: "col" }, el("span", { class: "sr-only" }, "Actions")) : null)), valueBody),
    editable ? el("div", { class: "toolbar" },
      el("button", { id: "add-value-rule", type: "button", class: "secondary", onclick: () => { valueRules.push({ type: "fileLocation", on: "", with: "" }); drawValues(); } }, "Add value rule"),
      el("button", { id: "save-value-rules", type: "button", onclick: () => {
        if (valueRules.some((r) => !r.on)) { valueNote.textContent = "Every value rule needs something to replace."; return; }
        save("value", valueRules.map((r) => ({ type: r.type, on: r.on, with: r.with })), valueNote);
      } }, "Save value rules")) : null,
    valueNote);
  // A connection the dry run could not resolve: a new object rule for its uuid, its local connection to choose.
  section.addRule = (uuid, label) => {
    if (!suggestions.some((c) => c.uuid === uuid)) { suggestions.push({ uuid, label }); fillKnown(); }
    if (!objectRules.some((r) => r.uuid === uuid)) objectRules.push({ uuid, id: null });
    drawObjects();
    const row = objectRules.findIndex((r) => r.uuid === uuid);
    const select = document.getElementById(`object-local-${row}`);
    if (select) select.focus();
  };
  return section;
}

async function deploymentPage(id) {
  const deployment = await api("GET", `/v4/deployments/${id}?embed=releases`);
  const releases = deployment.releases.data;
  const active = releases.find((r) => r.active);
  const message = el("p", { class: "message", role: "alert" });
  const detail = el("div", { id: "detail" });
  const suggestions = [];
  const rules = await rulesEditor(id, suggestions);
  const activate = async (release) => {
    const older = active && release.id < active.id;
    if (!confirm(`${older ? "Roll back to" : "Activate"} release #${release.id}? Runs of ${deployment.name} will use it.`)) return;
    try { await api("PATCH", `/v4/releases/${release.id}`, { active: true }); await deploymentPage(id); }
    catch (error) { message.textContent = error.message; }
  };
  const rows = releases.map((r) => el("tr", { "data-release": r.id },
    el("td", {}, `#${r.id}`), el("td", {}, r.active ? el("strong", { class: "status Complete" }, "active") : ""),
    el("td", {}, r.primaryFlow ? el("a", { href: `#/flows/${r.primaryFlow.id}` }, (r.flows[0] && r.flows[0].name) || `flow #${r.primaryFlow.id}`) : ""),
    el("td", {}, r.notes || ""), el("td", {}, r.createdAt || ""),
    el("td", { class: "actions" },
      !r.active && active ? el("button", { type: "button", class: "secondary", "aria-label": `Diff against active: release #${r.id}`, onclick: async () => {
        try { detail.replaceChildren(diffView(await api("GET", `/v4/releases/${r.id}/diff?against=active`))); }
        catch (error) { message.textContent = error.message; }
      } }, "Diff against active") : null,
      !r.active && canEdit() ? el("button", { type: "button", onclick: () => activate(r) },
        active && r.id < active.id ? "Roll back to this" : "Activate") : null)));
  const file = el("input", { id: "package", type: "file", accept: ".zip" });
  const unresolvedList = (unresolved) => el("section", { id: "unresolved", "aria-label": "Unresolved connections" },
    el("p", { class: "message" }, `${unresolved.length} stage(s) use connections this instance lacks: the release would be stored, not activated.`),
    el("ul", {}, unresolved.map((u) => el("li", {}, `${u.flow} / ${u.stage}: ${u.name || u.connection} (${u.vendor || "?"}) `,
      canEdit() ? el("button", { type: "button", class: "secondary", "aria-label": `Add an object rule for ${u.name || u.connection}`,
        onclick: () => rules.addRule(u.connection, u.name || u.connection) }, "Add an object rule") : null))));
  const importer = canEdit() ? el("div", { class: "toolbar" }, el("label", { for: "package" }, "Package ZIP"), file,
    el("button", { id: "dry-run", type: "button", class: "secondary", onclick: async () => {
      if (!file.files.length) { message.textContent = "Choose a package ZIP first."; return; }
      try {
        const report = await upload(`/v4/deployments/${id}/releases/dryRun`, file.files[0]);
        const unresolved = report.unresolvedConnections || [];
        const changes = report.valueChanges || [];
        detail.replaceChildren(...[el("h2", {}, "Dry run: nothing is stored"),
          unresolved.length ? unresolvedList(unresolved) : null,
          changes.length ? el("section", { "aria-label": "Rule changes" }, el("h3", {}, "What the value rules change"),
            el("ul", {}, changes.map((c) => el("li", {}, `${c.flow} / ${c.stage} ${c.key}: ${c.from} → ${c.to}`)))) : null,
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
  // Run with overrides of the parameters the active release's primary flow declares.
  let runner = null;
  if (canEdit() && active) {
    let declared = {};
    if (active.primaryFlow) {
      try { declared = ((await api("GET", `/v4/flows/${active.primaryFlow.id}`)).document || {}).parameters || {}; }
      catch (error) { declared = {}; }
    }
    const overrides = overrideFields(declared);
    runner = el("div", {}, overrides.node, el("div", { class: "toolbar" }, el("button", { id: "run-deployment", type: "button", onclick: async () => {
      try {
        const started = await api("POST", `/v4/deployments/${id}/run`, { parameters: overrides.values() });
        location.hash = `#/jobs/${started.data[0].id}`;
      } catch (error) { message.textContent = error.message; }
    } }, "Run"), el("a", { href: `#/jobs?deploymentId=${id}` }, "Runs of this deployment")));
  }
  show(el("h1", {}, deployment.name), runner, message,
    el("h2", {}, "Releases"),
    el("table", { id: "releases" }, el("thead", {}, el("tr", {}, ["Release", "State", "Primary flow", "Notes", "Imported"].map((h) => el("th", { scope: "col" }, h)),
      el("th", { scope: "col" }, el("span", { class: "sr-only" }, "Actions")))), el("tbody", {}, rows)),
    importer ? el("h2", {}, "Import a package") : null, importer, detail, rules);
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
  return schedule.pipeline ? el("a", { href: `#/pipelines/${schedule.pipeline.id}` }, `pipeline ${schedule.pipeline.id}`) : "";
}

// "2026-01-05T03:00" from a datetime-local field, read as UTC.
const utc = (local) => (local.length === 16 ? `${local}:00Z` : `${local}Z`);

function locksTable(locks) {
  return locks.length ? el("table", { id: "locks" }, el("thead", {}, el("tr", {}, ["Lock", "Task", "Pipeline", "Held by run", "Since"]
    .map((h) => el("th", { scope: "col" }, h)))), el("tbody", {}, locks.map((l) => el("tr", { "data-lock": l.name }, el("td", {}, l.name),
    el("td", {}, l.task), el("td", {}, l.pipeline ? el("a", { href: `#/pipelines/${l.pipeline.id}` }, `#${l.pipeline.id}`) : ""),
    el("td", {}, l.run ? el("a", { href: `#/jobs/${l.run.id}` }, `#${l.run.id}`) : ""),
    el("td", {}, l.since || ""))))) : el("p", { id: "locks" }, "None.");
}

// Backfill a schedule: a range of logical dates (UTC), what to do with dates already run, how many at once.
function backfillForm(schedule, done) {
  const message = el("p", { class: "message", role: "alert" });
  const plan = el("div", { id: "backfill-plan" });
  const start = el("input", { type: "datetime-local", required: true });
  const end = el("input", { type: "datetime-local", required: true });
  const reprocess = el("select", {}, [["none", "Skip dates already run"], ["failed", "Rerun failed and canceled dates"], ["all", "Rerun every date"]]
    .map(([v, text]) => el("option", { value: v }, text)));
  const parallel = el("input", { type: "number", min: "1", max: "1000", value: "1" });
  const send = async (dryRun) => {
    if (!start.value || !end.value) { message.textContent = "Give the first and the last logical date."; return null; }
    message.textContent = "";
    try {
      return await api("POST", `/v4/schedules/${schedule.id}/backfills`, { start: utc(start.value), end: utc(end.value),
        reprocess: reprocess.value, maxActiveRuns: Number(parallel.value || 1), dryRun });
    } catch (error) { message.textContent = error.message; return null; }
  };
  const showPlan = (answer) => plan.replaceChildren(answer.plan.length ? el("table", { id: "plan" },
    el("caption", {}, answer.backfill ? `Backfill #${answer.backfill.id}: ${answer.backfill.status}` : "What the backfill would do (nothing started)"),
    el("thead", {}, el("tr", {}, ["Logical date", "Action", "Existing run"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, answer.plan.map((p) => el("tr", {}, el("td", {}, p.logicalDate), el("td", {}, p.action),
      el("td", {}, p.existingRun ? el("a", { href: `#/jobs/${p.existingRun.id ?? p.existingRun}` }, `#${p.existingRun.id ?? p.existingRun}`) : "")))))
    : el("p", {}, "No logical date of the schedule falls in that range."));
  return el("form", { id: "backfill-form", class: "form", "aria-label": `Backfill ${schedule.name}`, onsubmit: async (event) => {
    event.preventDefault();
    const answer = await send(false);
    if (answer) { showPlan(answer); await done(); }
  } },
  el("h2", {}, `Backfill ${schedule.name}`), message,
  field("First logical date (UTC)", start), field("Last logical date (UTC)", end),
  field("Dates already run", reprocess), field("Runs at a time", parallel),
  el("div", { class: "toolbar" },
    el("button", { type: "button", class: "secondary", id: "backfill-preview", onclick: async () => { const a = await send(true); if (a) showPlan(a); } }, "Preview plan"),
    el("button", { type: "submit", id: "backfill-start" }, "Start backfill")), plan);
}

async function schedulesPage() {
  const [schedules, locks, backfills] = await Promise.all([api("GET", "/v4/schedules?noLimit=true"), api("GET", "/v4/locks"),
    api("GET", "/v4/backfills?limit=20")]);
  const message = el("p", { class: "message", role: "alert" });
  const formHolder = el("div", { id: "backfill" });
  const backfillBody = el("tbody");
  const names = byId(schedules.data);
  const drawBackfills = (list) => backfillBody.replaceChildren(...list.map((b) => el("tr", { "data-backfill": b.id },
    el("td", {}, `#${b.id}`), el("td", {}, b.schedule ? names.get(b.schedule.id) || `#${b.schedule.id}` : ""),
    el("td", {}, `${b.start} – ${b.end}`), el("td", {}, b.reprocess), el("td", {}, el("span", { class: `status ${b.status}` }, b.status)),
    el("td", {}, b.nextLogicalDate || ""),
    el("td", {}, canEdit() && b.status === "Running" ? el("button", { type: "button", class: "secondary", "aria-label": `Cancel backfill #${b.id}`,
      onclick: async () => {
        try { await api("POST", `/v4/backfills/${b.id}/cancel`); await refreshBackfills(); } catch (error) { message.textContent = error.message; }
      } }, "Cancel") : null))));
  const refreshBackfills = async () => drawBackfills((await api("GET", "/v4/backfills?limit=20")).data);
  drawBackfills(backfills.data);
  const toggle = async (s) => {
    try { await api("POST", `/v4/schedules/${s.id}/${s.paused ? "resume" : "pause"}`); await schedulesPage(); }
    catch (error) { message.textContent = error.message; }
  };
  show(el("h1", {}, "Schedules"), message,
    el("table", { id: "schedules" }, el("thead", {}, el("tr", {}, ["Name", "Target", "Cron", "Next logical date",
      "Next start", "Last run"].map((h) => el("th", { scope: "col" }, h)), el("th", { scope: "col" }, el("span", { class: "sr-only" }, "Actions")))),
    el("tbody", {}, schedules.data.map((s) => el("tr", { "data-schedule": s.name },
      el("td", {}, s.name), el("td", {}, target(s)), el("td", {}, `${s.cron} (${s.timezone})`),
      el("td", {}, s.nextLogicalDate || ""), el("td", {}, s.paused ? "paused" : s.nextRunAt || ""),
      el("td", {}, s.lastRun ? el("a", { href: `#/jobs/${s.lastRun.id}` },
        el("span", { class: `status ${s.lastRun.status}` }, s.lastRun.status)) : ""),
      el("td", { class: "actions" }, el("a", { href: `#/jobs?scheduleId=${s.id}`, "aria-label": `Runs of ${s.name}` }, "Runs"),
        canEdit() ? [" ", el("button", { type: "button", class: "secondary", onclick: () => toggle(s) }, s.paused ? "Resume" : "Pause"),
          el("button", { type: "button", class: "secondary", "aria-label": `Backfill ${s.name}`, onclick: () => {
            formHolder.replaceChildren(backfillForm(s, refreshBackfills));
            formHolder.querySelector("input").focus();
          } }, "Backfill")] : null))))),
    formHolder,
    el("h2", {}, "Backfills"),
    el("table", { id: "backfills" }, el("thead", {}, el("tr", {}, ["Backfill", "Schedule", "Logical dates", "Dates already run", "Status",
      "Next logical date"].map((h) => el("th", { scope: "col" }, h)), el("th", { scope: "col" }, el("span", { class: "sr-only" }, "Actions")))), backfillBody),
    el("h2", {}, "Task locks held"), locksTable(locks.data));
}

// -- pipelines ----------------------------------------------------------------------------

async function pipelinesPage() {
  const list = (await api("GET", "/v4/pipelines?noLimit=true")).data;
  show(el("h1", {}, "Pipelines"), list.length ? el("table", { id: "pipelines" }, el("thead", {}, el("tr", {}, ["Name", "Tasks", "Description", "Updated"]
    .map((h) => el("th", { scope: "col" }, h)))),
  el("tbody", {}, list.map((p) => el("tr", {}, el("td", {}, el("a", { href: `#/pipelines/${p.id}` }, p.name)),
    el("td", {}, String(p.tasks.length)), el("td", {}, p.description || ""), el("td", {}, p.updatedAt || "")))))
    : el("p", {}, "No pipelines yet (create them with the API, the SDK or flowport pipelines)."));
}

// A pipeline's tasks as a graph (arrows from each task to those after it), coloured by a run's task states.
function taskGraph(tasks, states) {
  const stages = tasks.map((t) => ({ name: t.name, label: t.name, plugin: { name: t.type } }));
  const edges = tasks.flatMap((t) => (t.after || []).map((before) => ({ from: before, to: t.name })));
  const drawn = graph({ stages, edges }, [], null);
  drawn.setAttribute("aria-label", `Graph of ${tasks.length} tasks`);
  drawn.classList.add("tasks");
  for (const group of drawn.querySelectorAll("g.stage")) {
    const state = states.get(group.dataset.stage);
    group.removeAttribute("tabindex");
    if (!state) continue;
    group.classList.add(`task-${state}`);
    group.setAttribute("data-state", state);
    group.querySelector("title").textContent = `${group.dataset.stage}: ${state}`;
    group.append(svg("text", { x: W - 10, y: 42, class: "state", "text-anchor": "end" }, state));
  }
  return drawn;
}

async function pipelinePage(id, params) {
  const [pipeline, runs, locks] = await Promise.all([api("GET", `/v4/pipelines/${id}`),
    api("GET", `/v4/pipelineRuns?pipelineId=${id}&limit=20`), api("GET", "/v4/locks")]);
  const message = el("p", { class: "message", role: "alert" });
  const chosenId = params.get("run") || (runs.data[0] && String(runs.data[0].id));
  const holder = el("div", { id: "pipeline-run" });
  const canvas = el("div", { id: "canvas" }, taskGraph(pipeline.tasks, new Map()));
  const picker = runs.data.length ? choice("pipeline-run-choice", "Run", runs.data.map((r) => [r.id, `#${r.id} ${r.status} ${r.startedAt || r.createdAt || ""}`]), chosenId) : null;
  const drawRun = async () => {
    if (!picker) return false;
    const run = await api("GET", `/v4/pipelineRuns/${picker.select.value}`);
    const states = new Map((run.tasks || []).map((t) => [t.task, t.status]));
    picker.select.selectedOptions[0].textContent = `#${run.id} ${run.status} ${run.startedAt || run.createdAt || ""}`;
    canvas.replaceChildren(taskGraph(pipeline.tasks, states));
    holder.replaceChildren(
      el("p", {}, "Run ", el("a", { href: `#/jobs/${run.id}` }, `#${run.id}`), ": ",
        el("span", { id: "pipeline-run-status", class: `status ${run.status}` }, run.status), run.error ? ` — ${run.error}` : ""),
      el("table", { id: "task-states" }, el("thead", {}, el("tr", {}, ["Task", "Type", "Status", "Tries", "Job", "Message", "Started", "Finished"]
        .map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, (run.tasks || []).map((t) => el("tr", { "data-task": t.task }, el("td", {}, t.task), el("td", {}, t.type),
        el("td", {}, el("span", { class: `status ${t.status}` }, t.status)), el("td", {}, String(t.attempts)),
        el("td", {}, t.job ? el("a", { href: `#/jobs/${t.job.id}` }, `#${t.job.id}`) : ""), el("td", {}, t.message || ""),
        el("td", {}, t.startedAt || ""), el("td", {}, t.finishedAt || ""))))));
    return !FINAL.has(run.status);
  };
  if (picker) {
    picker.select.addEventListener("change", () => {
      history.replaceState(null, "", `#/pipelines/${id}?run=${picker.select.value}`);
      clearTimeout(timer);
      tick();
    });
  }
  const tick = async () => {
    try { if (await drawRun()) timer = setTimeout(tick, 1000); } catch (error) { message.textContent = error.message; }
  };
  const run = canEdit() ? el("button", { id: "run-pipeline", type: "button", onclick: async () => {
    try { const started = await api("POST", `/v4/pipelines/${id}/run`, {}); location.hash = `#/pipelines/${id}?run=${started.id}`; }
    catch (error) { message.textContent = error.message; }
  } }, "Run") : null;
  const held = locks.data.filter((l) => l.pipeline && String(l.pipeline.id) === String(id));
  show(el("h1", {}, pipeline.name), el("p", {}, pipeline.description || ""), el("div", { class: "toolbar" }, run), message,
    canvas, el("h2", {}, "Task states"), picker ? el("div", { class: "toolbar" }, picker.node) : el("p", {}, "No runs yet."), holder,
    el("h2", {}, "Task locks held by its runs"), locksTable(held));
  await tick();
}

// -- routing ------------------------------------------------------------------------------

async function route() {
  clearTimeout(timer);
  const hash = location.hash || "#/flows";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  let match;
  try {
    if ((match = hash.match(/^#\/flows\/(\d+)$/))) await flowPage(match[1]);
    else if ((match = hash.match(/^#\/jobs\/(\d+)$/))) await jobPage(match[1]);
    else if (path === "#/jobs") await jobsPage(params);
    else if ((match = path.match(/^#\/pipelines\/(\d+)$/))) await pipelinePage(match[1], params);
    else if (hash === "#/pipelines") await pipelinesPage();
    else if ((match = hash.match(/^#\/deployments\/(\d+)$/))) await deploymentPage(match[1]);
    else if (hash === "#/deployments") await deploymentsPage();
    else if ((match = hash.match(/^#\/connections\/(\d+)$/))) await connectionsPage(match[1]);
    else if (hash === "#/connections") await connectionsPage();
    else if (hash === "#/schedules") await schedulesPage();
    else await flowsPage();
  } catch (error) { fail(error); }
}

// The skip link moves the focus to the view (its #view address would otherwise be taken as a route).
document.querySelector("a.skip").addEventListener("click", (event) => {
  event.preventDefault();
  document.getElementById("view").focus();
});

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
