// The web view: a router over the location's hash, the key prompt, and the views.
// Routes: #/ (contexts; ?q= searches), #/c/ID (timeline; ?v=N), #/c/ID/diff, #/c/ID/lineage,
// #/c/ID/windows, #/audit.

import { add, fill, h } from "./dom.js";
import { ApiError, apiKey, forgetApiKey, setApiKey } from "./api.js";
import * as contexts from "./contexts.js";
import * as timeline from "./timeline.js";
import * as diff from "./diff.js";
import * as lineage from "./lineage.js";
import * as windows from "./windows.js";
import * as audit from "./audit.js";

const main = document.getElementById("main");
const authLabel = document.getElementById("auth");
const forget = document.getElementById("forget");
let teardown = null;
let generation = 0;

function parse() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const cut = raw.indexOf("?");
  const path = cut < 0 ? raw : raw.slice(0, cut);
  const query = new URLSearchParams(cut < 0 ? "" : raw.slice(cut + 1));
  let parts;
  try {
    parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    parts = ["?"];
  }
  return { parts, query };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function pick(parts) {
  if (parts.length === 0) return contexts;
  if (parts[0] === "audit" && parts.length === 1) return audit;
  if (parts[0] === "c" && UUID.test(parts[1] || "")) {
    if (parts.length === 2) return timeline;
    if (parts.length === 3) return { diff, lineage, windows }[parts[2]] || null;
  }
  return null;
}

/** What views share: the main element, a way to ask for a key, and whether they are current. */
function session(mine) {
  return {
    main,
    current: () => mine === generation,
    failed: (error) => mine === generation && failed(error),
    authenticated: () => showAuth(),
  };
}

async function route() {
  const mine = ++generation;
  if (teardown) {
    try {
      teardown();
    } catch {
      // a view that could not clean up must not keep the next one from showing
    }
    teardown = null;
  }
  const { parts, query } = parse();
  document.getElementById("nav-audit").classList.toggle("on", parts[0] === "audit");
  document.getElementById("nav-contexts").classList.toggle("on", parts[0] !== "audit");
  const view = pick(parts);
  if (view === null) {
    fill(main, h("div", { class: "card error" }, h("h2", null, "Not found"), h("p", null, "No such page. "), h("a", { href: "#/" }, "All contexts")));
    return;
  }
  fill(main, h("p", { class: "muted loading" }, "Loading…"));
  try {
    const done = await view.render(session(mine), parts, query);
    if (mine === generation) teardown = done || null;
    else if (done) done();
    showAuth();
  } catch (error) {
    if (mine === generation) failed(error);
  }
}

function failed(error) {
  if (error instanceof ApiError && error.status === 401) {
    askForKey(apiKey() ? "That key was refused. Enter another." : "This server needs an API key.");
    return;
  }
  const card = h("div", { class: "card error", role: "alert" }, h("h2", null, error instanceof ApiError && error.status === 404 ? "Not found" : "Something went wrong"));
  add(card, h("p", null, error instanceof ApiError ? `${error.message} (${error.status} ${error.code})` : String(error)));
  add(card, h("p", null, h("a", { href: "#/" }, "All contexts")));
  fill(main, card);
}

function askForKey(message) {
  const input = h("input", { type: "password", id: "key", name: "key", autocomplete: "off", required: true, spellcheck: "false" });
  const form = h(
    "form",
    {
      class: "card keyform",
      onsubmit: (event) => {
        event.preventDefault();
        const key = input.value.trim();
        if (key) {
          setApiKey(key);
          route();
        }
      },
    },
    h("h2", null, "API key"),
    h("p", null, message),
    h("label", { for: "key" }, "Key"),
    input,
    h("button", { type: "submit" }, "Use this key"),
    h("p", { class: "muted" }, "Kept for this browser tab only and sent as the X-API-Key header: never in a URL or a cookie, forgotten when the tab closes."),
  );
  fill(main, form);
  showAuth();
  input.focus();
}

function showAuth() {
  const key = apiKey();
  authLabel.textContent = key ? "key in use (this tab)" : "";
  forget.hidden = !key;
}

forget.addEventListener("click", () => {
  forgetApiKey();
  showAuth();
  route();
});
window.addEventListener("hashchange", route);
route();
