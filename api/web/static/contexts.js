// Contexts, newest first, a page at a time; and full-text search over their messages.

import { contextHref, fill, h } from "./dom.js";
import { get } from "./api.js";
import { clip, json, number, shortId, time } from "./format.js";

const PAGE = 50;

export async function render(app, parts, query) {
  const q = query.get("q") || "";
  const input = h("input", { type: "search", name: "q", id: "q", value: q, placeholder: "Search messages (every word; tok* for a prefix)", "aria-label": "Search messages" });
  const form = h(
    "form",
    {
      class: "search",
      role: "search",
      onsubmit: (event) => {
        event.preventDefault();
        const words = input.value.trim();
        location.hash = words ? "#/?" + new URLSearchParams({ q: words }) : "#/";
      },
    },
    input,
    h("button", { type: "submit" }, "Search"),
    q ? h("a", { href: "#/", class: "clear" }, "Clear") : null,
  );
  const body = h("div");
  fill(app.main, h("h1", null, q ? "Search" : "Contexts"), form, body);
  if (q) await search(app, body, q, query.get("cursor"));
  else await list(app, body, query.get("cursor"));
}

async function list(app, body, cursor) {
  const page = await get("/contexts", { limit: PAGE, cursor });
  if (!app.current()) return;
  if (page.contexts.length === 0) {
    fill(body, h("p", { class: "muted empty" }, cursor ? "No more contexts." : "No contexts yet."));
    return;
  }
  const rows = page.contexts.map((c) =>
    h(
      "tr",
      { dataset: { id: c.id } },
      h("td", null, h("a", { href: contextHref(c.id), class: "mono ctx-link" }, shortId(c.id))),
      h("td", { class: "meta" }, clip(json(c.metadata), 60)),
      h("td", { class: "num" }, number(c.message_count)),
      h("td", { class: "num" }, number(c.total_tokens)),
      h("td", { class: "num" }, "v" + c.version),
      h("td", null, time(c.updated_at)),
      h("td", { class: "actor muted" }, c.updated_by || "—"),
      h("td", null, c.parent ? h("a", { href: contextHref(c.parent.context_id), class: "mono" }, `${shortId(c.parent.context_id)} @v${c.parent.version}`) : ""),
    ),
  );
  const table = h(
    "table",
    { class: "grid contexts" },
    h("thead", null, h("tr", null, ["context", "metadata", "messages", "tokens", "version", "last change", "by", "fork of"].map((t) => h("th", null, t)))),
    h("tbody", null, rows),
  );
  const pager = h(
    "p",
    { class: "pager" },
    cursor ? h("a", { href: "#/" }, "« Newest") : null,
    page.next_cursor ? h("a", { href: "#/?" + new URLSearchParams({ cursor: page.next_cursor }), class: "next" }, "Older »") : null,
  );
  fill(body, table, pager);
}

async function search(app, body, q, cursor) {
  const page = await get("/search", { q, cursor, limit: 50 });
  if (!app.current()) return;
  if (page.hits.length === 0) {
    fill(body, h("p", { class: "muted empty" }, "No message holds every word of that search."));
    return;
  }
  const rows = page.hits.map((hit) =>
    h(
      "tr",
      null,
      h("td", null, h("a", { href: contextHref(hit.context_id), class: "mono" }, shortId(hit.context_id))),
      h("td", { class: "num" }, "#" + (hit.seq + 1)),
      h("td", null, hit.role),
      h("td", { class: "snippet" }, hit.snippet),
    ),
  );
  fill(
    body,
    h("table", { class: "grid hits" }, h("thead", null, h("tr", null, ["context", "message", "role", "text"].map((t) => h("th", null, t)))), h("tbody", null, rows)),
    page.next_cursor ? h("p", { class: "pager" }, h("a", { href: "#/?" + new URLSearchParams({ q, cursor: page.next_cursor }), class: "next" }, "More results »")) : null,
  );
}
