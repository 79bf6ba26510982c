"""A real browser for the web view's tests and scripts: Debian's headless ``chromium`` driven
through Debian's ``chromedriver`` with Selenium, and nothing downloaded (Selenium Manager is
kept offline and never asked: the browser and the driver are given by path).

Also the small synchronous API client the browser tests and scripts seed data with.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--force-device-scale-factor=1",
    "--lang=en-US",
    # Any name but the test server's address resolves to nothing: the page cannot reach out.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
)


def missing() -> str | None:
    """Why a browser cannot run here, or None when it can."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (apt-get install {package}; .ci/run installs it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@contextlib.contextmanager
def chromium(profile: Path, *, width: int = 1280, height: int = 860) -> Iterator[Any]:
    """A headless Chromium (a Selenium WebDriver) with a fresh profile, closed at the end."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a driver or browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=os.devnull)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(check: Callable[[], T | None], what: str, within: float = 20.0) -> T:
    """Poll ``check`` until it returns something truthy (errors count as not yet)."""
    deadline = time.monotonic() + within
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as e:  # a node replaced while read: try again
            last = e
        else:
            if value:
                return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f" ({last!r})" if last else ""))


class Api:
    """Blocking calls to a server's REST API with one key (None: an open server)."""

    def __init__(self, base: str, key: str | None) -> None:
        self.base = base.rstrip("/") + "/api/v1"
        self.key = key

    def call(self, method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        """The JSON answer (None when empty); ``expect`` asserts the status."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if self.key:
            request.add_header("X-API-Key", self.key)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        if expect is not None:
            assert status == expect, f"{method} {path}: {status} {raw[:300]!r}"
        return json.loads(raw) if raw else None

    def create(self, metadata: dict[str, Any] | None = None) -> str:
        """A new context's id."""
        return str(self.call("POST", "/contexts", {"metadata": metadata or {}}, 201)["id"])

    def append(self, cid: str, *messages: tuple[str, Any]) -> list[str]:
        """Append (role, content) messages at once; their ids."""
        body = {"messages": [{"role": r, "content": c} for r, c in messages]}
        answer = self.call("POST", f"/contexts/{cid}/messages", body, 201)
        return [m["id"] for m in answer["messages"][-len(messages) :]]


def seed_story(api: Api) -> dict[str, Any]:
    """A context with one of every kind of change, a fork of it, and a window served:
    what the views and their screenshots show. Returns the ids and versions involved."""
    cid = api.create({"title": "Trip planning", "user": "ada"})
    system, ask = api.append(
        cid,
        ("system", "You are a concise travel assistant."),
        ("user", "Plan three days in Lisbon in May, on foot, with one day trip."),
    )
    (answer,) = api.append(
        cid,
        (
            "assistant",
            "Day 1: Alfama and the castle. Day 2: Belém. Day 3: a train to Sintra for the palaces.",
        ),
    )
    (hotel,) = api.append(cid, ("user", "Book the hotel, and call me on +351 900 000 000."))
    api.call("POST", f"/contexts/{cid}/messages/{hotel}/redact", {"reason": "phone number"}, 200)
    before_edit = api.call("GET", f"/contexts/{cid}", expect=200)["version"]
    api.call(
        "PATCH",
        f"/contexts/{cid}/messages/{answer}",
        {"content": "Day 1: Alfama, the castle and a fado evening. Day 2: Belém. Day 3: Sintra."},
        200,
    )
    edited = api.call("GET", f"/contexts/{cid}", expect=200)["version"]
    api.call("PATCH", f"/contexts/{cid}/metadata", {"status": "planned"}, 200)
    api.append(cid, ("user", "Which day has the most walking?"))
    summary = {"text": "Ada plans 3 days in Lisbon in May; itinerary agreed."}
    api.call("POST", f"/contexts/{cid}/summaries", {**summary, "through_message_id": answer}, 201)
    api.append(cid, ("assistant", "Day 1: Alfama is hilly, about 12 km."))
    window = api.call("POST", f"/contexts/{cid}/window", {"max_tokens": 60, "model": "gpt-4o"}, 200)
    fork = api.call("POST", f"/contexts/{cid}/fork", {"at_version": edited}, 201)["id"]
    api.append(fork, ("user", "Make it five days instead, with Porto."))
    head = api.call("GET", f"/contexts/{cid}", expect=200)["version"]
    return {
        "id": cid,
        "fork": fork,
        "system": system,
        "ask": ask,
        "answer": answer,
        "hotel": hotel,
        "before_edit": before_edit,
        "edited": edited,
        "window_version": head,
        "window": window,
    }
