// The fork tree around a context: its ancestors up to the root, and below it its forks,
// each of which can be opened in turn. Every node links to its timeline.

import { contextHref, contextTabs, fill, h } from "./dom.js";
import { get } from "./api.js";
import { shortId } from "./format.js";

export async function render(app, parts) {
  const id = parts[1];
  const lineage = await get(`/contexts/${encodeURIComponent(id)}/lineage`);
  if (!app.current()) return;
  // ancestors: parent first, each with the version this branch was forked at.
  const chain = [...lineage.ancestors].reverse();
  const here = h("li", { class: "node here" }, node(id, null, true), forks(app, lineage.forks));
  let tree = here;
  for (let i = 0; i < chain.length; i++) {
    const ancestor = chain[chain.length - 1 - i];
    tree = h("li", { class: "node" }, node(ancestor.context_id, null, false), h("ul", null, h("li", { class: "edge muted" }, `forked at v${ancestor.version}`), tree));
  }
  fill(
    app.main,
    h("div", { class: "ctxhead" }, h("h1", null, "Context ", h("span", { class: "mono" }, id))),
    contextTabs(id, "lineage"),
    h("p", { class: "muted" }, chain.length ? `${chain.length} ancestor${chain.length > 1 ? "s" : ""}; ` : "Not a fork; ", `${lineage.forks.length} direct fork${lineage.forks.length === 1 ? "" : "s"}.`),
    h("ul", { class: "tree" }, tree),
  );
}

function node(id, at, here) {
  return h(
    "span",
    { class: "label" },
    h("a", { href: contextHref(id), class: "mono" + (here ? " here" : ""), dataset: { id } }, shortId(id)),
    here ? h("span", { class: "muted" }, " (this context)") : null,
    at ? h("a", { href: contextHref(id, "", { v: at }), class: "muted" }, ` at v${at}`) : null,
  );
}

function forks(app, list) {
  if (!list.length) return null;
  return h(
    "ul",
    null,
    list.map((f) => {
      const more = h("span");
      const open = h(
        "button",
        {
          type: "button",
          class: "open",
          "aria-label": "show its forks",
          onclick: async () => {
            open.disabled = true;
            try {
              const sub = await get(`/contexts/${encodeURIComponent(f.context_id)}/lineage`);
              fill(more, sub.forks.length ? forks(app, sub.forks) : h("span", { class: "muted" }, " no forks"));
              open.remove();
            } catch (error) {
              app.failed(error);
            }
          },
        },
        "▸",
      );
      return h(
        "li",
        { class: "node" },
        h("span", { class: "edge muted" }, `forked at v${f.version} → `),
        node(f.context_id, null, false),
        h("a", { href: contextHref(f.context_id, "/diff", { parent: 1, pv: f.version }), class: "muted" }, " diff with parent"),
        " ",
        open,
        more,
      );
    }),
  );
}
