// Following the log as it grows: the server's event stream (text/event-stream) read through
// fetch, not EventSource, because EventSource cannot send the X-API-Key header and a key in
// a URL would land in logs and history. Reconnects resume with Last-Event-ID, so nothing is
// missed or repeated across a dropped connection.

import { asError, authHeaders, apiUrl } from "./api.js";

/**
 * Follow the events after log position ``after`` (matching ``params``, e.g. a context_id);
 * ``onEvent(event)`` for each, ``onState("live" | "reconnecting" | "stopped", error?)``.
 * Returns a function that stops following.
 */
export function follow({ params, after, onEvent, onState }) {
  const control = new AbortController();
  let last = after;
  let stopped = false;
  const run = async () => {
    let delay = 500;
    while (!stopped) {
      try {
        const headers = authHeaders({ Accept: "text/event-stream" });
        if (last !== null && last !== undefined) headers["Last-Event-ID"] = String(last);
        const response = await fetch(apiUrl("/events/stream", params), {
          headers,
          credentials: "omit",
          cache: "no-store",
          signal: control.signal,
        });
        if (!response.ok) {
          const error = await asError(response);
          if (response.status === 401 || response.status === 403 || response.status === 400) {
            onState("stopped", error);
            return;
          }
          throw error;
        }
        onState("live");
        delay = 500;
        await read(response.body, (id, data) => {
          if (id !== null) last = id;
          onEvent(data);
        });
      } catch (error) {
        if (stopped) return;
      }
      if (stopped) return;
      onState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10000);
    }
  };
  run();
  return () => {
    stopped = true;
    control.abort();
  };
}

// The event-stream format: blocks separated by a blank line; "id:", "event:", "data:"
// fields; lines starting with ":" are comments (the server's keep-alives).
async function read(body, deliver) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let id = null;
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("id:")) id = Number(line.slice(3).trim());
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) deliver(id, JSON.parse(data.join("\n")));
    }
  }
}
