// What changed between two versions of a context, or between a fork and its parent: the
// server's diff (ids of added, removed, edited and redacted messages; metadata and window
// changes), shown side by side with the content of both states.

import { contextHref, contextTabs, fill, h } from "./dom.js";
import { get } from "./api.js";
import { messagesAt } from "./pages.js";
import { json, messageText, number, shortId } from "./format.js";

const MAX_ROWS = 500;

export async function render(app, parts, query) {
  const id = parts[1];
  const path = `/contexts/${encodeURIComponent(id)}`;
  const [newest, oldest] = await Promise.all([
    get(path + "/events", { direction: "backward", limit: 1 }),
    get(path + "/events", { limit: 1 }),
  ]);
  if (!app.current()) return;
  const latest = newest.events.length ? newest.events[0].version : 1;
  const first = oldest.events[0];
  const fork = first && first.type === "context.forked" ? first.data : null;
  const parentMode = query.get("parent") === "1";
  const clamp = (v, fallback) => (Number.isInteger(v) && v >= 1 && v <= latest ? v : fallback);
  const from = clamp(Number(query.get("from")), Math.max(1, latest - 1));
  const to = clamp(Number(query.get("to")), latest);
  const pv = Number(query.get("pv")) || null;

  const fromInput = h("input", { type: "number", min: "1", max: String(latest), value: String(from), id: "from", "aria-label": "from version" });
  const toInput = h("input", { type: "number", min: "1", max: String(latest), value: String(to), id: "to", "aria-label": "to version" });
  const form = h(
    "form",
    {
      class: "versions",
      onsubmit: (event) => {
        event.preventDefault();
        location.hash = contextHref(id, "/diff", { from: fromInput.value, to: toInput.value });
      },
    },
    h("label", { for: "from" }, "From version "),
    fromInput,
    h("label", { for: "to" }, " to version "),
    toInput,
    h("button", { type: "submit" }, "Compare"),
    fork ? h("a", { href: contextHref(id, "/diff", { parent: 1, pv: fork.parent_version }), class: "vs-parent" }, `Fork vs parent at the fork point (v${fork.parent_version})`) : null,
    fork ? h("a", { href: contextHref(id, "/diff", { parent: 1 }) }, "Fork vs parent now") : null,
  );
  const body = h("div", { class: "diffbody" }, h("p", { class: "muted loading" }, "Comparing…"));
  fill(app.main, h("div", { class: "ctxhead" }, h("h1", null, "Context ", h("span", { class: "mono" }, id))), contextTabs(id, "diff"), form, body);

  const d = parentMode
    ? await get(path + "/diff/parent", pv ? { parent_version: pv } : {})
    : await get(path + "/diff", { from, to });
  // Only the messages that changed are read (a page at a time, newest first), not both
  // states whole.
  const [a, b] = await Promise.all([
    messagesAt(d.from_context, d.from_version, [...d.removed, ...d.edited, ...d.redacted]),
    messagesAt(d.to_context, d.to_version, [...d.added, ...d.edited, ...d.redacted]),
  ]);
  if (!app.current()) return;
  fill(body, summary(d, a, b), sideBySide(d, a, b), metadata(d), windowChanges(d), summaries(d));
}

function side(context, version, self) {
  return context === self ? `v${version}` : `${shortId(context)} v${version}`;
}

function summary(d, a, b) {
  const chip = (n, what, cls) => (n ? h("span", { class: "chip " + cls }, `${n} ${what}`) : null);
  const unchanged = b.total - d.added.length - d.edited.length - d.redacted.length;
  const none = !(d.added.length || d.removed.length || d.edited.length || d.redacted.length || d.metadata.length || d.window.length || d.summaries_added.length || d.summaries_removed.length || d.deleted);
  return h(
    "p",
    { class: "diffsum" },
    h("strong", null, `${side(d.from_context, d.from_version, d.to_context)} → ${side(d.to_context, d.to_version, d.from_context)}: `),
    none ? "no changes" : null,
    chip(d.added.length, "added", "added"),
    chip(d.removed.length, "removed", "removed"),
    chip(d.edited.length, "edited", "edited"),
    chip(d.redacted.length, "redacted", "redacted"),
    chip(d.metadata.length, "metadata changes", "meta"),
    chip(d.window.length, "window changes", "meta"),
    chip(d.summaries_added.length, "summaries added", "added"),
    chip(d.summaries_removed.length, "summaries removed", "removed"),
    d.deleted ? h("span", { class: "chip removed" }, `deleted: ${d.deleted[0]} → ${d.deleted[1]}`) : null,
    h("span", { class: "muted" }, ` · ${number(Math.max(0, unchanged))} messages unchanged`),
  );
}

// ``found``: [message, place]; null: nothing on this side; undefined: not read (a change
// far back in a long context).
function cell(found) {
  if (found === null) return h("td", { class: "none" });
  if (found === undefined) return h("td", null, h("div", { class: "muted small" }, "not read: far back in a long context"));
  const [m, seq] = found;
  return h(
    "td",
    null,
    h("div", { class: "muted small" }, `${m.role}${m.name ? " " + m.name : ""} · #${seq + 1} · ${shortId(m.id)}${m.redacted ? " · redacted" : ""}`),
    h("div", { class: "content" }, messageText(m)),
  );
}

function places(read) {
  return new Map([...read.known].map(([seq, m]) => [m.id, [m, seq]]));
}

function sideBySide(d, a, b) {
  const inA = places(a);
  const inB = places(b);
  const at = (map, id) => (map.has(id) ? map.get(id)[1] : Infinity);
  const changed = [
    ...d.added.map((id) => [id, "added"]),
    ...d.edited.map((id) => [id, "edited"]),
    ...d.redacted.map((id) => [id, "redacted"]),
  ].sort((x, y) => at(inB, x[0]) - at(inB, y[0]));
  const rows = changed.map(([id, kind]) => h("tr", { class: kind, dataset: { id } }, h("th", null, kind), cell(kind === "added" ? null : inA.get(id)), cell(inB.get(id))));
  const removed = [...d.removed].sort((x, y) => at(inA, x) - at(inA, y));
  for (const id of removed) rows.push(h("tr", { class: "removed", dataset: { id } }, h("th", null, "removed"), cell(inA.get(id)), cell(null)));
  if (!rows.length) return null;
  const shown = rows.slice(0, MAX_ROWS);
  return [
    h(
      "table",
      { class: "sbs" },
      h("thead", null, h("tr", null, h("th", null, ""), h("th", null, side(d.from_context, d.from_version, d.to_context)), h("th", null, side(d.to_context, d.to_version, d.from_context)))),
      h("tbody", null, shown),
    ),
    rows.length > MAX_ROWS ? h("p", { class: "muted" }, `First ${MAX_ROWS} of ${number(rows.length)} changed messages shown.`) : null,
  ];
}

function metadata(d) {
  if (!d.metadata.length) return null;
  return [
    h("h2", null, "Metadata"),
    h(
      "table",
      { class: "grid" },
      h("thead", null, h("tr", null, ["path", "change", "before", "after"].map((t) => h("th", null, t)))),
      h("tbody", null, d.metadata.map((c) => h("tr", { class: c.kind === "added" ? "added" : c.kind === "removed" ? "removed" : "edited" }, h("td", { class: "mono" }, c.path || "/"), h("td", null, c.kind), h("td", { class: "mono" }, c.kind === "added" ? "" : json(c.old)), h("td", { class: "mono" }, c.kind === "removed" ? "" : json(c.new))))),
    ),
  ];
}

function windowChanges(d) {
  if (!d.window.length) return null;
  return [
    h("h2", null, "Window settings"),
    h("table", { class: "grid" }, h("tbody", null, d.window.map((c) => h("tr", { class: "edited" }, h("td", null, c.field), h("td", { class: "mono" }, json(c.old)), h("td", { class: "mono" }, json(c.new)))))),
  ];
}

function summaries(d) {
  if (!d.summaries_added.length && !d.summaries_removed.length) return null;
  return [
    h("h2", null, "Summaries"),
    h("ul", null, d.summaries_added.map((s) => h("li", { class: "added" }, "added " + s)), d.summaries_removed.map((s) => h("li", { class: "removed" }, "removed " + s))),
  ];
}
