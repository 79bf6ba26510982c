"""The web view in a real browser: Debian's headless Chromium, driven over WebDriver by
Selenium, against a real ``ctxlog serve`` with two tenants. Each test does what a person
would (open a page, click, type) and checks what the page shows.

Skipped, saying why, where Chromium or its driver is not installed; ``.ci/run`` installs both.
Every test also fails on anything the browser logs about a Content-Security-Policy
violation or an uncaught script error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import Api, chromium, missing, seed_story, wait_for
from tests.support.server_process import ServerProcess, key_secrets, serving

pytestmark = pytest.mark.skipif(missing() is not None, reason=str(missing()))

HOSTILE = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>window.pwned = 1</script>"


def by_css(selector: str) -> tuple[str, str]:
    return ("css selector", selector)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    db = tmp_path_factory.mktemp("web") / "web.db"
    with serving(db, secrets=key_secrets()) as proc:
        yield proc


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("profile")) as driver:
        yield driver


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> Api:
    return Api(server.url, "key-alice")


@pytest.fixture(scope="module")
def story(alice: Api) -> dict[str, Any]:
    return seed_story(alice)


@pytest.fixture(autouse=True)
def clean_console(browser: Any) -> Iterator[None]:
    browser.get_log("browser")  # what earlier tests left
    yield
    bad = [
        e["message"]
        for e in browser.get_log("browser")
        if "Content Security Policy" in e["message"] or "Uncaught" in e["message"]
    ]
    assert not bad, bad


def visit(browser: Any, server: ServerProcess, route: str, key: str | None = "key-alice") -> None:
    """Open the page at ``route`` (a fresh load) with ``key`` in this tab's storage."""
    browser.get("about:blank")
    browser.get(server.url + "/ui#/nowhere")
    if key is None:
        browser.execute_script("sessionStorage.clear()")
    else:
        browser.execute_script("sessionStorage.setItem('ctxlog.key', arguments[0])", key)
    browser.get(server.url + "/ui" + route)


def main_text(browser: Any) -> str:
    return str(browser.find_element(*by_css("main")).text)


def shown(browser: Any, selector: str, what: str) -> Any:
    return wait_for(lambda: browser.find_elements(*by_css(selector)), what)


def texts(browser: Any, selector: str, what: str) -> list[str]:
    """The text of each element ``selector`` finds, read in the same attempt as the search:
    a view that renders again replaces its nodes, and a node found before that is stale."""
    return wait_for(lambda: [e.text for e in browser.find_elements(*by_css(selector))], what)


def test_the_list_shows_a_created_context_after_the_key_is_given(
    browser: Any, server: ServerProcess, alice: Api
) -> None:
    cid = alice.create({"title": "created for the list"})
    visit(browser, server, "#/", key=None)
    field = wait_for(lambda: browser.find_element(*by_css("input#key")), "the key prompt")
    field.send_keys("key-alice")
    browser.find_element(*by_css("form.keyform button")).click()
    (row,) = shown(browser, f'tr[data-id="{cid}"]', "the context's row")
    assert "created for the list" in row.text
    wait_for(lambda: row.find_element(*by_css("td.actor")).text == "alice", "who changed it")
    # Kept for the tab only, and never in the address.
    assert browser.execute_script("return sessionStorage.getItem('ctxlog.key')") == "key-alice"
    assert browser.execute_script("return localStorage.length") == 0
    assert "key-alice" not in browser.current_url
    # Clicking through opens its timeline.
    row.find_element(*by_css("a.ctx-link")).click()
    shown(browser, '.ev[data-version="1"]:not(.pending)', "the timeline")
    assert browser.current_url.endswith(f"#/c/{cid}")


def test_an_open_server_needs_no_key(browser: Any, tmp_path: Path) -> None:
    with serving(tmp_path / "open.db", keys="") as open_server:
        cid = Api(open_server.url, None).create({"title": "no keys here"})
        visit(browser, open_server, "#/", key=None)
        (row,) = shown(browser, f'tr[data-id="{cid}"]', "the context's row")
        assert "no keys here" in row.text
        assert not browser.find_elements(*by_css("input#key"))
        browser.get("about:blank")  # no stream left open while the server stops


def test_the_timeline_shows_every_event(
    browser: Any, server: ServerProcess, alice: Api, story: dict[str, Any]
) -> None:
    events = alice.call("GET", f"/contexts/{story['id']}/events?limit=1000", expect=200)["events"]
    visit(browser, server, f"#/c/{story['id']}")

    def all_rows() -> list[Any] | None:
        rows = browser.find_elements(*by_css(".ev:not(.pending)"))
        return rows if len(rows) == len(events) else None

    rows = wait_for(all_rows, "a row per event")
    seen = sorted(
        (int(r.get_attribute("data-version")), r.find_element(*by_css(".ty")).text) for r in rows
    )
    assert seen == [(e["version"], e["type"]) for e in events]
    for r in rows:
        assert r.find_element(*by_css(".a")).text == "alice"
    # The newest version is selected, and the conversation is as it is now.
    selected = browser.find_element(*by_css(".ev.sel"))
    assert selected.get_attribute("data-version") == str(len(events))
    wait_for(lambda: "Now (version" in main_text(browser), "the current conversation")
    assert "fado evening" in main_text(browser)


def test_an_older_version_shows_the_older_conversation(
    browser: Any, server: ServerProcess, story: dict[str, Any]
) -> None:
    visit(browser, server, f"#/c/{story['id']}")
    wait_for(lambda: "fado evening" in main_text(browser), "the conversation now")
    # A click on the event that appended the first question: only what was there then.
    browser.find_element(*by_css('.ev[data-version="3"]')).click()
    wait_for(lambda: "As it was at version 3" in main_text(browser), "version 3")
    conversation = browser.find_element(*by_css(".conversation")).text
    assert "Plan three days in Lisbon" in conversation
    assert "Day 1" not in conversation
    assert browser.current_url.endswith("?v=3")
    # The slider moves through versions too: before the edit, the answer's first wording.
    slider = browser.find_element(*by_css("input#version"))
    browser.execute_script(
        "arguments[0].value = arguments[1];"
        "arguments[0].dispatchEvent(new Event('input', {bubbles: true}))",
        slider,
        str(story["before_edit"]),
    )
    wait_for(
        lambda: f"version {story['before_edit']}" in main_text(browser), "the slider's version"
    )
    wait_for(lambda: "a train to Sintra" in main_text(browser), "the answer before its edit")
    assert "fado" not in browser.find_element(*by_css(".conversation")).text


def test_the_keyboard_walks_the_versions_and_a_deleted_context_keeps_its_past(
    browser: Any, server: ServerProcess, alice: Api
) -> None:
    from selenium.webdriver.common.keys import Keys

    cid = alice.create({"title": "short-lived"})
    alice.append(cid, ("user", "only words"))
    alice.call("DELETE", f"/contexts/{cid}", expect=204)
    visit(browser, server, f"#/c/{cid}")
    shown(browser, '.ev.t-context-deleted[data-version="3"]', "the deletion in the timeline")
    wait_for(lambda: "This context is deleted" in main_text(browser), "what now is")
    browser.find_element(*by_css(".vlist")).send_keys(Keys.ARROW_UP)
    wait_for(lambda: "As it was at version 2" in main_text(browser), "the version before")
    assert "only words" in browser.find_element(*by_css(".conversation")).text
    browser.find_element(*by_css(".vlist")).send_keys(Keys.HOME)
    wait_for(lambda: "As it was at version 1" in main_text(browser), "the first version")
    assert "No messages at this version." in main_text(browser)


def test_a_diff_shows_an_edit_side_by_side(
    browser: Any, server: ServerProcess, story: dict[str, Any]
) -> None:
    route = f"#/c/{story['id']}/diff?from={story['before_edit']}&to={story['edited']}"
    visit(browser, server, route)
    (row,) = shown(browser, f'tr.edited[data-id="{story["answer"]}"]', "the edited message")
    before, after = (c.text for c in row.find_elements(*by_css("td")))
    assert "a train to Sintra for the palaces" in before
    assert "a fado evening" in after
    assert "1 edited" in browser.find_element(*by_css(".diffsum")).text
    # The form compares other versions: from the start, the metadata change shows too.
    for field, version in (("from", 1), ("to", story["window_version"])):
        browser.find_element(*by_css(f"input#{field}")).clear()
        browser.find_element(*by_css(f"input#{field}")).send_keys(str(version))
    browser.find_element(*by_css("form.versions button")).click()
    shown(browser, f'tr.added[data-id="{story["ask"]}"]', "messages added since version 1")
    wait_for(lambda: "/status" in main_text(browser), "the metadata change")


def test_a_fork_shows_in_the_lineage_and_against_its_parent(
    browser: Any, server: ServerProcess, story: dict[str, Any]
) -> None:
    visit(browser, server, f"#/c/{story['id']}/lineage")
    (link,) = shown(browser, f'a[data-id="{story["fork"]}"]', "the fork in the tree")
    link.click()
    shown(browser, '.ev.t-context-forked[data-version="1"]', "the fork's timeline")
    assert browser.current_url.endswith(f"#/c/{story['fork']}")
    # From the fork, its parent is in the tree, and the diff against it shows what it added.
    visit(browser, server, f"#/c/{story['fork']}/lineage")
    shown(browser, f'a[data-id="{story["id"]}"]', "the parent in the tree")
    browser.find_element(*by_css(".tabs a[href$='/diff']")).click()
    options = wait_for(lambda: browser.find_elements(*by_css("a.vs-parent")), "the fork's diffs")
    options[0].click()
    (row,) = texts(browser, "tr.added", "the fork's own message")
    assert "five days instead" in row


def test_a_served_window_shows_its_messages_and_what_was_left_out(
    browser: Any, server: ServerProcess, story: dict[str, Any]
) -> None:
    visit(browser, server, f"#/c/{story['id']}/windows")
    window = story["window"]
    seen = shown(browser, ".messages.seen article", "the window's messages")
    kept = [e["id"] for e in window["entries"] if e["kind"] != "summary"]
    assert [a.get_attribute("data-id") for a in seen] == kept
    text = browser.find_element(*by_css("section.window")).text
    assert f"{window['max_tokens']} tokens" in text
    assert window["encoding"] in text
    assert window["window_hash"] in text
    if window["summary_id"]:
        assert "Ada plans 3 days in Lisbon" in text
    why = {
        "over_budget": "over the token budget",
        "covered_by_summary": "covered by the summary",
        "beyond_last_n": "beyond the last N",
    }
    assert window["left_out"], "the story's window leaves something out"
    for group in window["left_out"]:
        assert f"{group['count']} {why[group['reason']]}" in text


def test_hostile_content_is_shown_as_text(browser: Any, server: ServerProcess, alice: Api) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    cid = alice.create({"title": HOSTILE, SCRIPT: SCRIPT})
    alice.append(cid, ("user", HOSTILE), ("assistant", SCRIPT))
    for route in (f"#/c/{cid}", "#/", "#/audit", "#/?q=onerror", f"#/c/{cid}/diff?from=1"):
        visit(browser, server, route)
        wait_for(lambda: HOSTILE in main_text(browser), f"the content as text on {route}")
        assert not browser.find_elements(*by_css("main img, main script"))
        assert browser.execute_script("return window.pwned") is None
        with pytest.raises(NoAlertPresentException):
            browser.switch_to.alert  # noqa: B018 - reading it is the check
    visit(browser, server, f"#/c/{cid}")
    contents = shown(browser, ".conversation .content", "the messages")
    assert [c.text for c in contents] == [HOSTILE, SCRIPT]


def test_another_tenants_context_is_not_reachable_by_url(
    browser: Any, server: ServerProcess, story: dict[str, Any]
) -> None:
    for rest in ("", "/diff", "/lineage", "/windows", "?v=2"):
        visit(browser, server, f"#/c/{story['id']}{rest}", key="key-bob")
        wait_for(
            lambda: "Not found" in main_text(browser), f"not found for {rest or 'the timeline'}"
        )
        page = str(browser.page_source)
        assert "Lisbon" not in page
        assert "Trip planning" not in page
    visit(browser, server, "#/?q=Lisbon", key="key-bob")
    wait_for(lambda: "No message holds" in main_text(browser), "an empty search")
    visit(browser, server, "#/", key="key-bob")
    wait_for(lambda: "Contexts" in main_text(browser), "bob's list")
    wait_for(lambda: "Loading" not in main_text(browser), "bob's list loaded")
    assert story["id"] not in str(browser.page_source)


def test_an_open_timeline_follows_new_events(
    browser: Any, server: ServerProcess, alice: Api
) -> None:
    cid = alice.create({"title": "live"})
    alice.append(cid, ("user", "first"))
    visit(browser, server, f"#/c/{cid}")
    wait_for(lambda: "● live" in main_text(browser), "the live stream")
    alice.append(cid, ("assistant", "arrived while watching"))
    alice.call("PATCH", f"/contexts/{cid}/metadata", {"seen": True}, 200)
    shown(browser, '.ev.t-metadata-updated[data-version="4"]', "the new events")
    wait_for(lambda: "Now (version 4)" in main_text(browser), "the conversation now")
    conversation = browser.find_element(*by_css(".conversation")).text
    assert "arrived while watching" in conversation


def test_the_audit_filters_and_exports_what_it_shows(
    browser: Any, server: ServerProcess, tmp_path: Path
) -> None:
    ann = Api(server.url, "key-ann")
    cid = ann.create({"title": "ann's"})
    ann.append(cid, ("user", "from ann"), ("user", "again"))
    visit(browser, server, "#/audit")
    field = wait_for(lambda: browser.find_element(*by_css("input#f-actor")), "the filters")
    field.send_keys("ann")
    browser.find_element(*by_css("input#f-type")).send_keys("message.appended")
    browser.find_element(*by_css("form.filters button")).click()
    wait_for(lambda: "actor=ann" in browser.current_url, "the filter in the address")

    def rows() -> list[list[str]] | None:
        found = [
            [td.text for td in tr.find_elements(*by_css("td"))]
            for tr in browser.find_elements(*by_css("table.audit tbody tr"))
        ]
        return found if len(found) == 2 else None

    shown_rows = wait_for(rows, "ann's two appends")
    assert all(r[2] == "ann" and r[3] == "message.appended" for r in shown_rows)
    # Export: the browser saves the shown rows as a file, one event per line.
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
    )
    browser.find_element(*by_css("a.export")).click()
    saved = tmp_path / "ctxlog-audit.ndjson"
    wait_for(lambda: saved.exists() and saved.read_text().count("\n") == 2, "the saved file")
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [(e["actor"], e["type"], e["context_id"]) for e in lines] == [
        ("ann", "message.appended", cid)
    ] * 2
    assert [e["data"]["content"] for e in lines] == ["from ann", "again"]


def test_search_finds_a_message(browser: Any, server: ServerProcess, story: dict[str, Any]) -> None:
    visit(browser, server, "#/")
    box = wait_for(lambda: browser.find_element(*by_css("input#q")), "the search box")
    box.send_keys("fado")
    browser.find_element(*by_css("form.search button")).click()
    cell = wait_for(lambda: browser.find_element(*by_css("table.hits td.snippet")), "a hit")
    assert "fado" in cell.text
    browser.find_element(*by_css(f'table.hits a[href="#/c/{story["id"]}"]')).click()
    shown(browser, ".ev:not(.pending)", "the hit's timeline")


@pytest.fixture(scope="module")
def long_context(alice: Api) -> str:
    """A context of 10,000 messages (a system message first)."""
    cid = alice.create({"title": "10,000 messages"})
    alice.append(cid, ("system", "Be brief."))
    for batch in range(10):
        first = 1 if batch == 0 else 0
        alice.append(cid, *[("user", f"message {batch * 1000 + i}") for i in range(first, 1000)])
    return cid


API_BYTES = (
    "return performance.getEntriesByType('resource')"
    ".filter(r => new URL(r.name).pathname.startsWith('/api/'))"
    ".reduce((n, r) => n + r.encodedBodySize, 0)"
)


@pytest.mark.slow
def test_a_long_timeline_keeps_only_a_window_in_the_page(
    browser: Any, server: ServerProcess, long_context: str
) -> None:
    cid = long_context
    visit(browser, server, f"#/c/{cid}")
    last_page = "messages 9,901\u201310,000 of 10,000"  # an en dash, as the page writes it
    wait_for(lambda: last_page in main_text(browser), "the last page")
    rows = browser.find_elements(*by_css(".ev"))
    assert 10 < len(rows) < 100, len(rows)
    assert len(browser.find_elements(*by_css(".conversation article"))) == 100
    # The conversation pages through the rest.
    browser.find_element(*by_css(".conversation .pager button:nth-of-type(2)")).click()
    wait_for(lambda: "messages 9,801" in main_text(browser), "the page before")
    browser.find_element(*by_css(".conversation .pager button:nth-of-type(1)")).click()
    wait_for(lambda: "messages 1\u2013100 of" in main_text(browser), "the first page")
    first = browser.find_element(*by_css(".conversation article .content")).text
    assert first == "Be brief."
    assert browser.find_element(*by_css("input#version")).get_attribute("max") == "10001"
    assert browser.execute_script("return document.getElementsByTagName('*').length") < 1500
    # Scrolled to the top, the first events come in and the rest leave the page.
    browser.execute_script("document.querySelector('.vlist').scrollTop = 0")
    shown(browser, '.ev.t-context-created[data-version="1"]', "the first event")
    assert not browser.find_elements(*by_css('.ev[data-version="10001"]'))
    assert len(browser.find_elements(*by_css(".ev"))) < 100


@pytest.mark.slow
def test_what_the_model_saw_of_a_long_context_reads_only_what_it_needs(
    browser: Any, server: ServerProcess, alice: Api, long_context: str
) -> None:
    window = alice.call("POST", f"/contexts/{long_context}/window", {"max_tokens": 200}, 200)
    visit(browser, server, f"#/c/{long_context}/windows")
    seen = shown(browser, ".messages.seen article", "the window's messages")
    assert [a.get_attribute("data-id") for a in seen] == [e["id"] for e in window["entries"]]
    assert seen[0].find_element(*by_css(".content")).text == "Be brief."
    text = browser.find_element(*by_css("section.window")).text
    (left_out,) = window["left_out"]
    assert left_out["reason"] == "over_budget"
    assert f"{left_out['count']:,} over the token budget" in text
    # The newest and the oldest pages, not the 10,000 messages in one answer (~3 MB).
    assert browser.execute_script(API_BYTES) < 1_000_000


@pytest.mark.slow
def test_a_diff_of_a_long_context_reads_only_what_changed(
    browser: Any, server: ServerProcess, alice: Api, long_context: str
) -> None:
    page = alice.call("GET", f"/contexts/{long_context}/messages?limit=6", expect=200)
    target = page["messages"][5]["id"]
    before = alice.call("GET", f"/contexts/{long_context}?messages=false", expect=200)["version"]
    edit = {"content": "changed far back"}
    alice.call("PATCH", f"/contexts/{long_context}/messages/{target}", edit, 200)
    visit(browser, server, f"#/c/{long_context}/diff?from={before}&to={before + 1}")
    (row,) = shown(browser, f'tr.edited[data-id="{target}"]', "the edit at #6")
    old, new = (c.text for c in row.find_elements(*by_css("td")))
    assert old.endswith("message 5")
    assert new.endswith("changed far back")
    assert "9,999 messages unchanged" in main_text(browser)
    assert browser.execute_script(API_BYTES) < 1_000_000
