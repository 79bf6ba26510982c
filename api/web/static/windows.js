// What the model saw: every window recorded for a context (window.served events), and for
// one of them the exact messages it held, its budget and encoding, and what was left out.

import { contextHref, contextTabs, fill, h } from "./dom.js";
import { get } from "./api.js";
import { messagesAt } from "./pages.js";
import { clip, contentText, messageText, number, shortId, time } from "./format.js";

const PAGE = 100;
const LIST_LEFT_OUT = 200;

// The context at ``version`` without its messages, and the messages the window named (and
// the summary's last covered one, whose place divides the reasons).
async function read(id, version, w) {
  const header = await get(`/contexts/${encodeURIComponent(id)}`, { version, messages: "false" });
  const summary = w.summary_id ? header.summaries.find((s) => s.id === w.summary_id) : null;
  const wanted = summary ? [...w.message_ids, summary.through_message_id] : w.message_ids;
  return { header, ...(await messagesAt(id, version, wanted)) };
}

export async function render(app, parts, query) {
  const id = parts[1];
  const after = Number(query.get("after")) || 0;
  // The audit query finds nothing for a context the caller cannot see; its history says 404.
  const [, page] = await Promise.all([
    get(`/contexts/${encodeURIComponent(id)}/events`, { direction: "backward", limit: 1 }),
    get("/events", { context_id: id, type: "window.served", limit: PAGE, after }),
  ]);
  if (!app.current()) return;
  const served = page.events;
  const wanted = Number(query.get("v"));
  const chosen = served.find((e) => e.version === wanted) || served[served.length - 1];
  const rows = served.map((e) =>
    h(
      "tr",
      { class: e === chosen ? "sel" : "", dataset: { version: String(e.version) } },
      h("td", null, h("a", { href: contextHref(id, "/windows", { v: e.version, after: after || null }) }, "v" + e.version)),
      h("td", null, time(e.recorded_at)),
      h("td", null, e.actor || "—"),
      h("td", { class: "num" }, number(e.data.message_ids.length)),
      h("td", { class: "num" }, number(e.data.total_tokens)),
      h("td", { class: "num" }, e.data.max_tokens ? number(e.data.max_tokens) : "—"),
      h("td", null, e.data.model || e.data.encoding),
    ),
  );
  const detail = h("section", { class: "window", "aria-label": "window" });
  fill(
    app.main,
    h("div", { class: "ctxhead" }, h("h1", null, "Context ", h("span", { class: "mono" }, id))),
    contextTabs(id, "windows"),
    served.length
      ? h(
          "div",
          { class: "split" },
          h(
            "section",
            null,
            h("table", { class: "grid windows" }, h("thead", null, h("tr", null, ["version", "served at", "by", "messages", "tokens", "budget", "model"].map((t) => h("th", null, t)))), h("tbody", null, rows)),
            served.length === PAGE ? h("p", { class: "pager" }, h("a", { href: contextHref(id, "/windows", { after: page.next_after }) }, "Later windows »")) : null,
          ),
          detail,
        )
      : h("p", { class: "muted empty" }, after ? "No later windows." : "No window has been recorded for this context. A window is recorded when it is served with POST /api/v1/contexts/{id}/window."),
  );
  if (chosen) await show(app, id, chosen, detail);
}

// The window was computed from the version just before its own event: the messages it names
// are read from the context as it was then, so edits made later do not change what it shows.
async function show(app, id, e, detail) {
  const w = e.data;
  const { header, known, total, whole } = await read(id, e.version - 1, w);
  if (!app.current()) return;
  const byId = new Map([...known].map(([seq, m]) => [m.id, [m, seq]]));
  const included = new Set(w.message_ids);
  const summary = w.summary_id ? header.summaries.find((s) => s.id === w.summary_id) : null;
  const covered = summary && byId.has(summary.through_message_id) ? byId.get(summary.through_message_id)[1] : -1;
  // Left out, as the server counts it: messages other than system ones that the window did
  // not name, each for the first reason that applies. Places not read (the middle of a long
  // context) count as ordinary messages left out.
  const groups = new Map();
  for (let seq = 0; seq < total; seq++) {
    const m = known.get(seq);
    if (m && (included.has(m.id) || m.role === "system")) continue;
    const reason = seq <= covered ? "covered_by_summary" : w.policy === "last_n" ? "beyond_last_n" : "over_budget";
    if (!groups.has(reason)) groups.set(reason, { count: 0, listed: [] });
    const group = groups.get(reason);
    group.count += 1;
    if (m) group.listed.push([m, seq]);
  }
  const why = { covered_by_summary: "covered by the summary", beyond_last_n: "beyond the last N", over_budget: "over the token budget" };
  fill(
    detail,
    h("h2", null, `Window served at v${e.version}`),
    h(
      "dl",
      { class: "facts" },
      h("dt", null, "served"), h("dd", null, `${time(e.recorded_at)} by ${e.actor || "—"}`),
      h("dt", null, "computed from"), h("dd", null, h("a", { href: contextHref(id, "", { v: e.version - 1 }) }, `version ${e.version - 1}`)),
      h("dt", null, "budget"), h("dd", null, w.max_tokens ? `${number(w.max_tokens)} tokens` : "none"),
      h("dt", null, "policy"), h("dd", null, w.policy),
      h("dt", null, "model"), h("dd", null, w.model || "—"),
      h("dt", null, "encoding"), h("dd", null, w.encoding),
      h("dt", null, "total"), h("dd", null, `${number(w.total_tokens)} tokens, ${number(w.message_ids.length)} messages${summary ? " and a summary" : ""}`),
      h("dt", null, "hash"), h("dd", { class: "mono small" }, w.window_hash),
    ),
    h("h3", null, "What the model saw"),
    summary ? h("article", { class: "msg summary" }, h("header", null, h("span", { class: "role" }, "summary"), h("span", { class: "muted" }, ` through ${shortId(summary.through_message_id)}`)), h("div", { class: "content" }, summary.text)) : null,
    h(
      "div",
      { class: "messages seen" },
      w.message_ids.map((mid) => {
        const found = byId.get(mid);
        if (!found) return h("p", { class: "muted" }, `message ${shortId(mid)} (not in version ${e.version - 1})`);
        const [m, i] = found;
        return h("article", { class: `msg role-${m.role}` + (m.redacted ? " redacted" : ""), dataset: { id: m.id } }, h("header", null, h("span", { class: "role" }, m.role), h("span", { class: "muted" }, ` #${i + 1} · ${m.tokens} tokens (stored count)`)), h("div", { class: "content" }, messageText(m)));
      }),
    ),
    h("h3", null, "Left out"),
    groups.size === 0
      ? h("p", { class: "muted" }, "Nothing: every message of that version was in the window.")
      : [...groups].map(([reason, group]) =>
          h(
            "details",
            { class: "leftout" },
            h("summary", null, `${number(group.count)} ${why[reason]}`),
            h(
              "ul",
              null,
              group.listed.slice(-LIST_LEFT_OUT).map(([m, i]) => h("li", null, h("span", { class: "muted" }, `#${i + 1} ${m.role}: `), clip(messageText(m), 120))),
              group.count > Math.min(group.listed.length, LIST_LEFT_OUT) ? h("li", { class: "muted" }, `… and ${number(group.count - Math.min(group.listed.length, LIST_LEFT_OUT))} more`) : null,
            ),
          ),
        ),
    h("p", { class: "muted small" }, `The messages are the ones the window.served event names, read from the context as it was when the window was computed; why each other message was left out follows the window's rules (summary, last N, budget).${whole ? "" : ` Of this context's ${number(total)} messages, the newest and the oldest were read.`}`),
  );
}
