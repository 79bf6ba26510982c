"""Token counts from a second process (``projections.counting``): the same counts as this
process, and this process's counts whenever the worker cannot give them."""

from __future__ import annotations

import logging
import os
import signal
from datetime import UTC, datetime

import pytest

from eventstore import (
    ContextCreated,
    EventMetadata,
    FilePart,
    ImagePart,
    MessageAppended,
    MessageEdited,
    OpaquePart,
    RecordedEvent,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from eventstore.events import Event
from projections import counting
from projections.apply import MessageCounter
from projections.counting import Counting, count_here
from projections.tokens import TokenCounter
from tests.support.factories import COUNTER


def recorded(position: int, event: Event) -> RecordedEvent:
    return RecordedEvent(
        position, "s", position, f"e{position}", "t", event, EventMetadata(),
        datetime.now(UTC), "",
    )  # fmt: skip


CONTENTS: list[MessageAppended] = [
    MessageAppended(message_id="a", role="user", content="héllo wörld, 你好 🌍"),
    MessageAppended(message_id="b", role="assistant", content="", name="helper"),
    MessageAppended(
        message_id="c",
        role="user",
        content=[
            TextPart(text="describe these"),
            ImagePart(url="u", detail="low"),
            FilePart(name="report.pdf", uri="s3://b/report.pdf"),
        ],
    ),
    MessageAppended(
        message_id="d",
        role="assistant",
        content=[ToolCallPart(id="c1", name="get_weather", arguments={"n": 2**70, "x": 1.5})],
    ),
    MessageAppended(
        message_id="e",
        role="tool",
        content=[ToolResultPart(call_id="c1", content=[TextPart(text="ok"), ImagePart()])],
        name="get_weather",
    ),
    MessageAppended(
        message_id="f",
        role="user",
        content=[OpaquePart(format="x", data={"kind": "x", "v": [1, None]})],
    ),
]
BATCH = [
    recorded(1, ContextCreated()),
    *(recorded(i + 2, event) for i, event in enumerate(CONTENTS)),
    recorded(9, MessageEdited(message_id="a", content="edited")),
]


async def test_the_worker_counts_every_kind_of_content_as_this_process_does() -> None:
    pages = Counting(MessageCounter(COUNTER))
    await pages.start()
    try:
        assert await pages.ready()
        counts = await pages.count(BATCH)
        assert pages.pages_away == 1
        assert counts == count_here(MessageCounter(COUNTER), BATCH)
        assert sorted(counts) == list(range(2, 8))  # appends only, by position
        assert await pages.count([BATCH[0], BATCH[-1]]) == {}  # no message: nothing to ask
        assert pages.pages_away == 1
    finally:
        await pages.close()


async def test_a_worker_that_dies_leaves_the_counting_here(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pages = Counting(MessageCounter(COUNTER))
    await pages.start()
    try:
        assert await pages.ready()
        pid = pages.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with caplog.at_level(logging.WARNING, logger=counting.__name__):
            counts = await pages.count(BATCH)
        assert counts == count_here(MessageCounter(COUNTER), BATCH)
        assert pages.pages_away == 0
        assert "the worker failed" in caplog.text
        assert pages.pid is None
        assert await pages.count(BATCH) == counts  # and goes on here
    finally:
        await pages.close()


async def test_a_worker_that_never_starts_leaves_the_counting_here(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(counting, "_SERVE", "import sys; sys.exit(3)")
    pages = Counting(MessageCounter(COUNTER))
    await pages.start()
    try:
        with caplog.at_level(logging.WARNING, logger=counting.__name__):
            assert not await pages.ready()
        assert "stays in this process" in caplog.text
        assert await pages.count(BATCH) == count_here(MessageCounter(COUNTER), BATCH)
        assert pages.pages_away == 0
    finally:
        await pages.close()


class Doubled(TokenCounter):
    """A caller's own counter: the worker could not know how it counts."""

    def count_text(self, text: str) -> int:
        return 2 * super().count_text(text)


async def test_a_counter_of_the_callers_own_counts_here() -> None:
    own = MessageCounter(Doubled("cl100k_base"))
    pages = Counting(own)
    await pages.start()
    try:
        assert pages.pid is None
        assert not await pages.ready()
        counts = await pages.count(BATCH)
        assert counts == count_here(own, BATCH) != count_here(MessageCounter(COUNTER), BATCH)
    finally:
        await pages.close()
