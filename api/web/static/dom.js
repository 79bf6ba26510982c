// Building the page from data without ever parsing data as HTML: every string becomes a text
// node (or an attribute value set through the DOM), so message content, metadata and ids
// are shown as typed, never run. Nothing in this app hands markup to the browser to parse.

/** An element: h("a", {href: "#/", class: "x", onclick: f}, "text", child, [more]) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "href") el.setAttribute("href", safeHref(value));
    else if (name === "value") el.value = String(value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  add(el, children);
  return el;
}

/** Append children (nodes, strings, numbers, nested arrays; null and false skipped). */
export function add(el, ...children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return add(el, children);
}

// Links in this app are its own routes; anything else (a javascript: URL) is refused.
function safeHref(value) {
  const text = String(value);
  return text.startsWith("#") || text.startsWith("blob:") ? text : "#/";
}

/** The route of the app for a context id (ids are UUIDs; encoded anyway). */
export function contextHref(id, rest = "", query = null) {
  const q = query ? "?" + new URLSearchParams(query).toString() : "";
  return "#/c/" + encodeURIComponent(id) + rest + q;
}

/** The tabs above a context's views; ``active`` names the one shown. */
export function contextTabs(id, active) {
  const tab = (name, label, rest) =>
    h("a", { href: contextHref(id, rest), class: name === active ? "tab on" : "tab", "aria-current": name === active ? "page" : null }, label);
  return h(
    "nav",
    { class: "tabs", "aria-label": "context views" },
    tab("timeline", "Timeline", ""),
    tab("diff", "Diff", "/diff"),
    tab("lineage", "Lineage", "/lineage"),
    tab("windows", "What the model saw", "/windows"),
  );
}
