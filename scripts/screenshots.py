#!/usr/bin/env python3
"""Screenshots of every view of the web view, for the README: a real ``ctxlog serve`` with
the test keys, seeded with the same story the browser tests use (``tests/support/browser``),
photographed by the same headless Chromium.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the repository importable
    sys.path.insert(0, str(ROOT))

from tests.support.browser import Api, chromium, missing, seed_story, wait_for  # noqa: E402
from tests.support.server_process import serving  # noqa: E402


def _seed(alice: Api, ann: Api) -> dict[str, Any]:
    story = seed_story(alice)
    for title, messages in (
        ("Support: refund for order 1182", ["I was charged twice.", "Refunded the duplicate."]),
        ("Code review: retry logic", ["Why exponential backoff here?", "To spare the server."]),
    ):
        cid = ann.create({"title": title})
        ann.append(cid, ("user", messages[0]), ("assistant", messages[1]))
    return story


def _shoot(browser: Any, url: str, ready: str, path: Path) -> None:
    browser.get(url)
    wait_for(lambda: browser.find_elements("css selector", ready), f"{ready} at {url}")
    time.sleep(0.4)  # let the rows that arrived settle (and the live label turn green)
    browser.save_screenshot(str(path))
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size:,} bytes")


def main() -> None:
    """Seed a server, open each view, save a PNG of it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    if missing():
        sys.exit(f"cannot take screenshots: {missing()}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, serving(Path(tmp) / "shots.db") as server:
        story = _seed(Api(server.url, "key-alice"), Api(server.url, "key-ann"))
        cid, ui = story["id"], server.url + "/ui"
        views = [
            ("contexts", "#/", "table.contexts td.actor:not(:empty)"),
            ("search", "#/?q=Sintra", "table.hits td.snippet"),
            ("timeline", f"#/c/{cid}", ".live.on"),
            ("timeline-older", f"#/c/{cid}?v={story['before_edit']}", ".asof.older"),
            ("diff", f"#/c/{cid}/diff?from=5&to=8", "table.sbs tr.edited"),
            ("fork-diff", f"#/c/{story['fork']}/diff?parent=1&pv={story['edited']}", "tr.added"),
            ("lineage", f"#/c/{story['fork']}/lineage", "ul.tree .here"),
            ("windows", f"#/c/{cid}/windows", ".messages.seen article"),
            ("audit", "#/audit?actor=alice", "table.audit tbody tr"),
        ]
        with chromium(Path(tmp) / "profile", width=1280, height=760) as browser:
            browser.get(ui + "#/nowhere")
            browser.execute_script("sessionStorage.setItem('ctxlog.key', 'key-alice')")
            for name, route, ready in views:
                _shoot(browser, ui + route, ready, args.out / f"{name}.png")
            browser.get("about:blank")


if __name__ == "__main__":
    main()
