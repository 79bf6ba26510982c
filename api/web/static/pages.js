// Reading some messages of a context at a version without taking all of it: a page of the
// newest (where a window's messages and most changes are), then, while some wanted ones
// are missing, a page of the oldest (pinned system messages, early edits) and more of the
// newest. A context that fits in one page is read whole.

import { get } from "./api.js";

const READ = 500;
const MAX_PAGES = 8;

/** {known: Map(seq -> message), total, whole} for ``wanted`` message ids at ``version``. */
export async function messagesAt(contextId, version, wanted) {
  const path = `/contexts/${encodeURIComponent(contextId)}/messages`;
  const known = new Map();
  const ids = new Set();
  const take = (page) =>
    page.messages.forEach((m, i) => {
      known.set(page.seqs[i], m);
      ids.add(m.id);
    });
  let page = await get(path, { version, direction: "backward", limit: READ });
  take(page);
  const total = page.total;
  const missing = () => wanted.some((id) => !ids.has(id));
  if (known.size < total && missing()) take(await get(path, { version, limit: READ }));
  for (let n = 2; n < MAX_PAGES && page.next_after !== null && page.next_after > READ && missing(); n++) {
    page = await get(path, { version, direction: "backward", after: page.next_after, limit: READ });
    take(page);
  }
  return { known, total, whole: known.size >= total };
}
