// How values read on screen: times in UTC, ids shortened, content as plain text.

export function time(iso) {
  if (!iso) return "";
  return String(iso).replace("T", " ").slice(0, 19) + " UTC";
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) + "…" + String(id).slice(-4) : "";
}

export function number(n) {
  return n === null || n === undefined ? "" : Number(n).toLocaleString("en-US");
}

/** A message's content as text: parts spelled out, images and files named, never loaded. */
export function contentText(content) {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return JSON.stringify(content);
  return content.map(partText).join("\n");
}

function partText(part) {
  switch (part && part.type) {
    case "text":
      return part.text;
    case "image":
      return `[image${part.media_type ? " " + part.media_type : ""}${part.url ? " " + part.url : ""}]`;
    case "file":
      return `[file ${part.name || part.file_id || part.uri || ""}]`;
    case "tool_call":
      return `[tool call ${part.name}(${JSON.stringify(part.arguments || {})}) id=${part.id}]`;
    case "tool_result":
      return `[tool result for ${part.call_id}${part.is_error ? " (error)" : ""}] ${contentText(part.content)}`;
    default:
      return JSON.stringify(part);
  }
}

/** A message's text; a redaction left none, and says so. */
export function messageText(m) {
  const text = contentText(m.content);
  return m.redacted && !text ? "[redacted]" : text;
}

export function clip(text, n = 140) {
  const flat = String(text).replace(/\s+/g, " ").trim();
  return flat.length > n ? flat.slice(0, n - 1) + "…" : flat;
}

export function json(value) {
  return value === undefined ? "" : JSON.stringify(value);
}

/** What an event changed, in a line. */
export function eventSummary(e) {
  const d = e.data || {};
  switch (e.type) {
    case "context.created":
      return "created" + (Object.keys(d.metadata || {}).length ? " " + json(d.metadata) : "");
    case "message.appended":
      return `${d.role}${d.name ? " (" + d.name + ")" : ""}: ${contentText(d.content)}`;
    case "message.edited":
      return `edited ${shortId(d.message_id)}: ${contentText(d.content)}`;
    case "message.redacted":
      return `redacted ${shortId(d.message_id)}${d.reason ? " — " + d.reason : ""}`;
    case "metadata.updated":
      return "metadata " + json(d.patch);
    case "window.configured":
      return "window settings " + json(d.window);
    case "summary.added":
      return `summary through ${shortId(d.through_message_id)}: ${d.text}`;
    case "context.rolled_back":
      return `rolled back to v${d.to_version}${d.reason ? " — " + d.reason : ""}`;
    case "context.forked":
      return `forked from ${shortId(d.parent_id)} at v${d.parent_version}`;
    case "context.deleted":
      return "deleted" + (d.reason ? " — " + d.reason : "");
    case "window.served":
      return `window served: ${(d.message_ids || []).length} messages, ${number(d.total_tokens)} tokens` +
        ` (${d.encoding}${d.max_tokens ? ", budget " + number(d.max_tokens) : ""})`;
    case "subject.erased":
      return `subject ${d.subject} erased`;
    default:
      return json(d);
  }
}
