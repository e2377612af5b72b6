// stepup playground: the page over /api/v1 (see src/playground/api.rs).
// No framework and no build step: plain DOM, one state object, and a
// debounced /api/v1/evaluate call on every edit.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  disk: {},        // name -> text as read from disk
  files: {},       // name -> text being edited
  current: null,   // the open file
  diagnostics: [],
  levels: [],
  costs: {},       // the cost report of the last valid set
  presets: [],
  requests: [],
  write: false,
  last: null,      // the last /evaluate answer
  seq: 0,          // to drop answers to outdated calls
  decideSeq: 0,    // the latest call that asked for a decision
  schema: null,    // DecideRequest's fields, from /api/v1/schema (the proto)
};

// ---------------------------------------------------------------- helpers

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

async function api(path, body) {
  const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  let r;
  try { r = await fetch(path, init); } catch (_) {
    return { status: 0, body: { error: "the playground is not reachable: is `stepup playground` still running?" } };
  }
  let v = null;
  try { v = await r.json(); } catch (_) { v = { error: "the answer is not JSON" }; }
  return { status: r.status, body: v };
}

function isTest(name) { return /_test\.ya?ml$/.test(name); }

// ------------------------------------------------------------ highlighting

const CEL_TOKEN = /("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?u?\b)|(\b(?:true|false|null|in)\b)|([A-Za-z_][\w]*)(?=\s*\()|([A-Za-z_][\w.]*)|(&&|\|\||[!=<>]=?|[+\-*/%?:])|([()[\]{},])/g;

function highlightCel(text) {
  let out = "", last = 0;
  text.replace(CEL_TOKEN, (m, str, num, kw, fn, ident, op, punct, at) => {
    out += esc(text.slice(last, at));
    const cls = str ? "t-str" : num ? "t-num" : kw ? "t-kw" : fn ? "t-fn" : ident ? "t-var" : op ? "t-op" : "t-punct";
    out += `<span class="${cls}">${esc(m)}</span>`;
    last = at + m.length;
    return m;
  });
  return out + esc(text.slice(last));
}

function splitComment(line) {
  // A `#` starts a comment outside quotes, at the start or after a space.
  let q = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (q) { if (c === q) q = null; else if (c === "\\" && q === '"') i++; continue; }
    if (c === '"' || c === "'") q = c;
    else if (c === "#" && (i === 0 || /\s/.test(line[i - 1]))) return [line.slice(0, i), line.slice(i)];
  }
  return [line, ""];
}

function highlightScalar(v) {
  const t = v.trim();
  if (!t) return esc(v);
  if (/^(["']).*\1$/.test(t) || /^["']/.test(t)) return `<span class="t-str">${esc(v)}</span>`;
  if (/^-?\d+(\.\d+)?$/.test(t)) return `<span class="t-num">${esc(v)}</span>`;
  if (/^(true|false|null|~)$/.test(t)) return `<span class="t-kw">${esc(v)}</span>`;
  if (/^[[{]/.test(t)) return highlightCel(v);
  return esc(v);
}

let celBlock = -1; // indentation of a `when: >` block being highlighted as CEL

function highlightYamlLine(line) {
  const [code, comment] = splitComment(line);
  const indent = code.search(/\S/);
  let html;
  if (celBlock >= 0 && (indent > celBlock || code.trim() === "")) {
    html = highlightCel(code);
  } else {
    celBlock = -1;
    const m = /^(\s*(?:-\s+)?)([\w.\-]+|"[^"]*")(\s*:)(\s|$)(.*)$/.exec(code);
    if (m) {
      const [, lead, key, colon, sp, rest] = m;
      let value;
      if (key === "when" || key === "condition") {
        if (/^\s*[>|][-+]?\s*$/.test(rest)) { celBlock = lead.length; value = esc(rest); }
        else {
          const q = /^(\s*)(["'])(.*)\2(\s*)$/.exec(rest);
          value = q ? `${esc(q[1])}<span class="t-str">${esc(q[2])}</span>${highlightCel(q[3])}<span class="t-str">${esc(q[2])}</span>${esc(q[4])}` : highlightCel(rest);
        }
      } else {
        value = highlightScalar(rest);
      }
      html = `${esc(lead)}<span class="t-key">${esc(key)}</span><span class="t-punct">${esc(colon)}</span>${esc(sp)}${value}`;
    } else {
      const d = /^(\s*)(-\s+|---|\.\.\.)?(.*)$/.exec(code);
      html = esc(d[1]) + (d[2] ? `<span class="t-punct">${esc(d[2])}</span>` : "") + highlightScalar(d[3]);
    }
  }
  return html + (comment ? `<span class="t-com">${esc(comment)}</span>` : "");
}

function highlightYaml(text) {
  celBlock = -1;
  return text.split("\n").map(highlightYamlLine).join("\n");
}

// ---------------------------------------------------------------- editor

const editor = () => $("editor");

function diagnosticsOf(name) {
  return state.diagnostics.filter((d) => d.file === name && d.location);
}

function renderEditor() {
  const name = state.current;
  const text = state.files[name] ?? "";
  // Each condition's worst-case cost, after the line its `when` is on.
  const costs = new Map((state.costs.conditions || []).filter((c) => c.file === name).map((c) => [c.line, c]));
  const limit = state.costs.limit || 0;
  $("highlight").innerHTML = highlightYaml(text).split("\n").map((html, i) => {
    const c = costs.get(i + 1);
    if (!c) return html;
    const hot = limit && c.cost * 2 > limit ? " hot" : "";
    return `${html}<span class="t-cost${hot}">  cost ${c.cost}${limit ? ` of ${limit}` : ""}</span>`;
  }).join("\n") + "\n";
  const lines = text.split("\n");
  const diags = diagnosticsOf(name);
  const byLine = new Map();
  for (const d of diags) {
    const prev = byLine.get(d.location.line);
    if (!prev || d.severity === "error") byLine.set(d.location.line, d);
  }
  const gutter = $("gutter");
  gutter.replaceChildren(...lines.map((_, i) => {
    const d = byLine.get(i + 1);
    return el("div", { class: d ? d.severity : "", title: d ? d.message : null }, String(i + 1));
  }));
  // The marks layer: the same text, transparent, with the diagnostics'
  // ranges underlined.
  const marks = lines.map((line, i) => {
    const ds = diags.filter((d) => d.location.line === i + 1);
    if (!ds.length) return esc(line);
    const chars = Array.from(line);
    const d = ds.find((x) => x.severity === "error") || ds[0];
    const start = Math.max(0, d.location.column - 1);
    const end = Math.min(chars.length, start + Math.max(1, d.location.len || 1));
    if (start >= chars.length) return esc(line) + `<span class="m-${d.severity}"> </span>`;
    return esc(chars.slice(0, start).join("")) + `<span class="m-${d.severity}">${esc(chars.slice(start, end).join(""))}</span>` + esc(chars.slice(end).join(""));
  });
  $("marks").innerHTML = marks.join("\n") + "\n";
  syncScroll();
}

function syncScroll() {
  const t = editor();
  for (const id of ["highlight", "marks"]) { $(id).scrollTop = t.scrollTop; $(id).scrollLeft = t.scrollLeft; }
  $("gutter").scrollTop = t.scrollTop;
}

function renderTabs() {
  const tabs = $("tabs");
  const names = Object.keys(state.files).sort((a, b) => (isTest(a) - isTest(b)) || a.localeCompare(b));
  tabs.replaceChildren(...names.map((name) => {
    const errs = state.diagnostics.filter((d) => d.file === name);
    const sev = errs.some((d) => d.severity === "error") ? "error" : errs.length ? "warning" : state.files[name] !== state.disk[name] ? "edited" : null;
    return el("button", {
      role: "tab", type: "button", id: `tab-${name}`, "aria-selected": String(name === state.current),
      tabindex: name === state.current ? "0" : "-1", "aria-controls": "editor", "data-file": name,
      onclick: () => openFile(name),
    }, name, sev ? el("span", { class: `dot ${sev}`, "aria-label": sev === "edited" ? "edited" : `has ${sev}s` }) : null);
  }));
}

function openFile(name, line, column, len) {
  if (!(name in state.files)) return;
  state.current = name;
  const t = editor();
  t.value = state.files[name];
  renderTabs();
  renderEditor();
  if (line) gotoLine(line, column || 1, len || 0);
}

function gotoLine(line, column, len) {
  const t = editor();
  const lines = t.value.split("\n");
  let offset = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  const lineText = lines[line - 1] || "";
  const colOffset = Array.from(lineText).slice(0, column - 1).join("").length;
  const start = offset + colOffset;
  const end = start + Array.from(lineText.slice(colOffset)).slice(0, len).join("").length;
  t.focus();
  t.setSelectionRange(start, end);
  t.scrollTop = Math.max(0, (line - 5) * 20);
  syncScroll();
}

function onEdit() {
  state.files[state.current] = editor().value;
  renderEditor();
  renderTabs();
  scheduleEvaluate();
}

function tabKeys(e) {
  const t = editor();
  if (e.key === "Escape") { t.dataset.escaped = "1"; return; }
  if (e.key === "Tab" && !t.dataset.escaped && !e.shiftKey) {
    e.preventDefault();
    const { selectionStart: s, selectionEnd: end } = t;
    t.setRangeText("  ", s, end, "end");
    onEdit();
  }
  if (e.key !== "Tab") delete t.dataset.escaped;
}

function tabsKeys(e) {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  const i = tabs.indexOf(document.activeElement);
  if (i < 0) return;
  let j = null;
  if (e.key === "ArrowRight") j = (i + 1) % tabs.length;
  if (e.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
  if (e.key === "Home") j = 0;
  if (e.key === "End") j = tabs.length - 1;
  if (j === null) return;
  e.preventDefault();
  openFile(tabs[j].dataset.file);
  document.getElementById(`tab-${tabs[j].dataset.file}`).focus();
}

// --------------------------------------------------------------- problems

function suggestions(help) {
  const m = /did you mean (.*)\?/.exec(help || "");
  if (!m) return [];
  return [...m[1].matchAll(/`([^`]+)`/g)].map((x) => x[1]);
}

function applyFix(d, word) {
  const text = state.files[d.file];
  const lines = text.split("\n");
  const chars = Array.from(lines[d.location.line - 1] || "");
  const start = d.location.column - 1;
  chars.splice(start, Math.max(1, d.location.len || 1), word);
  lines[d.location.line - 1] = chars.join("");
  state.files[d.file] = lines.join("\n");
  openFile(d.file, d.location.line, d.location.column, Array.from(word).length);
  scheduleEvaluate(0);
}

function renderProblems() {
  const list = $("problems");
  const ds = state.diagnostics;
  $("problem-count").textContent = String(ds.length);
  list.replaceChildren(...ds.map((d) => {
    const where = d.file ? `${d.file}${d.location ? `:${d.location.line}:${d.location.column}` : ""}` : "";
    const fixes = d.location ? suggestions(d.help).map((w) => el("button", {
      type: "button", class: "fix", title: `Replace with ${w}`, onclick: () => applyFix(d, w),
    }, w)) : [];
    return el("li", { class: d.severity, "data-line": d.location ? d.location.line : null, "data-file": d.file || null },
      el("span", { class: `sev ${d.severity}` }, d.severity),
      where ? el("button", { type: "button", class: "goto", onclick: () => openFile(d.file, d.location?.line, d.location?.column, d.location?.len) }, where) : null,
      " ", el("code", {}, d.code), " ", d.message,
      d.help ? el("span", { class: "help" }, "help: ", d.help, ...fixes) : null);
  }));
}

// --------------------------------------------------------------- scenario

function readJson(id, errId, fallback) {
  const text = $(id).value.trim();
  if (!text) { $(errId).textContent = ""; return { ok: true, value: fallback }; }
  try {
    const v = JSON.parse(text);
    $(errId).textContent = "";
    return { ok: true, value: v };
  } catch (e) {
    $(errId).textContent = `Not JSON: ${e.message}`;
    return { ok: false };
  }
}

// ----------------------------------------------------------------- schema
// A field of /api/v1/schema: {name (JSON), proto, type, repeated?, and
// fields (message), values (enum), key and value (map)}.

function fieldNamed(fields, key) {
  return (fields || []).find((f) => f.name === key || f.proto === key);
}

function typeName(t) {
  const one = t.type === "message" || t.type === "struct" || t.type === "any" ? "object"
    : t.type === "map" ? `map of ${typeName(Object.assign({}, t.value, { repeated: false }))}`
    : t.type === "value" ? "any JSON value"
    : t.type === "list" ? "list"
    : t.type === "enum" ? `one of ${(t.values || []).join(", ")}`
    : t.type === "timestamp" ? "RFC 3339 timestamp"
    : t.type === "duration" ? "duration such as \"300s\""
    : t.type;
  return t.repeated ? `list of ${one}` : one;
}

function jsonKind(v) {
  return v === null ? "null" : Array.isArray(v) ? "a list" : typeof v === "object" ? "an object" : `${typeof v === "boolean" ? "bool" : typeof v} ${JSON.stringify(v)}`;
}

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i;

// Whether the JSON value `v` is one of type `t` (not a list of it), as
// proto3 JSON reads it.
function fits(v, t) {
  const object = typeof v === "object" && v !== null && !Array.isArray(v);
  switch (t.type) {
    case "string": case "bytes": return typeof v === "string";
    // 64-bit integers may be strings; "NaN" and "Infinity" are numbers too.
    case "number": return typeof v === "number" || (typeof v === "string" && v.trim() !== "" && !Number.isNaN(Number(v))) || ["NaN", "Infinity", "-Infinity"].includes(v);
    case "bool": return typeof v === "boolean";
    case "timestamp": return typeof v === "string" && RFC3339.test(v) && !Number.isNaN(Date.parse(v));
    case "duration": return typeof v === "string" && /^-?\d+(\.\d+)?s$/.test(v);
    case "enum": return (typeof v === "string" && (t.values || []).includes(v)) || Number.isInteger(v);
    case "message": case "map": case "struct": case "any": return object;
    case "list": return Array.isArray(v);
    default: return true; // "value": any JSON
  }
}

function checkFields(req) {
  // Unknown field names, with the closest known one, and values of the
  // wrong type, by the schema of the proto.
  if (!state.schema) return [];
  const problems = [];
  const value = (v, t, at) => {
    if (v === null) return; // proto3 JSON: the default
    if (t.repeated) {
      if (!Array.isArray(v)) { problems.push(`\`${at}\`: expected a ${typeName(t)}, got ${jsonKind(v)}`); return; }
      const one = Object.assign({}, t, { repeated: false });
      v.forEach((x, i) => value(x, one, `${at}[${i}]`));
      return;
    }
    if (!fits(v, t)) { problems.push(`\`${at}\`: expected ${typeName(t)}, got ${jsonKind(v)}`); return; }
    if (t.type === "message" && t.fields) object(v, t.fields, at);
    if (t.type === "map") for (const [k, x] of Object.entries(v)) value(x, t.value, `${at}.${k}`);
  };
  const object = (obj, fields, path) => {
    for (const [k, v] of Object.entries(obj)) {
      const f = fieldNamed(fields, k);
      if (f) { value(v, f, path ? `${path}.${k}` : k); continue; }
      const near = fields.map((n) => n.name).filter((n) => distance(n, k) <= Math.max(1, Math.floor(k.length / 3)));
      problems.push(`unknown field \`${path ? path + "." : ""}${k}\`${near.length ? ` (did you mean \`${near[0]}\`?)` : ""}`);
    }
  };
  if (typeof req !== "object" || req === null || Array.isArray(req)) return [`the request must be a JSON object, got ${jsonKind(req)}`];
  object(req, state.schema.fields, "");
  return problems;
}

function distance(a, b) {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) for (let j = 1; j <= b.length; j++)
    d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length][b.length];
}

// The objects and lists enclosing the end of `text` (a JSON prefix),
// outermost first: {key, list}, `key` the field whose value it is (null
// for the request itself and inside a list).
function enclosing(text) {
  const stack = [];
  let key = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (/^\s*:/.test(text.slice(j + 1, j + 40))) key = text.slice(i + 1, j);
      i = j;
    } else if (c === "{" || c === "[") { stack.push({ key, list: c === "[" }); key = null; }
    else if (c === ",") key = null;
    else if (c === "}" || c === "]") { stack.pop(); key = null; }
  }
  return stack;
}

// The fields the schema allows where `before` ends: those of the message
// the innermost object is, none in a map, a list or free-form JSON.
function fieldsAt(before) {
  if (!state.schema) return [];
  const stack = enclosing(before);
  if (!stack.length || stack[0].list) return [];
  let here = { type: "message", fields: state.schema.fields };
  for (const c of stack.slice(1)) {
    let t;
    if (here.repeated) t = c.key === null ? Object.assign({}, here, { repeated: false }) : null;
    else if (here.type === "message") t = c.key === null ? null : fieldNamed(here.fields, c.key);
    else if (here.type === "map") t = c.key === null ? null : here.value;
    if (!t || c.list !== Boolean(t.repeated)) return [];
    here = t;
  }
  return here.type === "message" && !here.repeated ? here.fields || [] : [];
}

function showFields(fields) {
  $("field-list").textContent = fields.length ? fields.map((f) => `${f.name} (${typeName(f)})`).join(", ") : "none here";
}

function completeField(e) {
  // Ctrl+Space completes the field name being typed (after a `"`), from
  // the fields of the object it is in.
  if (!(e.key === " " && (e.ctrlKey || e.metaKey))) return;
  e.preventDefault();
  const t = $("request");
  const before = t.value.slice(0, t.selectionStart);
  const m = /"([A-Za-z]*)$/.exec(before);
  const fields = fieldsAt(m ? before.slice(0, -m[0].length) : before);
  if (!m) { showFields(fields); return; }
  const matches = fields.filter((f) => f.name.startsWith(m[1]));
  if (matches.length === 1) {
    t.setRangeText(`${matches[0].name.slice(m[1].length)}": `, t.selectionStart, t.selectionEnd, "end");
    scheduleEvaluate();
  }
  showFields(matches.length ? matches : fields);
}

function nowValue() {
  const v = $("now").value;
  if (!v) return null;
  return new Date(v + (v.length === 16 ? ":00" : "") + "Z").toISOString().replace(/\.\d{3}Z$/, "Z");
}

function setNow(iso) {
  if (!iso) return;
  $("now").value = iso.replace(/Z$/, "").replace(/\.\d+$/, "").slice(0, 19);
}

function scenario() {
  const req = readJson("request", "request-error", null);
  const hist = readJson("history", "history-error", []);
  if (!req.ok || !hist.ok) return null;
  if (req.value) {
    const unknown = checkFields(req.value);
    if (unknown.length) $("request-error").textContent = unknown.join("; ");
  }
  $("history-count").textContent = `(${Array.isArray(hist.value) ? hist.value.length : 0} events)`;
  return { request: req.value, now: nowValue(), history: hist.value };
}

function setRequest(req) { $("request").value = JSON.stringify(req, null, 2); }
function setHistory(h) { $("history").value = h && h.length ? JSON.stringify(h, null, 1) : ""; }
function currentRequest() { const r = readJson("request", "request-error", {}); return r.ok ? (r.value || {}) : null; }
function currentHistory() { const r = readJson("history", "history-error", []); return r.ok && Array.isArray(r.value) ? r.value : null; }

// --------------------------------------------------------------- evaluate

let pending = null;
const debounced = debounce(() => evaluate(), 350);
function scheduleEvaluate(ms) {
  if (ms === 0) { evaluate(); return; }
  debounced();
}

async function evaluate(force) {
  const s = scenario();
  const body = { files: state.files };
  const decide = force || $("auto").checked;
  if (s && decide) Object.assign(body, s);
  // Answers to outdated calls are dropped: the diagnostics of all but the
  // latest call, the decision of all but the latest deciding call.
  const seq = ++state.seq;
  if (decide) state.decideSeq = seq;
  const r = await api("/api/v1/evaluate", body);
  if (seq === state.seq) {
    if (r.status !== 200) {
      state.diagnostics = [{ severity: "error", code: "request", message: r.body.error || `HTTP ${r.status}` }];
    } else {
      state.diagnostics = r.body.diagnostics || [];
      state.levels = r.body.levels || state.levels;
      if (r.body.costs) state.costs = r.body.costs;
      $("revision").textContent = r.body.revision ? r.body.revision.slice(0, 19) + "…" : "invalid set";
    }
    renderProblems();
    renderTabs();
    renderEditor();
  }
  if (decide && seq === state.decideSeq && r.status === 200) {
    state.last = r.body;
    renderDecision(r.body);
  }
}

// --------------------------------------------------------------- decision

function outcomeName(o) { return String(o || "").replace(/^OUTCOME_/, "").toLowerCase(); }

function ruleLink(id) {
  return el("a", { class: "rule", href: `#rule-${id}`, "data-rule": id, onclick: (e) => { e.preventDefault(); gotoRule(id); } }, id);
}

function findRule(id) {
  const re = new RegExp(`^\\s*(?:-\\s+)?id:\\s*["']?${id.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}["']?\\s*(?:#.*)?$`);
  for (const name of Object.keys(state.files).filter((n) => !isTest(n)).sort()) {
    const lines = state.files[name].split("\n");
    for (let i = 0; i < lines.length; i++) if (re.test(lines[i])) return { file: name, line: i + 1, column: lines[i].indexOf(id) + 1 };
  }
  return null;
}

function gotoRule(id) {
  const at = findRule(id);
  if (at) openFile(at.file, at.line, at.column, id.length);
}

function table(head, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", c && c.cls ? { class: c.cls } : {}, c && c.node !== undefined ? c.node : c))))));
}

function renderDecision(v) {
  const box = $("decision");
  const stepup = $("stepup");
  if (v.valid === false) {
    box.replaceChildren(el("p", { class: "empty" }, "The set has errors: fix them to decide (see Problems)."));
    stepup.hidden = true;
    return;
  }
  if (v.scenario) {
    box.replaceChildren(el("p", { class: "error-text" }, "The scenario cannot be decided:"),
      el("ul", {}, v.scenario.map((p) => el("li", {}, p.message, p.help ? ` — ${p.help}` : ""))));
    stepup.hidden = true;
    return;
  }
  const d = v.decision;
  if (!d) { box.replaceChildren(el("p", { class: "empty" }, "Pick a preset or write a request, then decide.")); stepup.hidden = true; return; }
  const o = outcomeName(d.outcome);
  const parts = [
    el("p", {}, el("span", { id: "outcome", class: `outcome ${o}`, "data-outcome": o }, o.toUpperCase()),
      " ", el("span", { class: "decision-meta" }, `at ${v.now} · risk ${d.risk?.score ?? 0} · ${v.elapsed_us} µs`)),
  ];
  if ((d.requirements || []).length) {
    parts.push(el("h3", {}, "Requirements"), table(["rule", "level", "methods", "max age"],
      d.requirements.map((r) => [{ node: ruleLink(r.ruleId) }, r.level || "", (r.methods || []).join(" "), r.maxAge || ""])));
  }
  if (d.wwwAuthenticate) {
    parts.push(el("h3", {}, "WWW-Authenticate"), el("pre", { class: "www", id: "www-authenticate" }, d.wwwAuthenticate));
  }
  if ((d.reasons || []).length) {
    parts.push(el("h3", {}, "Reasons"), table(["rule", "effect", "message"],
      d.reasons.map((r) => [{ node: ruleLink(r.ruleId) }, String(r.effect || "").replace(/^EFFECT_/, "").toLowerCase(), r.message || ""])));
  }
  const max = Math.max(1, ...(v.risk || []).map((s) => s.score));
  parts.push(el("h3", {}, `Risk ${d.risk?.score ?? 0}`), table(["signal", "score", ""],
    (v.risk || []).map((s) => [{ node: ruleLink(s.signal) }, { node: String(s.score), cls: s.fired ? "fired" : "notfired" },
      { cls: "bar-cell", node: el("div", { class: "riskbar", role: "img", "aria-label": s.fired ? `fired, adds ${s.score}` : "did not fire" },
        el("span", { style: null })) }])));
  if ((d.shadow || []).length) {
    parts.push(el("h3", {}, "Shadow rules"), table(["rule", "effect", "satisfied"],
      d.shadow.map((s) => [{ node: ruleLink(s.ruleId) }, String(s.effect || "").replace(/^EFFECT_/, "").toLowerCase(), s.satisfied ? "yes" : "no"])));
  }
  if ((d.errors || []).length) {
    parts.push(el("h3", {}, "Condition errors"), table(["id", "error"], d.errors.map((e) => [{ node: ruleLink(e.id || e.ruleId || "") }, e.message || ""])));
  }
  const trace = (d.trace || []).filter((t) => !String(t.detail || "").startsWith("not considered"));
  parts.push(el("details", { class: "trace" }, el("summary", {}, `Explain trace (${trace.length} evaluated)`),
    table(["", "kind", "id", "why"], trace.map((t) => [t.fired ? { node: "●", cls: "fired" } : { node: "○", cls: "notfired" }, t.kind, { node: ruleLink(t.id) }, { node: t.detail || "", cls: "detail" }]))));
  box.replaceChildren(...parts);
  // Bar widths after insertion (no inline styles in the markup: CSP).
  box.querySelectorAll(".riskbar span").forEach((span, i) => {
    const s = (v.risk || [])[i];
    span.style.width = s && s.fired ? `${Math.round((100 * s.score) / max)}%` : "0";
  });
  renderStepUp(d, o);
  if (!$("save-name").dataset.touched) {
    const req = currentRequest() || {};
    $("save-name").value = `${req.action || "request"} is ${o}`;
  }
  $("save-outcome").value = o;
}

function renderStepUp(d, o) {
  const box = $("stepup");
  if (o !== "challenge") { box.hidden = true; return; }
  box.hidden = false;
  const want = (d.requirements || [])[0] || {};
  const select = $("stepup-level");
  select.replaceChildren(...state.levels.map((l) => el("option", { value: l.name, selected: l.name === want.level }, `${l.name} (${l.acr[0]})`)));
  const methods = want.methods && want.methods.length ? ["pwd", want.methods[0]] : ["pwd", "otp"];
  $("stepup-methods").value = methods.join(" ");
}

function completeStepUp() {
  const req = currentRequest();
  if (!req) return;
  const level = state.levels.find((l) => l.name === $("stepup-level").value);
  req.session = req.session || {};
  if (level) req.session.acr = level.acr[0];
  req.session.amr = $("stepup-methods").value.split(/[\s,]+/).filter(Boolean);
  req.session.authTime = nowValue() || new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  delete req.time;
  setRequest(req);
  // Show the new outcome: the simulator sits below it.
  evaluate(true).then(() => { const o = $("outcome"); if (o) o.scrollIntoView({ block: "nearest" }); });
}

function advance(seconds) {
  const now = nowValue() || new Date().toISOString();
  setNow(new Date(Date.parse(now) + seconds * 1000).toISOString());
  const req = currentRequest();
  if (req && req.time) { delete req.time; setRequest(req); }
  evaluate(true);
}

// ----------------------------------------------------------------- history

function addHistory(entries, change) {
  const h = currentHistory();
  if (!h) return;
  const req = currentRequest();
  if (change && req) { change(req); setRequest(req); }
  setHistory(h.concat(entries));
  evaluate(true);
}

function simulate(kind) {
  const req = currentRequest() || {};
  if (kind === "refunds") {
    const n = Math.max(1, Math.min(100, Number($("refund-count").value) || 1));
    const step = Math.max(1, Math.floor(55 / n));
    addHistory(Array.from({ length: n }, (_, i) => ({ ago: `${55 - i * step}m`, request: { action: "payments.refund" } })));
  } else if (kind === "device") {
    const old = (req.device && req.device.id ? req.device.id : "d-1") + "-previous";
    addHistory([{ ago: "2d", request: { action: "orders.list", device: { id: old, trusted: true } } }],
      (r) => { r.device = Object.assign({}, r.device, { id: `d-new-${Date.now() % 10000}`, trusted: false }); });
  } else if (kind === "trip") {
    addHistory([{ ago: "45m", request: { action: "orders.list", network: { country: "DE", attributes: { lat: 52.52, lon: 13.405 } } } }],
      (r) => { r.network = Object.assign({}, r.network, { country: "AU", attributes: Object.assign({}, r.network && r.network.attributes, { lat: -33.87, lon: 151.21 }) }); });
  } else if (kind === "failed") {
    addHistory([{ ago: "10m", stepup: "failed" }]);
  } else if (kind === "clear") {
    setHistory([]);
    evaluate(true);
  }
}

// ------------------------------------------------------------------ tests

async function runTests() {
  $("test-summary").textContent = "running…";
  const r = await api("/api/v1/test", { files: state.files });
  const list = $("test-results");
  if (r.status !== 200) { $("test-summary").textContent = r.body.error || `HTTP ${r.status}`; return; }
  const v = r.body;
  if (!v.valid) {
    $("test-summary").textContent = `the ${v.diagnostics.some((d) => isTest(d.file || "")) ? "suites are" : "set is"} invalid: see Problems`;
    state.diagnostics = v.diagnostics;
    renderProblems(); renderTabs(); renderEditor();
    list.replaceChildren();
    return;
  }
  if (v.presets) { state.presets = v.presets; renderPresets(); }
  $("test-summary").replaceChildren(el("span", { class: v.failed ? "fail" : "pass", id: "test-outcome", "data-failed": String(v.failed) }, `${v.passed} passed, ${v.failed} failed`));
  const cases = v.cases.slice().sort((a, b) => a.passed - b.passed);
  list.replaceChildren(...cases.map((c) => el("li", {},
    el("span", { class: c.passed ? "pass" : "fail", "aria-label": c.passed ? "passed" : "failed" }, c.passed ? "✓ " : "✗ "),
    el("a", { href: "#", class: "rule", onclick: (e) => { e.preventDefault(); openFile(c.file, c.line); } }, `${c.file}:${c.line}`),
    " ", `${c.suite} › ${c.case}`,
    c.passed ? null : el("span", { class: "hint" }, " — ", c.checks.filter((k) => !k.ok).map((k) => `${k.field}: expected ${JSON.stringify(k.expected)}, got ${JSON.stringify(k.actual)}`).join("; ")))));
  const cov = v.coverage || { rules: [], signals: [] };
  const unmatched = cov.rules.filter((r) => r.cases === 0);
  $("coverage").replaceChildren(
    el("p", {}, `${cov.rules.length - unmatched.length} of ${cov.rules.length} rules matched by a case.`),
    unmatched.length ? el("p", {}, "Unmatched: ", ...unmatched.map((r) => [ruleLink(r.id), " "])) : null,
    table(["rule or signal", "cases"], cov.rules.concat(cov.signals).map((r) => [{ node: ruleLink(r.id) }, String(r.cases)])));
}

// ------------------------------------------------------------------- save

function caseObject() {
  const s = scenario();
  if (!s || !s.request) return null;
  const c = { name: $("save-name").value.trim() || "playground case", now: s.now, request: s.request };
  if (Array.isArray(s.history) && s.history.length) c.history = s.history;
  c.expect = { outcome: $("save-outcome").value };
  const d = state.last && state.last.decision;
  if ($("save-reasons").checked && d && outcomeName(d.outcome) === c.expect.outcome) {
    c.expect.reasons = (d.reasons || []).map((r) => r.ruleId);
  }
  return c;
}

function caseYaml(c) {
  return ["name", "now", "request", "history", "expect"].filter((k) => c[k] !== undefined)
    .map((k, i) => `${i ? "    " : "  - "}${k}: ${JSON.stringify(c[k])}`).join("\n") + "\n";
}

function showYaml() {
  const c = caseObject();
  if (!c) { $("save-status").textContent = "Write a request first."; return null; }
  const yaml = caseYaml(c);
  $("save-yaml").hidden = false;
  $("save-yaml").textContent = yaml;
  return yaml;
}

async function saveTest() {
  const c = caseObject();
  const status = $("save-status");
  if (!c) { status.textContent = "Write a request first."; return; }
  const file = $("save-file").value.trim();
  const r = await api("/api/v1/save-test", { file, case: c });
  if (r.status === 200) {
    status.className = "ok";
    status.textContent = `Saved to ${r.body.saved}.`;
    state.files[file] = r.body.text;
    state.disk[file] = r.body.text;
    renderTabs();
  } else {
    status.className = "err";
    status.textContent = r.body.error || `HTTP ${r.status}`;
    showYaml();
  }
}

async function saveFile() {
  const name = state.current;
  const status = $("file-status");
  const r = await api("/api/v1/save-file", { file: name, text: state.files[name] });
  if (r.status === 200) {
    state.disk[name] = state.files[name];
    status.className = "ok";
    status.textContent = `Saved ${name}.`;
    renderTabs();
  } else {
    status.className = "err";
    status.textContent = r.body.error || `HTTP ${r.status}`;
  }
}

function download(name, text, type) {
  const a = el("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

function tar(files) {
  // A ustar archive of the edited files: 512-byte headers, padded bodies.
  const enc = new TextEncoder();
  const blocks = [];
  const field = (buf, off, len, s) => { const b = enc.encode(s); buf.set(b.slice(0, len), off); };
  const octal = (n, len) => n.toString(8).padStart(len - 1, "0") + "\0";
  for (const [name, text] of Object.entries(files)) {
    const body = enc.encode(text);
    const h = new Uint8Array(512);
    field(h, 0, 100, name);
    field(h, 100, 8, octal(0o644, 8));
    field(h, 108, 8, octal(0, 8));
    field(h, 116, 8, octal(0, 8));
    field(h, 124, 12, octal(body.length, 12));
    field(h, 136, 12, octal(Math.floor(Date.now() / 1000), 12));
    field(h, 148, 8, "        ");
    field(h, 156, 1, "0");
    field(h, 257, 6, "ustar\0");
    field(h, 263, 2, "00");
    const sum = h.reduce((a, b) => a + b, 0);
    field(h, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
    blocks.push(h, body, new Uint8Array((512 - (body.length % 512)) % 512));
  }
  blocks.push(new Uint8Array(1024));
  return new Blob(blocks, { type: "application/x-tar" });
}

// ------------------------------------------------------------------- start

function loadPreset(value) {
  if (!value) return;
  const [kind, i] = value.split(":");
  const p = (kind === "case" ? state.presets : state.requests)[Number(i)];
  if (!p) return;
  setRequest(p.request);
  if (p.now) setNow(p.now);
  setHistory(p.history || []);
  $("save-name").dataset.touched = "";
  evaluate(true);
}

function renderPresets() {
  const select = $("preset");
  const groups = [];
  if (state.presets.length) groups.push(el("optgroup", { label: "Test cases" }, state.presets.map((p, i) => el("option", { value: `case:${i}` }, p.name))));
  if (state.requests.length) groups.push(el("optgroup", { label: "Replay log" }, state.requests.map((p, i) => el("option", { value: `req:${i}` }, `${p.request.action || "?"} — ${p.name}`))));
  select.replaceChildren(el("option", { value: "" }, "Choose a test case or a logged request…"), ...groups);
}

async function load() {
  const [r, schema] = await Promise.all([api("/api/v1/files"), api("/api/v1/schema")]);
  if (schema.status === 200 && Array.isArray(schema.body.fields)) {
    state.schema = schema.body;
    showFields(state.schema.fields);
  } else {
    $("field-list").textContent = `unavailable (${schema.body.error || `HTTP ${schema.status}`}): field names and types are not checked here`;
  }
  if (r.status !== 200) { $("decision").textContent = r.body.error || "cannot load the files"; return; }
  const v = r.body;
  state.disk = Object.assign({}, v.files);
  state.files = Object.assign({}, v.files);
  state.presets = v.presets || [];
  state.requests = v.requests || [];
  state.write = v.write;
  $("dir").textContent = v.dir;
  $("save-test").disabled = !v.write;
  $("write-file").disabled = !v.write;
  if (!v.write) $("write-file").title = "Start the playground with --write to save files; Download set saves a copy";
  $("save-test").title = v.write ? "Append the case to the file" : "Start the playground with --write to save; copy or download the YAML instead";
  renderPresets();
  const first = Object.keys(state.files).filter((n) => !isTest(n)).sort()[0] || Object.keys(state.files)[0];
  openFile(first);
  if (!$("now").value) setNow(new Date().toISOString());
  evaluate();
}

function init() {
  const t = editor();
  t.addEventListener("input", onEdit);
  t.addEventListener("scroll", syncScroll);
  t.addEventListener("keydown", tabKeys);
  $("tabs").addEventListener("keydown", tabsKeys);
  // Ctrl+Enter decides from anywhere.
  document.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); evaluate(true); } });
  for (const id of ["request", "history", "now"]) $(id).addEventListener("input", () => scheduleEvaluate());
  $("request").addEventListener("keydown", completeField);
  $("preset").addEventListener("change", (e) => loadPreset(e.target.value));
  $("decide").addEventListener("click", () => evaluate(true));
  $("stepup-complete").addEventListener("click", completeStepUp);
  document.querySelectorAll("[data-advance]").forEach((b) => b.addEventListener("click", () => advance(Number(b.dataset.advance))));
  $("now-real").addEventListener("click", () => { setNow(new Date().toISOString()); evaluate(true); });
  $("sim-refunds").addEventListener("click", () => simulate("refunds"));
  $("sim-device").addEventListener("click", () => simulate("device"));
  $("sim-trip").addEventListener("click", () => simulate("trip"));
  $("sim-failed").addEventListener("click", () => simulate("failed"));
  $("sim-clear").addEventListener("click", () => simulate("clear"));
  $("run-tests").addEventListener("click", runTests);
  $("write-file").addEventListener("click", saveFile);
  $("save-test").addEventListener("click", saveTest);
  $("save-name").addEventListener("input", () => { $("save-name").dataset.touched = "1"; });
  $("copy-yaml").addEventListener("click", async () => {
    const yaml = showYaml();
    if (yaml && navigator.clipboard) { try { await navigator.clipboard.writeText(yaml); $("save-status").textContent = "Copied."; } catch (_) { /* shown below */ } }
  });
  $("download-yaml").addEventListener("click", () => { const y = showYaml(); if (y) download("case.yaml", y, "text/yaml"); });
  $("download-set").addEventListener("click", () => download("policies.tar", tar(state.files), "application/x-tar"));
  $("reset-files").addEventListener("click", () => { state.files = Object.assign({}, state.disk); openFile(state.current in state.files ? state.current : Object.keys(state.files)[0]); evaluate(); });
  load();
}

document.addEventListener("DOMContentLoaded", init);
