#!/usr/bin/env python3
"""Page weight and time to first render of the web view's timeline of a 10,000-message
context, in headless Chromium against a real ``ctxlog serve`` on loopback.

Each run opens the timeline in a fresh browser profile (nothing cached) and reads the
browser's own clocks (Navigation and Resource Timing, the page's ``performance.mark``s):

- first paint: the browser's first-contentful-paint;
- timeline: the event rows of the newest versions are in the page (``ctxlog:timeline``);
- conversation: the context as it is now, its last page of messages, is in the page
  (``ctxlog:conversation``);
- bytes: what crossed the wire (``transferSize``), split into the page's own files and the
  API's answers, and the elements in the page once it settled.

    .venv/bin/python scripts/bench_ui.py [--messages 10000] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

from tests.support.browser import Api, chromium, missing, wait_for  # noqa: E402
from tests.support.server_process import serving  # noqa: E402

TEXT = (
    "the model was asked to plan a route through the old town and it answered with three "
    "stops a lunch break and a note about the weather before the train back in the evening"
)
WORDS = TEXT.split()

MEASURE = """
const nav = performance.getEntriesByType("navigation")[0];
const resources = performance.getEntriesByType("resource");
const mark = (name) => (performance.getEntriesByName(name)[0] || {}).startTime ?? null;
const paint = performance.getEntriesByName("first-contentful-paint")[0];
const sum = (list) => list.reduce((n, r) => n + r.transferSize, 0);
const api = resources.filter((r) => new URL(r.name).pathname.startsWith("/api/"));
const own = resources.filter((r) => !new URL(r.name).pathname.startsWith("/api/"));
return {
  paint: paint ? paint.startTime : null,
  timeline: mark("ctxlog:timeline"),
  conversation: mark("ctxlog:conversation"),
  page_bytes: nav.transferSize + sum(own),
  page_files: own.length + 1,
  api_bytes: sum(api),
  api_requests: api.length,
  elements: document.getElementsByTagName("*").length,
  rows: document.querySelectorAll(".ev").length,
  messages: document.querySelectorAll(".conversation article").length,
};
"""


def _text(i: int) -> str:
    return " ".join(WORDS[(i + k) % len(WORDS)] for k in range(24))


def seed(api: Api, messages: int) -> str:
    """A context holding ``messages`` messages, appended 1,000 at a time."""
    cid = api.create({"title": f"{messages:,} messages"})
    for start in range(0, messages, 1000):
        batch = [
            ("user" if i % 2 == 0 else "assistant", f"{i}: {_text(i)}")
            for i in range(start, min(messages, start + 1000))
        ]
        api.append(cid, *batch)
    return cid


def run_once(url: str, profile: Path) -> dict[str, Any]:
    """One cold load of ``url``; the page's figures once it has settled."""
    with chromium(profile) as browser:
        browser.get(url.split("#", maxsplit=1)[0] + "#/nowhere")
        browser.execute_script("sessionStorage.setItem('ctxlog.key', 'key-alice')")
        # Cold: that first load must not serve the measured one from the browser's cache.
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        browser.get("about:blank")
        browser.get(url)
        wait_for(
            lambda: browser.execute_script(
                "return performance.getEntriesByName('ctxlog:conversation').length"
            ),
            "the conversation",
            within=120,
        )
        time.sleep(0.3)  # the event pages the rows in view asked for
        figures: dict[str, Any] = browser.execute_script(MEASURE)
        browser.get("about:blank")
        return figures


def main() -> None:
    """Seed, load the timeline ``--runs`` times, print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if missing():
        sys.exit(f"cannot run: {missing()}")
    with tempfile.TemporaryDirectory() as tmp, serving(Path(tmp) / "bench.db") as server:
        api = Api(server.url, "key-alice")
        cid = seed(api, args.messages)
        url = f"{server.url}/ui#/c/{cid}"
        runs = [run_once(url, Path(tmp) / f"profile-{i}") for i in range(args.runs)]
    med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(f"timeline of a {args.messages:,}-message context, medians of {args.runs} cold loads")
    kib = 1024
    lines = [
        ("first contentful paint", f"{med['paint']:.0f} ms"),
        ("timeline rows in the page", f"{med['timeline']:.0f} ms"),
        ("conversation (last page) in the page", f"{med['conversation']:.0f} ms"),
        ("page weight: the page's own files", f"{med['page_bytes'] / kib:.1f} KiB"
            f" in {med['page_files']:.0f} files"),
        ("page weight: API answers", f"{med['api_bytes'] / kib:.1f} KiB"
            f" in {med['api_requests']:.0f} requests"),
        ("elements in the page", f"{med['elements']:.0f} ({med['rows']:.0f} event rows,"
            f" {med['messages']:.0f} messages)"),
    ]  # fmt: skip
    for label, value in lines:
        print(f"{label:<40}{value}")
    print("runs (timeline ms):", ", ".join(f"{r['timeline']:.0f}" for r in runs))


if __name__ == "__main__":
    main()
