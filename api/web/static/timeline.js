// One context's timeline: every event in order (a virtual list: only the rows in view are in
// the page), a slider over its versions, the conversation as it was at the chosen version,
// and new events as they happen.

import { add, contextHref, contextTabs, fill, h } from "./dom.js";
import { get } from "./api.js";
import { VirtualList } from "./vlist.js";
import { follow } from "./live.js";
import { contentText, messageText, eventSummary, json, number, shortId, time } from "./format.js";

const ROW = 30;
const FETCH = 200;
const NEWEST = 64; // the rows a first look shows, and a few more
const PAGE = 100;

export async function render(app, parts, query) {
  const id = parts[1];
  const path = `/contexts/${encodeURIComponent(id)}`;
  // The newest events first: they say how many versions there are and where the log is.
  const newest = await get(path + "/events", { direction: "backward", limit: NEWEST });
  if (!app.current()) return null;
  const events = new Map();
  for (const e of newest.events) events.set(e.version, e);
  const top = newest.events[0];
  const s = {
    app,
    id,
    path,
    events,
    latest: top ? top.version : 0,
    position: top ? top.position : 0,
    selected: 0,
    loading: new Set(),
    follow: true,
    conversation: null,
    abort: null,
    timer: 0,
  };
  const wanted = Number(query.get("v"));
  s.selected = Number.isInteger(wanted) && wanted >= 1 && wanted <= s.latest ? wanted : s.latest;
  s.follow = s.selected === s.latest;

  s.liveLabel = h("span", { class: "live muted", role: "status" }, "connecting…");
  s.slider = h("input", { type: "range", min: "1", max: String(s.latest), value: String(s.selected), step: "1", id: "version", "aria-label": "version" });
  s.sliderLabel = h("output", { for: "version", class: "mono" });
  s.slider.addEventListener("input", () => select(s, Number(s.slider.value), { scroll: true }));
  const step = (by) => () => select(s, Math.min(s.latest, Math.max(1, s.selected + by)), { scroll: true });
  s.list = new VirtualList({
    count: s.latest,
    rowHeight: ROW,
    label: "events",
    render: (i) => row(s, i + 1),
    onRange: (first, last) => need(s, first + 1, last + 1),
  });
  // The keyboard walks the versions too: up and down a version, Home and End.
  s.list.el.addEventListener("keydown", (event) => {
    const to = { ArrowUp: s.selected - 1, ArrowDown: s.selected + 1, Home: 1, End: s.latest }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    select(s, Math.min(s.latest, Math.max(1, to)), { scroll: true });
  });
  s.conversation = h("section", { class: "conversation", "aria-label": "conversation" });
  fill(
    app.main,
    h("div", { class: "ctxhead" }, h("h1", null, "Context ", h("span", { class: "mono" }, id)), s.liveLabel),
    contextTabs(id, "timeline"),
    h(
      "div",
      { class: "split" },
      h(
        "section",
        { class: "events", "aria-label": "timeline" },
        h(
          "div",
          { class: "slider" },
          h("button", { type: "button", onclick: step(-1), "aria-label": "older version" }, "◀"),
          s.slider,
          h("button", { type: "button", onclick: step(1), "aria-label": "newer version" }, "▶"),
          s.sliderLabel,
          h("button", { type: "button", class: "latest", onclick: () => select(s, s.latest, { scroll: true }) }, "Latest"),
        ),
        h("div", { class: "evhead" }, h("span", null, "v"), h("span", null, "time"), h("span", null, "actor"), h("span", null, "event"), h("span", null, "what changed")),
        s.list.el,
      ),
      s.conversation,
    ),
  );
  s.list.scrollTo(s.selected - 1, s.selected === s.latest ? "end" : "center");
  performance.mark("ctxlog:timeline");
  label(s);
  await load(s);
  const stop = follow({
    params: { context_id: id },
    after: s.position,
    onEvent: (e) => arrived(s, e),
    onState: (state, error) => {
      s.liveLabel.textContent = state === "live" ? "● live" : state === "stopped" ? "not following" + (error ? ` (${error.message})` : "") : "reconnecting…";
      s.liveLabel.classList.toggle("on", state === "live");
    },
  });
  return () => {
    stop();
    s.list.destroy();
    if (s.abort) s.abort.abort();
    clearTimeout(s.timer);
  };
}

function row(s, version) {
  const e = s.events.get(version);
  const cls = "ev" + (version === s.selected ? " sel" : "") + (e ? " t-" + e.type.replace(".", "-") : " pending");
  const node = h("div", { class: cls, role: "listitem", dataset: { version: String(version) }, onclick: () => select(s, version) });
  if (!e) return add(node, h("span", { class: "v" }, "v" + version), h("span", { class: "muted" }, "…"));
  const what = eventSummary(e);
  return add(
    node,
    h("span", { class: "v" }, "v" + version),
    h("span", { class: "t", title: time(e.recorded_at) }, time(e.recorded_at).slice(5, 19)),
    h("span", { class: "a" }, e.actor || "—"),
    h("span", { class: "ty" }, e.type),
    h("span", { class: "w", title: what }, what),
  );
}

// Fetch the events of versions first..last that are not here yet, a page at a time.
async function need(s, first, last) {
  for (let v = first; v <= last; v++) {
    if (s.events.has(v)) continue;
    const from = Math.floor((v - 1) / FETCH) * FETCH + 1;
    if (s.loading.has(from)) {
      v = from + FETCH - 1;
      continue;
    }
    s.loading.add(from);
    get(s.path + "/events", { from_version: from, limit: FETCH })
      .then((page) => {
        for (const e of page.events) s.events.set(e.version, e);
        s.list.refresh(from - 1, from + FETCH - 2);
      })
      .catch((error) => s.app.failed(error))
      .finally(() => s.loading.delete(from));
    v = from + FETCH - 1;
  }
}

function label(s) {
  const e = s.events.get(s.selected);
  s.sliderLabel.textContent = `v${s.selected} of ${s.latest}`;
  s.slider.max = String(Math.max(1, s.latest));
  s.slider.value = String(s.selected);
  if (e) s.sliderLabel.title = time(e.recorded_at);
}

function select(s, version, { scroll = false } = {}) {
  if (!version || version === s.selected) return;
  const before = s.selected;
  s.selected = version;
  s.follow = version === s.latest;
  history.replaceState(null, "", contextHref(s.id, "", s.follow ? null : { v: version }));
  label(s);
  s.list.refresh(before - 1, before - 1);
  s.list.refresh(version - 1, version - 1);
  if (scroll) s.list.scrollTo(version - 1);
  clearTimeout(s.timer);
  // Dragging the slider asks for the versions it stops at, not every one it passes.
  s.timer = setTimeout(() => load(s), 120);
}

function arrived(s, e) {
  if (e.context_id !== s.id) return;
  s.events.set(e.version, e);
  s.position = Math.max(s.position, e.position);
  if (e.version > s.latest) {
    s.latest = e.version;
    s.list.setCount(s.latest);
    if (s.follow) {
      s.selected = s.latest;
      s.list.scrollTo(s.latest - 1, "end");
      clearTimeout(s.timer);
      s.timer = setTimeout(() => load(s), 120);
    }
    label(s);
  }
  s.list.refresh(e.version - 1, e.version - 1);
}

// The conversation at the selected version: time travel on the server (a snapshot and at
// most a few events folded), read as the context without its messages and then a page of
// them (the newest first), so a 10,000-message context costs one page, not all of it.
async function load(s) {
  if (s.abort) s.abort.abort();
  const control = new AbortController();
  s.abort = control;
  const version = s.selected;
  let header;
  let page;
  try {
    // Both at once; the page names the version, so the two agree (a read model a moment
    // behind the live stream answers 404 for it, and the pair is asked again).
    [header, page] = await Promise.all([
      get(s.path, version === s.latest ? { messages: "false" } : { version, messages: "false" }, control.signal),
      get(s.path + "/messages", { version, direction: "backward", limit: PAGE }, control.signal).catch((error) => {
        if (error.status === 404) return null;
        throw error;
      }),
    ]);
    if (header.version !== version) page = null;
  } catch (error) {
    if (control.signal.aborted) return;
    if (error.status === 404 && version === s.latest && s.latest > 1) {
      // A deleted context reads as not found now; its past is still there.
      fill(s.conversation, h("p", { class: "card" }, "This context is deleted. Move to an earlier version to see what it held."));
      return;
    }
    s.app.failed(error);
    return;
  }
  if (control.signal.aborted || !s.app.current()) return;
  if (!page) {
    if ((s.retries = (s.retries || 0) + 1) <= 20) {
      // The live stream can run a moment ahead of the read model that answers "now".
      s.timer = setTimeout(() => load(s), 100);
    }
    return;
  }
  s.retries = 0;
  conversation(s, header, page);
  performance.mark("ctxlog:conversation");
}

function conversation(s, state, first) {
  const version = state.version;
  const e = s.events.get(version);
  const older = version !== s.latest;
  const count = h("span", { class: "muted" }, ` · ${number(first.total)} messages, ${number(state.total_tokens)} tokens (${state.token_encoding})`);
  const head = h(
    "div",
    { class: "asof" + (older ? " older" : "") },
    h("strong", null, older ? `As it was at version ${version}` : `Now (version ${version})`),
    e ? h("span", { class: "muted" }, ` · ${time(e.recorded_at)} · ${e.type}`) : null,
    count,
  );
  const links = h(
    "p",
    { class: "actions" },
    version > 1 ? h("a", { href: contextHref(s.id, "/diff", { from: version - 1, to: version }) }, "Diff with v" + (version - 1)) : null,
    older ? h("a", { href: contextHref(s.id, "/diff", { from: version, to: s.latest }) }, "Diff with now") : null,
    e && e.type === "window.served" ? h("a", { href: contextHref(s.id, "/windows", { v: version }), class: "saw" }, "What the model saw at this version") : null,
    state.parent ? h("a", { href: contextHref(state.parent.context_id, "", { v: state.parent.version }) }, `Fork of ${shortId(state.parent.context_id)} at v${state.parent.version}`) : null,
  );
  const meta = h(
    "details",
    { class: "meta" },
    h("summary", null, "Metadata and window settings"),
    h("pre", { class: "json" }, JSON.stringify(state.metadata, null, 2)),
    h("pre", { class: "json" }, "window: " + json(state.window)),
  );
  const summaries = state.summaries.map((m) =>
    h("article", { class: "msg summary" }, h("header", null, h("span", { class: "role" }, "summary"), h("span", { class: "muted" }, ` through ${shortId(m.through_message_id)} · ${m.tokens} tokens · v${m.version}`)), h("div", { class: "content" }, m.text)),
  );
  const list = h("div", { class: "messages" });
  const pager = h("div", { class: "pager" });
  const turn = (params) => async () => {
    try {
      const next = await get(s.path + "/messages", { version, limit: PAGE, ...params });
      if (s.app.current() && s.selected === version) show(next);
    } catch (error) {
      s.app.failed(error);
    }
  };
  const show = (page) => {
    // Pages come newest first going backward: shown oldest first either way.
    const rows = page.messages.map((m, i) => [m, page.seqs[i]]).sort((a, b) => a[1] - b[1]);
    const total = page.total;
    const low = rows.length ? rows[0][1] : 0;
    const high = rows.length ? rows[rows.length - 1][1] : -1;
    fill(list, rows.length === 0 ? h("p", { class: "muted empty" }, "No messages at this version.") : rows.map(([m, seq]) => message(m, seq)));
    fill(
      pager,
      total > rows.length
        ? [
            h("button", { type: "button", disabled: low === 0, onclick: turn({}) }, "« First"),
            h("button", { type: "button", disabled: low === 0, onclick: turn({ direction: "backward", after: low }) }, "‹ Earlier"),
            h("span", { class: "muted" }, ` messages ${number(low + 1)}–${number(high + 1)} of ${number(total)} `),
            h("button", { type: "button", disabled: high >= total - 1, onclick: turn({ after: high }) }, "Later ›"),
            h("button", { type: "button", disabled: high >= total - 1, onclick: turn({ direction: "backward" }) }, "Last »"),
          ]
        : [],
    );
  };
  show(first);
  fill(s.conversation, head, links, meta, summaries, pager, list);
}

function message(m, seq) {
  const flags = [];
  if (m.edited_version) flags.push(`edited v${m.edited_version}`);
  if (m.redacted) flags.push("redacted");
  return h(
    "article",
    { class: `msg role-${m.role}` + (m.redacted ? " redacted" : ""), dataset: { id: m.id } },
    h(
      "header",
      null,
      h("span", { class: "role" }, m.role),
      m.name ? h("span", { class: "name" }, " " + m.name) : null,
      h("span", { class: "muted" }, ` #${seq + 1} · ${m.tokens} tokens · v${m.version}`),
      flags.length ? h("span", { class: "flags" }, " · " + flags.join(" · ")) : null,
    ),
    h("div", { class: "content" }, messageText(m)),
  );
}
