// The audit: the whole log of the caller's tenant, filtered by actor, type, context and
// time, as a table; the rows shown can be saved as NDJSON (one event per line).

import { contextHref, fill, h } from "./dom.js";
import { get } from "./api.js";
import { clip, eventSummary, shortId, time } from "./format.js";

const PAGE = 200;
const TYPES = [
  "context.created", "message.appended", "message.edited", "message.redacted", "metadata.updated",
  "window.configured", "summary.added", "context.rolled_back", "context.forked", "context.deleted",
  "window.served", "subject.erased",
];

// Times are typed and shown in UTC, as the log records them.
function toIso(local) {
  return local ? new Date(local + (local.length === 16 ? ":00" : "") + "Z").toISOString() : null;
}

function fromIso(iso) {
  return iso ? iso.replace("Z", "").slice(0, 16) : "";
}

export async function render(app, parts, query) {
  const field = (name, label, props = {}) => {
    const input = h("input", { id: "f-" + name, name, value: query.get(name) || "", ...props });
    return [h("label", { for: "f-" + name }, label), input];
  };
  const [actorLabel, actor] = field("actor", "actor");
  const [typeLabel, type] = field("type", "type", { list: "types", placeholder: "any (comma-separated)" });
  const [ctxLabel, context] = field("context_id", "context", { placeholder: "any", size: "36" });
  const since = h("input", { id: "f-since", type: "datetime-local", value: fromIso(query.get("since")) });
  const until = h("input", { id: "f-until", type: "datetime-local", value: fromIso(query.get("until")) });
  const filters = {
    actor: query.get("actor"),
    type: query.get("type"),
    context_id: query.get("context_id"),
    since: query.get("since"),
    until: query.get("until"),
  };
  const form = h(
    "form",
    {
      class: "filters",
      onsubmit: (event) => {
        event.preventDefault();
        const chosen = { actor: actor.value.trim(), type: type.value.trim(), context_id: context.value.trim(), since: toIso(since.value), until: toIso(until.value) };
        const q = new URLSearchParams(Object.entries(chosen).filter(([, v]) => v));
        location.hash = "#/audit" + (q.toString() ? "?" + q : "");
      },
    },
    actorLabel, actor, typeLabel, type, ctxLabel, context,
    h("label", { for: "f-since" }, "since (UTC)"), since,
    h("label", { for: "f-until" }, "until (UTC)"), until,
    h("datalist", { id: "types" }, TYPES.map((t) => h("option", { value: t }))),
    h("button", { type: "submit" }, "Filter"),
    h("a", { href: "#/audit" }, "Clear"),
  );
  const shown = [];
  const tbody = h("tbody");
  const count = h("span", { class: "muted count" });
  const more = h("button", { type: "button", class: "more", hidden: true }, "Load more");
  const exportLink = h("a", { class: "export button", download: "ctxlog-audit.ndjson", href: "#/audit" }, "Export shown rows (NDJSON)");
  let url = null;
  const refreshExport = () => {
    if (url) URL.revokeObjectURL(url);
    url = URL.createObjectURL(new Blob(shown.map((e) => JSON.stringify(e) + "\n"), { type: "application/x-ndjson" }));
    exportLink.setAttribute("href", url);
  };
  let after = 0;
  const load = async () => {
    more.disabled = true;
    const page = await get("/events", { ...filters, after, limit: PAGE });
    if (!app.current()) return;
    for (const e of page.events) {
      shown.push(e);
      tbody.append(
        h(
          "tr",
          null,
          h("td", { class: "num" }, String(e.position)),
          h("td", null, time(e.recorded_at)),
          h("td", null, e.actor || "—"),
          h("td", null, e.type),
          h("td", null, h("a", { href: contextHref(e.context_id, "", { v: e.version }), class: "mono" }, shortId(e.context_id))),
          h("td", { class: "num" }, "v" + e.version),
          h("td", { class: "w" }, clip(eventSummary(e), 120)),
        ),
      );
    }
    after = page.next_after;
    more.hidden = page.events.length < PAGE;
    more.disabled = false;
    count.textContent = `${shown.length} event${shown.length === 1 ? "" : "s"} shown`;
    refreshExport();
  };
  more.addEventListener("click", () => load().catch(app.failed));
  fill(
    app.main,
    h("h1", null, "Audit"),
    form,
    h("p", { class: "toolbar" }, count, " ", exportLink),
    h("table", { class: "grid audit" }, h("thead", null, h("tr", null, ["position", "recorded", "actor", "type", "context", "version", "what changed"].map((t) => h("th", null, t)))), tbody),
    more,
  );
  await load();
  return () => {
    if (url) URL.revokeObjectURL(url);
  };
}
